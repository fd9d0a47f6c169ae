"""Self-training on unlabeled target text: the teacher's confident predictions as hard labels beside its soft targets.

A student distilled with the targets' unlabeled text (the `adaptive` student) learns only the teacher's soft targets
there. Self-training adds the teacher's most confident predictions on that text as hard labels, so the student also
gets the cross-entropy term on the target domains, where the teacher alone would not push it to commit.

The threshold is class-balanced (Zou et al., "Unsupervised Domain Adaptation for Semantic Segmentation via
Class-Balanced Self-Training", ECCV 2018): within the rows predicted as each class, the most confident `fraction` is
kept. A single global threshold would keep mostly the class the teacher is surest of (off-domain, often the majority
class of the source) and teach the student to predict it everywhere. Rounds can be iterated, the student of round r
labelling the text for round r + 1 (the soft targets stay the teacher's), as in noisy-student training (Xie et al.,
CVPR 2020).
"""

from __future__ import annotations

import numpy as np

from .losses import IGNORE_INDEX


def class_balanced_pseudo_labels(logits: np.ndarray, fraction: float) -> np.ndarray:
    """
    Hard labels for the rows a model is most confident on, class by class; `IGNORE_INDEX` for the others.

    Args:
        logits (`np.ndarray`): `(rows, classes)`, the labelling model's logits.
        fraction (`float`): in (0, 1]: of the rows predicted as each class, the share kept (the most confident ones,
            rounded up, so every predicted class keeps at least one row).

    Returns:
        `np.ndarray`: `(rows,)` int64, the predicted class of a kept row, `IGNORE_INDEX` elsewhere.

    Example:

    ```python
    >>> class_balanced_pseudo_labels(np.array([[3.0, 0], [1, 0], [0, 2], [0, 0.1]]), 0.5).tolist()
    [0, -100, 2, -100]
    ```
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1]; got fraction={fraction!r}. Use e.g. 0.5.")
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
    predicted, confidence = probabilities.argmax(-1), probabilities.max(-1)
    labels = np.full(len(logits), IGNORE_INDEX, dtype=np.int64)
    for c in np.unique(predicted):
        rows = np.flatnonzero(predicted == c)
        keep = int(np.ceil(fraction * rows.size))
        ranked = rows[np.argsort(-confidence[rows], kind="stable")]
        labels[ranked[:keep]] = c
    return labels
