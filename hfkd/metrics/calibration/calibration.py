# Copyright 2025 The hfkd authors. Licensed under the Apache License, Version 2.0.
"""Expected (and maximum) calibration error with equal-width confidence bins, as a local `evaluate` module.

Loaded with `hfkd.metrics.load_metric("calibration")` or `evaluate.load("path/to/hfkd/metrics/calibration")`.
Keep one `import` per line: `evaluate` parses this file's imports with a regex to check dependencies.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Expected calibration error (ECE) of a classifier's top-1 confidence, with `n_bins` equal-width bins, computed with
numpy in float64 (Guo et al., 2017).

For each example, confidence is the largest class probability (after a softmax when `from_logits=True`) and the
prediction is its class (ties go to the lowest class id). Bin `b` (0-based, `b = 0 .. n_bins - 1`) holds the
examples whose confidence lies in the half-open interval `(b / n_bins, (b + 1) / n_bins]`, with the edges computed
in float64 as `(b + 1) / n_bins`; a confidence a rounding error above 1 goes to the last bin. Then

    ECE = sum over non-empty bins B of |B| / N * |accuracy(B) - mean confidence(B)|
    MCE = max over non-empty bins B of |accuracy(B) - mean confidence(B)|
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): one row of `num_labels` floats per example: logits (default) or
        probabilities (with `from_logits=False`; each row must be non-negative and sum to 1 within 1e-3).
    references (`list[int]`): gold class ids in `[0, num_labels)`.
    from_logits (`bool`, *optional*, defaults to `True`): whether `predictions` are logits (a softmax is applied)
        or probabilities.
    n_bins (`int`, *optional*, defaults to 15): number of equal-width confidence bins on (0, 1].

Returns:
    ece (`float`): expected calibration error, in [0, 1].
    mce (`float`): maximum calibration error over non-empty bins, in [0, 1].
    n (`int`): number of examples.

Examples:

    >>> metric = hfkd.metrics.load_metric("calibration")

    Two bins, (0, 0.5] and (0.5, 1]: a wrong prediction at confidence 0.4 (gap 0.4) and a right one at 0.9 (gap 0.1).

    >>> probabilities = [[0.4, 0.3, 0.3], [0.9, 0.05, 0.05]]
    >>> metric.compute(predictions=probabilities, references=[1, 0], from_logits=False, n_bins=2)
    {'ece': 0.25, 'mce': 0.4, 'n': 2}
"""

_CITATION = """
@inproceedings{guo2017calibration,
  title={On Calibration of Modern Neural Networks},
  author={Guo, Chuan and Pleiss, Geoff and Sun, Yu and Weinberger, Kilian Q.},
  booktitle={Proceedings of the 34th International Conference on Machine Learning},
  pages={1321--1330},
  year={2017}
}
"""

# How far a probability row's sum may stray from 1 (float32/float16 softmax outputs are not exact).
_PROBABILITY_SUM_TOLERANCE = 1e-3


def _probabilities(predictions, from_logits):
    """Returns a float64 (n, num_labels) probability array, or raises a ValueError that says what to fix."""
    try:
        array = np.asarray(predictions, dtype=np.float64)
    except ValueError:
        raise ValueError("calibration: every row of predictions must have the same number of classes.") from None
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(
            f"calibration: predictions must be a non-empty list of rows of shape (n, num_labels), got shape "
            f"{array.shape}."
        )
    if array.shape[1] < 2:
        raise ValueError(
            f"calibration: predictions rows need at least 2 classes, got {array.shape[1]}. For a binary classifier "
            "that outputs one probability p, pass rows [1 - p, p] with from_logits=False."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("calibration: predictions contain NaN or infinite values; pass finite logits/probabilities.")
    if from_logits:
        shifted = array - np.max(array, axis=1, keepdims=True)
        exp = np.exp(shifted)
        return exp / np.sum(exp, axis=1, keepdims=True)
    sums = np.sum(array, axis=1)
    if np.any(array < 0) or np.any(np.abs(sums - 1.0) > _PROBABILITY_SUM_TOLERANCE):
        raise ValueError(
            "calibration: with from_logits=False every predictions row must be non-negative and sum to 1 "
            f"(within {_PROBABILITY_SUM_TOLERANCE}); got row sums from {sums.min():.6g} to {sums.max():.6g}. "
            "Pass from_logits=True if these are logits."
        )
    return array


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Calibration(evaluate.Metric):
    """Expected and maximum calibration error (see `_DESCRIPTION`)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Value("int64"),
                }
            ),
            reference_urls=["https://arxiv.org/abs/1706.04599"],
        )

    def _compute(self, predictions, references, from_logits=True, n_bins=15):
        if not isinstance(from_logits, (bool, np.bool_)):
            raise ValueError(f"calibration: from_logits must be True or False, got {from_logits!r}.")
        if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
            raise ValueError(f"calibration: n_bins must be an integer >= 1, got {n_bins!r}.")
        probabilities = _probabilities(predictions, bool(from_logits))
        references = np.asarray(references, dtype=np.int64).reshape(-1)
        n, num_labels = probabilities.shape
        if references.shape[0] != n:
            raise ValueError(f"calibration: got {n} prediction rows but {references.shape[0]} references.")
        bad = references[(references < 0) | (references >= num_labels)]
        if bad.size:
            raise ValueError(
                f"calibration: references must be class ids in [0, {num_labels}) to match the {num_labels} columns of "
                f"predictions, got {sorted(set(bad.tolist()))[:10]}. Drop ignored rows (e.g. label -100) first."
            )

        confidence = np.max(probabilities, axis=1)
        correct = (np.argmax(probabilities, axis=1) == references).astype(np.float64)
        # Right edges (b + 1) / n_bins; side="left" puts a confidence equal to an edge in the bin that edge closes,
        # so bin b is (b / n_bins, (b + 1) / n_bins].
        right_edges = np.arange(1, n_bins + 1, dtype=np.float64) / n_bins
        bins = np.minimum(np.searchsorted(right_edges, confidence, side="left"), n_bins - 1)
        count = np.bincount(bins, minlength=n_bins).astype(np.float64)
        # Per bin |acc - conf| * |B| = |sum(correct) - sum(confidence)|, so ECE needs no division by empty bins.
        correct_sum = np.bincount(bins, weights=correct, minlength=n_bins)
        confidence_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
        gap = np.abs(correct_sum - confidence_sum)
        ece = float(np.sum(gap) / n)
        nonempty = count > 0
        mce = float(np.max(gap[nonempty] / count[nonempty]))
        return {"ece": ece, "mce": mce, "n": int(n)}
