# Copyright 2025 The hfkd authors. Licensed under the Apache License, Version 2.0.
"""Teacher-student agreement (top-1 match rate and KL divergence), as a local `evaluate` module.

Loaded with `hfkd.metrics.load_metric("agreement")` or `evaluate.load("path/to/hfkd/metrics/agreement")`.
Keep one `import` per line: `evaluate` parses this file's imports with a regex to check dependencies.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
How closely a student reproduces its teacher, from the logits of both on the same examples. Computed with numpy in
float64.

- `agreement`: the fraction of rows where `argmax(student) == argmax(teacher)`. Ties go to the lowest class id
  (numpy's `argmax`).
- `kl`: the mean over rows of `KL(softmax(teacher / T) || softmax(student / T))`, in nats (natural log), computed from
  log-softmax so that large logits do not overflow. Unlike the distillation loss, it is not multiplied by `T**2`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): student logits, one row of `num_labels` floats per example.
    references (`list[list[float]]`): teacher logits, same shape as `predictions`.
    temperature (`float`, *optional*, defaults to 1.0): softmax temperature `T > 0` applied to both sides before
        the KL divergence. It does not change `agreement`.

Returns:
    agreement (`float`): fraction of examples whose top-1 class matches, in [0, 1].
    kl (`float`): mean KL(teacher || student) in nats, >= 0.
    n (`int`): number of examples.

Examples:

    >>> metric = hfkd.metrics.load_metric("agreement")
    >>> metric.compute(predictions=[[2.0, 0.0], [0.0, 1.0]], references=[[2.0, 0.0], [0.0, 1.0]])
    {'agreement': 1.0, 'kl': 0.0, 'n': 2}
    >>> result = metric.compute(predictions=[[0.0, 0.0]], references=[[0.0, 1.0]], temperature=2.0)
    >>> result["agreement"], round(result["kl"], 4)
    (0.0, 0.0303)
"""

_CITATION = """
@article{hinton2015distilling,
  title={Distilling the Knowledge in a Neural Network},
  author={Hinton, Geoffrey and Vinyals, Oriol and Dean, Jeff},
  journal={arXiv preprint arXiv:1503.02531},
  year={2015}
}
"""


def _as_logits(rows, name):
    """Returns `rows` as a finite float64 array of shape (n, num_labels), or raises a ValueError naming `name`."""
    try:
        array = np.asarray(rows, dtype=np.float64)
    except ValueError:
        raise ValueError(f"agreement: every row of {name} must have the same number of logits.") from None
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(
            f"agreement: {name} must be a list of logit rows of shape (n, num_labels), got shape {array.shape}."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"agreement: {name} contains NaN or infinite logits; pass finite logits.")
    return array


def _log_softmax(logits):
    shifted = logits - np.max(logits, axis=1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Agreement(evaluate.Metric):
    """Teacher-student top-1 agreement and KL divergence (see `_DESCRIPTION`)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("float64")),
                }
            ),
            reference_urls=["https://arxiv.org/abs/1503.02531"],
        )

    def _compute(self, predictions, references, temperature=1.0):
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.number)):
            raise ValueError(f"agreement: temperature must be a number > 0, got {temperature!r}.")
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"agreement: temperature must be a finite number > 0, got {temperature!r}.")
        student = _as_logits(predictions, "predictions (student logits)")
        teacher = _as_logits(references, "references (teacher logits)")
        if student.shape != teacher.shape:
            raise ValueError(
                f"agreement: student logits have shape {student.shape} but teacher logits have shape "
                f"{teacher.shape}; both must be (n, num_labels) over the same examples and label space."
            )
        if student.shape[0] == 0:
            raise ValueError("agreement: predictions and references are empty; pass at least one example.")

        agreement = np.mean(np.argmax(student, axis=1) == np.argmax(teacher, axis=1))
        log_p_teacher = _log_softmax(teacher / temperature)
        log_p_student = _log_softmax(student / temperature)
        # exp(log p) may underflow to 0 for a very unlikely class; 0 * finite = 0, which is the KL convention.
        kl_rows = np.sum(np.exp(log_p_teacher) * (log_p_teacher - log_p_student), axis=1)
        # Rounding can give a tiny negative KL for (near-)identical rows; KL is >= 0 by definition.
        kl = max(float(np.mean(kl_rows)), 0.0)
        return {"agreement": float(agreement), "kl": kl, "n": int(student.shape[0])}
