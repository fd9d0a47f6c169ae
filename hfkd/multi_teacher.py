"""Soft targets of several teachers combined per row: the `multi_teacher` student of a cross-domain experiment.

With several source domains, one teacher fine-tuned on all of them averages their styles away. A teacher per source
domain keeps each one's view; their soft targets are combined row by row into one distribution that a single student
learns (multi-teacher distillation, e.g. TextBrewer's `MultiTeacherDistiller`; here the teachers are per domain). Two
combinations:

- `mean`: the mixture of the teachers' class probabilities, each teacher weighted equally;
- `confidence`: the mixture weighted per row by each teacher's confidence there (its highest class probability), so a
  teacher that knows the kind of text a row is (usually the one of its own domain) speaks loudest.

The combined distribution is returned as log-probabilities, which the distillation loss treats as logits:
`softmax(log p / T)` is the mixture `p` sharpened or flattened by the temperature `T`, as for one teacher.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

WEIGHTINGS = ("mean", "confidence")


def combine_teacher_logits(logits: Sequence[np.ndarray], weighting: str = "mean") -> np.ndarray:
    """
    One `(rows, classes)` array of log-probabilities from the logits of several teachers on the same rows.

    Args:
        logits (`Sequence[np.ndarray]`): per teacher, its `(rows, classes)` logits, columns in the same label order.
        weighting (`str`, *optional*, defaults to `"mean"`): `"mean"` or `"confidence"` (see the module docstring).

    Example:

    ```python
    >>> a, b = np.log([[0.9, 0.1]]), np.log([[0.5, 0.5]])
    >>> np.exp(combine_teacher_logits([a, b], "mean")).round(2).tolist()
    [[0.7, 0.3]]
    ```
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"multi_teacher_weighting={weighting!r} is not valid; set it to one of {list(WEIGHTINGS)}.")
    if not logits:
        raise ValueError("combine_teacher_logits needs the logits of at least one teacher.")
    shapes = {np.shape(x) for x in logits}
    if len(shapes) != 1:
        raise ValueError(
            f"The teachers' logits have different shapes {sorted(shapes)}; they must cover the same rows."
        )
    stacked = np.stack([np.asarray(x, dtype=np.float64) for x in logits])  # (teachers, rows, classes)
    shifted = np.exp(stacked - stacked.max(axis=-1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
    if weighting == "mean":
        weights = np.full(stacked.shape[:2], 1.0 / len(logits))
    else:
        confidence = probabilities.max(axis=-1)  # (teachers, rows)
        weights = confidence / confidence.sum(axis=0, keepdims=True)
    mixture = (weights[..., None] * probabilities).sum(axis=0)
    return np.log(np.clip(mixture, 1e-12, None)).astype(np.float32)
