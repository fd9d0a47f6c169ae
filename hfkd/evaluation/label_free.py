"""How well a model does on a domain without labels: average thresholded confidence (ATC).

Garg et al., "Leveraging Unlabeled Data to Predict Out-of-Distribution Performance" (ICLR 2022): on labelled
validation data of the source, find the confidence threshold `t` above which the share of rows equals the accuracy;
on a new domain, the share of rows whose confidence is above `t` estimates the accuracy there. The confidence is the
highest softmax probability (ATC-MC).

Macro-F1 needs more than a count of right rows: the rows ATC counts as right are true positives of their predicted
class, those it counts as wrong are false positives of theirs, and the true class of a wrong row is spread over the
other classes in proportion to the model's own probabilities for them (renormalised without the predicted class).
Both estimates are reported next to the measured figures wherever labels exist, with their error, so that a user
knows how far to trust them on a domain that has none.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def atc_threshold(logits: np.ndarray, labels: np.ndarray) -> float:
    """The confidence threshold of ATC on labelled (source validation) rows: the share of rows above it equals the
    accuracy there."""
    probabilities = softmax(np.asarray(logits, dtype=np.float64))
    confidence = probabilities.max(axis=-1)
    accuracy = float((probabilities.argmax(axis=-1) == np.asarray(labels)).mean())
    return float(np.quantile(confidence, 1 - accuracy))


def atc_estimate(logits: np.ndarray, threshold: float) -> dict[str, float]:
    """
    Estimated accuracy and macro-F1 of a model on unlabeled rows, from its logits and the ATC threshold of its source.

    Args:
        logits (`np.ndarray`): `(rows, num_labels)`.
        threshold (`float`): from [`atc_threshold`].

    Returns:
        `dict`: `accuracy` and `macro_f1` (averaged over all classes, as the measured macro-F1 is).
    """
    probabilities = softmax(np.asarray(logits, dtype=np.float64))
    predicted = probabilities.argmax(axis=-1)
    confidence = probabilities.max(axis=-1)
    right = confidence > threshold
    k = probabilities.shape[-1]
    true_positive = np.bincount(predicted[right], minlength=k).astype(float)
    false_positive = np.bincount(predicted[~right], minlength=k).astype(float)
    # a wrong row's true class: one of the others, in proportion to the model's probabilities for them
    wrong = probabilities[~right].copy()
    wrong[np.arange(wrong.shape[0]), predicted[~right]] = 0.0
    wrong /= np.clip(wrong.sum(axis=-1, keepdims=True), 1e-12, None)
    false_negative = wrong.sum(axis=0)
    denominator = 2 * true_positive + false_positive + false_negative
    f1 = np.divide(2 * true_positive, denominator, out=np.zeros(k), where=denominator > 0)
    return {"accuracy": float(right.mean()) if right.size else float("nan"), "macro_f1": float(f1.mean())}
