# Copyright 2025 The hfkd authors. Licensed under the Apache License, Version 2.0.
"""Accuracy and macro-averaged F1 for single-label classification, as a local `evaluate` module.

Loaded with `hfkd.metrics.load_metric("classification")` or `evaluate.load("path/to/hfkd/metrics/classification")`.
Keep one `import` per line: `evaluate` parses this file's imports with a regex to check dependencies.
"""

import datasets
import evaluate
import numpy as np
from transformers.utils import logging

logger = logging.get_logger("hfkd.metrics.classification")


_DESCRIPTION = """
Accuracy and macro-averaged F1 for single-label classification, computed with numpy in float64. The numbers equal
scikit-learn's `accuracy_score(references, predictions)` and
`f1_score(references, predictions, average="macro", labels=labels, zero_division=0)`.

Accuracy is the fraction of rows whose prediction equals the reference. Per-class F1 is
`2 * TP / (2 * TP + FP + FN)`. Macro-F1 is the unweighted mean of the per-class F1 over a set of classes:

- by default (neither `labels` nor `num_labels` given), the classes that occur in `predictions` or `references`
  (scikit-learn's default). A class absent from both does not count at all.
- with `labels` (or `num_labels`, meaning `labels=range(num_labels)`), exactly those classes. A listed class that is
  absent from both predictions and references has F1 = 0 (scikit-learn's `zero_division=0`) and so lowers macro-F1;
  a log warning names such classes. Use this to compare domains over one fixed label space on purpose.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class ids, one per example.
    references (`list[int]`): gold class ids, one per example.
    num_labels (`int`, *optional*): size of the label space. Every id must lie in `[0, num_labels)`, and macro-F1
        averages over all `num_labels` classes (absent classes count as F1 = 0).
    labels (`list[int]`, *optional*): the class ids macro-F1 averages over (absent classes count as F1 = 0). Ids
        outside `labels` still count against the listed classes as false positives/negatives, as in scikit-learn.
        Give at most one of `num_labels` and `labels`.

Returns:
    accuracy (`float`): fraction of correct predictions, in [0, 1].
    macro_f1 (`float`): macro-averaged F1, in [0, 1].
    n (`int`): number of examples.

Examples:

    >>> metric = hfkd.metrics.load_metric("classification")
    >>> metric.compute(predictions=[0, 1, 1, 2], references=[0, 1, 2, 2])
    {'accuracy': 0.75, 'macro_f1': 0.7777777777777777, 'n': 4}

    Averaging over a fixed label space, where class 3 never occurs:

    >>> metric.compute(predictions=[0, 1, 1, 2], references=[0, 1, 2, 2], num_labels=4)
    {'accuracy': 0.75, 'macro_f1': 0.5833333333333333, 'n': 4}
"""

_CITATION = """
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and Varoquaux, G. and Gramfort, A. and Michel, V. and Thirion, B. and Grisel, O. and
          Blondel, M. and Prettenhofer, P. and Weiss, R. and Dubourg, V. and Vanderplas, J. and Passos, A. and
          Cournapeau, D. and Brucher, M. and Perrot, M. and Duchesnay, E.},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""


def _resolve_labels(num_labels, labels, predictions, references):
    """Returns the sorted class ids macro-F1 averages over, checking `num_labels` / `labels`."""
    if num_labels is not None and labels is not None:
        raise ValueError(
            f"classification: got both num_labels={num_labels!r} and labels={labels!r}; give at most one "
            "(num_labels=k means labels=list(range(k)))."
        )
    if num_labels is not None:
        if isinstance(num_labels, bool) or not isinstance(num_labels, (int, np.integer)) or num_labels < 1:
            raise ValueError(f"classification: num_labels must be an integer >= 1, got {num_labels!r}.")
        seen = np.concatenate([predictions, references])
        bad = seen[(seen < 0) | (seen >= num_labels)]
        if bad.size:
            raise ValueError(
                f"classification: class ids must lie in [0, {int(num_labels)}) because num_labels={int(num_labels)}, "
                f"got {sorted(set(bad.tolist()))[:10]}. Drop ignored rows (e.g. label -100) before computing, or fix "
                "num_labels."
            )
        return np.arange(int(num_labels), dtype=np.int64)
    if labels is not None:
        array = np.asarray(labels)
        if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"classification: labels must be a non-empty list of integer class ids, got {labels!r}.")
        if np.unique(array).size != array.size:
            raise ValueError(f"classification: labels must not repeat a class id, got {labels!r}.")
        return array.astype(np.int64)
    return np.union1d(predictions, references)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Classification(evaluate.Metric):
    """Accuracy and macro-F1 (see `_DESCRIPTION`)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html",
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.accuracy_score.html",
            ],
        )

    def _compute(self, predictions, references, num_labels=None, labels=None):
        predictions = np.asarray(predictions, dtype=np.int64).reshape(-1)
        references = np.asarray(references, dtype=np.int64).reshape(-1)
        if predictions.size == 0:
            raise ValueError("classification: predictions and references are empty; pass at least one example.")
        classes = _resolve_labels(num_labels, labels, predictions, references)

        # Count per class with bincount (memory O(n + classes), unlike a classes x n mask). Ids outside `classes`
        # (possible only with an explicit `labels`) count as FP/FN of the listed classes, as in scikit-learn.
        classes = np.sort(classes)
        k = classes.size

        def class_index(ids):
            index = np.clip(np.searchsorted(classes, ids), 0, k - 1)
            return index, classes[index] == ids

        pred_index, pred_listed = class_index(predictions)
        ref_index, ref_listed = class_index(references)
        correct = predictions == references
        tp = np.bincount(pred_index[pred_listed & correct], minlength=k).astype(np.float64)
        fp = np.bincount(pred_index[pred_listed], minlength=k) - tp
        fn = np.bincount(ref_index[ref_listed], minlength=k) - tp
        denominator = 2.0 * tp + fp + fn
        # zero_division=0: a class that is neither predicted nor present scores 0.
        f1 = np.divide(2.0 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)

        absent = classes[denominator == 0]
        if absent.size:
            logger.warning_once(
                f"classification: classes {absent.tolist()} occur in neither predictions nor references; each counts "
                "as F1 = 0 in macro_f1 because they were listed via num_labels/labels. Leave both unset to average "
                "only over the classes that occur."
            )
        return {
            "accuracy": float(np.mean(predictions == references)),
            "macro_f1": float(np.mean(f1)),
            "n": int(predictions.size),
        }
