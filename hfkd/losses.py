"""Distillation losses as pure functions on tensors.

Every function takes logits of shape `(batch_size, num_labels)` and returns per-row values (`reduction="none"`,
shape `(batch_size,)`), their sum (`"sum"`) or their mean over rows (`"batchmean"` / `"mean"`). Summed forms exist
so that the trainer can normalise by the row counts of a whole accumulated batch, which is what makes gradient
accumulation exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    if reduction in ("batchmean", "mean"):
        return values.sum() / max(values.shape[0], 1)
    raise ValueError(f"reduction must be one of 'none', 'sum', 'batchmean', 'mean'; got {reduction!r}.")


def soft_target_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    reduction: str = "batchmean",
) -> torch.Tensor:
    """Temperature-scaled KL(teacher || student) of Hinton et al. (2015), multiplied by `T**2`.

    The `T**2` factor keeps the gradient magnitude of the soft term comparable to the hard-label term as `T` changes.

    Args:
        student_logits (`torch.Tensor` of shape `(batch_size, num_labels)`): raw student scores.
        teacher_logits (`torch.Tensor` of shape `(batch_size, num_labels)`): raw teacher scores (no gradient needed).
        temperature (`float`): softening temperature `T > 0`.
        reduction (`str`): `"none"` (per row), `"sum"` or `"batchmean"` (sum over labels, mean over rows).

    Returns:
        `torch.Tensor`: `T**2 * sum_c p_t(c) * (log p_t(c) - log p_s(c))` reduced over rows, computed in float32.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ in "
            "shape: teacher and student must share one label space."
        )
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    per_row = F.kl_div(log_p_s, log_p_t, reduction="none", log_target=True).sum(-1) * temperature**2
    return _reduce(per_row, reduction)


def reverse_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    reduction: str = "batchmean",
) -> torch.Tensor:
    """Temperature-scaled KL(student || teacher) times `T**2` (mode-seeking); shapes as in [`soft_target_kl`]."""
    return soft_target_kl(teacher_logits, student_logits, temperature, reduction)


def logit_mse(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    reduction: str = "batchmean",
) -> torch.Tensor:
    """Mean squared error between raw logits, averaged over labels (Ba & Caruana, 2014); `temperature` is unused."""
    per_row = (student_logits.float() - teacher_logits.float()).pow(2).mean(-1)
    return _reduce(per_row, reduction)


def hard_label_ce(student_logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy on the gold labels; rows whose label is `-100` contribute nothing.

    Args:
        student_logits (`torch.Tensor` of shape `(batch_size, num_labels)`).
        labels (`torch.LongTensor` of shape `(batch_size,)`): class ids, or `-100` for unlabeled rows.
        reduction (`str`): `"none"` (per row, 0 for unlabeled rows), `"sum"`, or `"mean"` over the labelled rows
            (0 when there are none, never NaN).
    """
    per_row = F.cross_entropy(student_logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="none")
    if reduction == "mean":
        return per_row.sum() / (labels != IGNORE_INDEX).sum().clamp(min=1)
    return _reduce(per_row, reduction)


LossFn = Callable[..., torch.Tensor]

#: Soft-target losses selectable by name with `DistillationArguments.distillation_loss`.
DISTILLATION_LOSSES: dict[str, LossFn] = {
    "kl": soft_target_kl,
    "reverse_kl": reverse_kl,
    "mse": logit_mse,
}


def get_distillation_loss(name: str) -> LossFn:
    """Look up a soft-target loss by name; raises a `ValueError` that lists the valid names."""
    try:
        return DISTILLATION_LOSSES[name]
    except KeyError:
        raise ValueError(
            f"distillation_loss={name!r} is not known; choose one of {sorted(DISTILLATION_LOSSES)}."
        ) from None


class DistillationLoss(NamedTuple):
    """The mixed loss and its two parts (each unweighted, averaged over its rows)."""

    loss: torch.Tensor
    loss_kd: torch.Tensor
    loss_ce: torch.Tensor


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float = 2.0,
    alpha: float = 0.5,
    loss_fn: str | LossFn = "kl",
) -> DistillationLoss:
    """`alpha * KD + (1 - alpha) * CE` on one batch.

    The KD term is averaged over all rows, the CE term over the rows with a label (`labels != -100`); unlabeled rows
    therefore contribute only to the KD term. With `labels=None` the batch is treated as fully unlabeled.
    """
    kd_fn = get_distillation_loss(loss_fn) if isinstance(loss_fn, str) else loss_fn
    loss_kd = kd_fn(student_logits, teacher_logits, temperature, reduction="batchmean")
    if labels is None:
        loss_ce = student_logits.new_zeros((), dtype=torch.float32)
    else:
        loss_ce = hard_label_ce(student_logits, labels, reduction="mean")
    return DistillationLoss(alpha * loss_kd + (1.0 - alpha) * loss_ce, loss_kd, loss_ce)
