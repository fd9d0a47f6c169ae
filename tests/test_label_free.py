"""Label-free estimates of accuracy and macro-F1 (hfkd.evaluation.label_free)."""

import numpy as np
import pytest

from hfkd.evaluation.label_free import atc_estimate, atc_threshold, softmax
from hfkd.metrics import compute_classification_metrics


def calibrated(n: int, k: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a calibrated model: each row's label is drawn from the model's own probabilities."""
    logits = rng.normal(scale=2.0, size=(n, k))
    probabilities = softmax(logits)
    labels = np.array([rng.choice(k, p=p) for p in probabilities])
    return logits, labels


def test_atc_estimates_the_accuracy_of_a_calibrated_model_on_new_rows():
    rng = np.random.default_rng(0)
    validation, labels = calibrated(3000, 3, rng)
    threshold = atc_threshold(validation, labels)
    accuracy = (softmax(validation).argmax(-1) == labels).mean()
    assert (softmax(validation).max(-1) > threshold).mean() == pytest.approx(accuracy, abs=1e-3)
    target, target_labels = calibrated(3000, 3, rng)  # a new sample of the same kind of rows
    estimate = atc_estimate(target, threshold)
    assert estimate["accuracy"] == pytest.approx((softmax(target).argmax(-1) == target_labels).mean(), abs=0.03)


def test_macro_f1_estimate_is_exact_when_the_confidence_separates_right_from_wrong():
    # right rows are confident; each wrong row puts its remaining mass on its true class: the estimate is the truth
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    predicted = np.array([0, 0, 1, 1, 2, 2, 1, 2])
    logits = np.full((8, 3), -20.0)
    for i, (y, p) in enumerate(zip(labels, predicted, strict=True)):
        logits[i, p] = 5.0 if y == p else 1.0
        if y != p:
            logits[i, y] = 0.5
    estimate = atc_estimate(logits, threshold=0.9)
    measured = compute_classification_metrics(predicted.tolist(), labels.tolist(), num_labels=3)
    assert estimate["accuracy"] == pytest.approx(measured["accuracy"])
    assert estimate["macro_f1"] == pytest.approx(measured["macro_f1"], abs=1e-6)
