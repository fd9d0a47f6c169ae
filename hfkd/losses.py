"""Distillation losses as pure functions on tensors.

Every function takes logits of shape `(batch_size, num_labels)` and returns per-row values (`reduction="none"`,
shape `(batch_size,)`), their sum (`"sum"`) or their mean over rows (`"batchmean"` / `"mean"`). Summed forms exist
so that the trainer can normalise by the row counts of a whole accumulated batch, which is what makes gradient
accumulation exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


# ---- intermediate layers (DistilBERT's cosine, TinyBERT's hidden-state and attention losses) ------------------------
# Token-level terms take hidden states of shape `(batch_size, seq_len, hidden)` or attention maps of shape
# `(batch_size, heads, seq_len, seq_len)` and the attention mask `(batch_size, seq_len)` (1 = real token, 0 = padding);
# padded positions never change them. Each returns per-row values (the mean over the row's real tokens), reduced like
# the logit losses.

HIDDEN_LOSSES = ("mse", "cosine")
ATTENTION_LOSSES = ("kl", "mse")


def _masked_token_mean(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`(B, T)` values and a `(B, T)` mask -> `(B,)` means over each row's real tokens (0 for an all-padding row)."""
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def hidden_state_loss(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    kind: str = "mse",
    reduction: str = "mean",
) -> torch.Tensor:
    """Distance between student and teacher hidden states of the same width (project the student's first when widths
    differ), averaged over each row's real tokens.

    Args:
        student_hidden, teacher_hidden (`torch.Tensor` of shape `(batch_size, seq_len, hidden)`).
        attention_mask (`torch.Tensor` of shape `(batch_size, seq_len)`): 1 for tokens, 0 for padding.
        kind (`str`): `"mse"` (mean squared error over the hidden dimension) or `"cosine"` (1 - cosine similarity,
            DistilBERT's loss).
        reduction (`str`): `"none"`, `"sum"` or `"mean"` over rows.
    """
    if student_hidden.shape != teacher_hidden.shape:
        raise ValueError(
            f"student hidden states {tuple(student_hidden.shape)} and teacher hidden states "
            f"{tuple(teacher_hidden.shape)} differ; project the student's to the teacher's width first."
        )
    s, t = student_hidden.float(), teacher_hidden.float()
    if kind == "mse":
        per_token = (s - t).pow(2).mean(-1)
    elif kind == "cosine":
        per_token = 1.0 - F.cosine_similarity(s, t, dim=-1, eps=1e-8)
    else:
        raise ValueError(f"hidden_loss={kind!r} is not valid; use one of {list(HIDDEN_LOSSES)}.")
    return _reduce(_masked_token_mean(per_token, attention_mask), reduction)


def attention_loss(
    student_attention: torch.Tensor,
    teacher_attention: torch.Tensor,
    attention_mask: torch.Tensor,
    kind: str = "kl",
    reduction: str = "mean",
    eps: float = 1e-12,
) -> torch.Tensor:
    """TinyBERT-style loss between attention distributions, per head, averaged over heads and real query tokens.

    Args:
        student_attention, teacher_attention (`torch.Tensor` of shape `(batch_size, heads, seq_len, seq_len)`): the
            attention probabilities (rows sum to 1 over the keys).
        attention_mask (`torch.Tensor` of shape `(batch_size, seq_len)`): 1 for tokens, 0 for padding; padded queries
            and padded keys are left out.
        kind (`str`): `"kl"` (KL(teacher || student) over the real keys) or `"mse"` (mean squared difference over the
            real keys).
    """
    if student_attention.shape != teacher_attention.shape:
        raise ValueError(
            f"student attention {tuple(student_attention.shape)} and teacher attention "
            f"{tuple(teacher_attention.shape)} differ: attention distillation needs the same number of heads."
        )
    keys = attention_mask[:, None, None, :].to(torch.float32)  # (B, 1, 1, T)
    s, t = student_attention.float() * keys, teacher_attention.float() * keys
    if kind == "kl":  # over the real keys, each distribution renormalised there (padded keys hold ~0 anyway)
        s = s / s.sum(-1, keepdim=True).clamp(min=eps)
        t = t / t.sum(-1, keepdim=True).clamp(min=eps)
        per_query = (torch.xlogy(t, t) - t * torch.log(s + eps)).sum(-1)
    elif kind == "mse":
        per_query = (s - t).pow(2).sum(-1) / keys.sum(-1).clamp(min=1)
    else:
        raise ValueError(f"attention_loss={kind!r} is not valid; use one of {list(ATTENTION_LOSSES)}.")
    return _reduce(_masked_token_mean(per_query.mean(1), attention_mask), reduction)


def resolve_layer_map(
    layer_map: str | Sequence[int],
    num_student_layers: int,
    num_teacher_layers: int,
    student_layer_ids: Sequence[int] | None = None,
) -> list[tuple[int, int]]:
    """`(student layer, teacher layer)` pairs (0-based) that the intermediate terms compare.

    Args:
        layer_map: `"auto"` (the teacher layers the student was cut from, `student_layer_ids`, when given; else
            `"uniform"`), `"uniform"` (student layer i matches teacher layer round((i + 1) * Lt / Ls) - 1, rounded
            half up: 3 of 6 -> 1, 3, 5), `"last"` (the last layers only), or one teacher layer per student layer, as a
            list or a comma-separated string (`"0,3,5"`).
        num_student_layers (`int`), num_teacher_layers (`int`): the two depths.
        student_layer_ids (`Sequence[int]`, *optional*): the teacher layer each student layer was copied from, as
            `hfkd.students.student_from_teacher` records it (`config.hfkd_student["layer_ids"]`; 3 of 6 -> 0, 3, 5).
            Used by `"auto"` when it has one valid teacher layer per student layer.
    """
    ls, lt = num_student_layers, num_teacher_layers
    recorded = _layer_ids(student_layer_ids, ls, lt) if student_layer_ids is not None else None
    if layer_map == "auto" and recorded is not None:
        return list(enumerate(recorded))
    if layer_map in ("auto", "uniform"):
        if ls > lt:
            raise ValueError(
                f"layer_map={layer_map!r} pairs the layers uniformly, which needs a student no deeper than the "
                f"teacher; got {ls} > {lt} layers. Give one teacher layer per student layer instead (a teacher layer "
                f"may repeat), e.g. '{','.join(str(min(i, lt - 1)) for i in range(ls))}'."
            )
        return [(i, int((i + 1) * lt / ls + 0.5) - 1) for i in range(ls)]
    if layer_map == "last":
        return [(ls - 1, lt - 1)]
    ids = _layer_ids(layer_map.split(",") if isinstance(layer_map, str) else layer_map, ls, lt)
    if ids is None:
        if recorded is not None:
            example = recorded
        elif ls <= lt:
            example = [t for _, t in resolve_layer_map("uniform", ls, lt)]
        else:  # deeper than the teacher: some teacher layers serve several student layers
            example = [min(i, lt - 1) for i in range(ls)]
        raise ValueError(
            f"layer_map={layer_map!r} is not valid for a {ls}-layer student and a {lt}-layer teacher: use 'auto', "
            f"'uniform', 'last', or {ls} teacher layers in [0, {lt - 1}], e.g. '{','.join(str(i) for i in example)}'."
        )
    return list(enumerate(ids))


def _layer_ids(values, num_student_layers: int, num_teacher_layers: int) -> list[int] | None:
    """`values` as one teacher layer id per student layer, or `None` when they are not that."""
    try:
        ids = [int(x) for x in values]
    except (TypeError, ValueError):
        return None
    if len(ids) != num_student_layers or any(not 0 <= i < num_teacher_layers for i in ids):
        return None
    return ids
