"""Intermediate-layer distillation for [`DistillationTrainer`]: hidden states, attention maps, embedding outputs.

The loss functions are pure (`hfkd.losses`); this module holds what ties them to two models: which student layer is
compared with which teacher layer (`layer_map`), the learned projections when the student is narrower than the
teacher, and the forward-pass options the terms need (hidden states, attention probabilities).

The projections are trained with the student. They live on the student as the submodule `hfkd_projection`, so that
the optimizer and the Trainer's checkpoints (and therefore `resume_from_checkpoint`) include them; the trainer leaves
them out of the final saved student, which stays a plain Hugging Face model. For training, [`ProjectedStudent`] runs
the student and the projections in one `forward`: that module is what DDP wraps, since DDP only accepts parameters
used inside the forward pass it wraps.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import logging

from .losses import attention_loss, hidden_state_loss, resolve_layer_map
from .models import hidden_size, num_heads, num_layers

logger = logging.get_logger(__name__)

PROJECTION_ATTR = "hfkd_projection"
TERMS = ("hidden", "attention", "embedding")


def recorded_teacher_layers(student: PreTrainedModel, teacher: PreTrainedModel) -> list[int] | None:
    """The teacher layers the student was cut from, as [`~hfkd.students.student_from_teacher`] records them in
    `config.hfkd_student` (kept by `save_pretrained`); `None` when the student records none, or was cut from a teacher
    of another depth (whose layer ids name other layers than this teacher's)."""
    record = getattr(student.config, "hfkd_student", None)
    if not isinstance(record, dict) or record.get("layer_ids") is None:
        return None
    if record.get("num_teacher_layers") != num_layers(teacher):
        return None
    return list(record["layer_ids"])


def kept_hidden_dims(student: PreTrainedModel, teacher_width: int | None) -> torch.Tensor | None:
    """The teacher's hidden dimensions a student narrowed by [`~hfkd.students.prune_width`] kept (its
    `config.hfkd_student["hidden_dims"]`), when they fit this student and a teacher of width `teacher_width`."""
    record = getattr(student.config, "hfkd_student", None)
    if not isinstance(record, dict) or not record.get("hidden_dims"):
        return None
    dims = list(record["hidden_dims"])
    if record.get("teacher_hidden_size") != teacher_width or len(dims) != hidden_size(student):
        return None
    if len(set(dims)) != len(dims) or not all(isinstance(d, int) and 0 <= d < teacher_width for d in dims):
        return None
    return torch.tensor(dims, dtype=torch.long)


class IntermediateTerms:
    """The hidden-state, attention and embedding terms of one student/teacher pair (the weights > 0 of `args`)."""

    def __init__(self, args, student: PreTrainedModel, teacher: PreTrainedModel):
        self.weights = {
            "hidden": args.hidden_weight,
            "attention": args.attention_weight,
            "embedding": args.embedding_weight,
        }
        self.active = [name for name in TERMS if self.weights[name] > 0]
        self.hidden_kind, self.attention_kind = args.hidden_loss, args.attention_loss
        recorded = recorded_teacher_layers(student, teacher)
        self.pairs = resolve_layer_map(args.layer_map, num_layers(student), num_layers(teacher), recorded)
        how = ""
        if args.layer_map == "auto":
            cut = recorded is not None and self.pairs == list(enumerate(recorded))
            how = " (the teacher layers the student was cut from)" if cut else " (uniform: no record of those layers)"
        if "attention" in self.active:
            if num_heads(student) != num_heads(teacher):
                raise ValueError(
                    f"attention_weight > 0 compares attention maps head by head, but the student has "
                    f"{num_heads(student)} heads and the teacher {num_heads(teacher)} (a student_hidden_size below "
                    "the teacher's keeps fewer heads); set attention_weight to 0."
                )
            for model in (student, teacher):  # SDPA / flash kernels do not return attention probabilities
                model.set_attn_implementation("eager")
        widths = hidden_size(student), hidden_size(teacher)
        self.has_projections = ("hidden" in self.active or "embedding" in self.active) and widths[0] != widths[1]
        if self.has_projections:
            names = [f"layer_{s}" for s, _ in self.pairs] * ("hidden" in self.active)
            names += ["embeddings"] * ("embedding" in self.active)
            projection = nn.ModuleDict({name: nn.Linear(*widths) for name in names})
            kept = kept_hidden_dims(student, widths[1])
            if kept is not None:  # a student narrowed from this teacher: start from putting its dims back in place
                with torch.no_grad():
                    for linear in projection.values():
                        linear.weight.zero_()
                        linear.weight[kept, torch.arange(len(kept))] = 1.0
                        linear.bias.zero_()
            param = next(student.parameters())
            setattr(student, PROJECTION_ATTR, projection.to(device=param.device, dtype=param.dtype))
            logger.info(f"Student width {widths[0]} != teacher width {widths[1]}: learned projections for {names}.")
        logger.info(
            f"Intermediate terms {self.active}, layer_map={args.layer_map!r}{how}: layer pairs (student, teacher) "
            f"{self.pairs}."
        )

    def forward_kwargs(self) -> dict[str, bool]:
        kwargs = {}
        if "hidden" in self.active or "embedding" in self.active:
            kwargs["output_hidden_states"] = True
        if "attention" in self.active:
            kwargs["output_attentions"] = True
        return kwargs

    def student_states(self, student: nn.Module, student_out) -> dict[str, torch.Tensor]:
        """The student's hidden states that the hidden and embedding terms compare, by projection name (`layer_{s}`,
        `embeddings`), each projected to the teacher's width when the student is narrower."""
        hidden = student_out.hidden_states
        states = {}
        if "hidden" in self.active:
            states |= {f"layer_{s}": hidden[s + 1] for s, _ in self.pairs}
        if "embedding" in self.active:
            states["embeddings"] = hidden[0]
        projection = getattr(student, PROJECTION_ATTR, None)
        if projection is not None:
            states = {name: projection[name](state) for name, state in states.items()}
        return states

    def per_row(self, student_states: dict, student_out, teacher_out, attention_mask: torch.Tensor) -> dict:
        """`{term: (batch_size,) tensor}` of the active terms; layer terms are averaged over the layer pairs.

        `student_states` are [`~IntermediateTerms.student_states`], computed inside the forward pass of
        [`ProjectedStudent`].
        """
        terms = {}
        t_hidden = teacher_out.hidden_states
        if "hidden" in self.active:
            terms["hidden"] = torch.stack(
                [
                    hidden_state_loss(
                        student_states[f"layer_{s}"], t_hidden[t + 1], attention_mask, self.hidden_kind, "none"
                    )
                    for s, t in self.pairs
                ]
            ).mean(0)
        if "attention" in self.active:
            s_att, t_att = student_out.attentions, teacher_out.attentions
            terms["attention"] = torch.stack(
                [
                    attention_loss(s_att[s], t_att[t], attention_mask, self.attention_kind, "none")
                    for s, t in self.pairs
                ]
            ).mean(0)
        if "embedding" in self.active:
            embeddings = student_states["embeddings"]
            terms["embedding"] = hidden_state_loss(embeddings, t_hidden[0], attention_mask, "mse", "none")
        return terms


class ProjectedStudent(nn.Module):
    """The student and its projections as one module, for training with intermediate terms.

    DDP (with `find_unused_parameters`) rejects a parameter whose gradient arrives without it having been used in the
    forward pass it wraps, so the projections must run inside that forward: [`DistillationTrainer`] has this module,
    not the bare student, wrapped for training. It owns no parameters of its own (the projections stay on the student
    as `hfkd_projection`), so the optimizer, checkpoints and the saved student are those of the student.

    Args:
        student (`nn.Module`): the student (its projections, if any, attached by [`IntermediateTerms`]).
        terms ([`IntermediateTerms`]): which outputs to ask the student for and which hidden states to project.
    """

    def __init__(self, student: nn.Module, terms: IntermediateTerms):
        super().__init__()
        self.student = student
        self.terms = terms
        self.training = student.training  # the student's mode, set without touching its submodules' modes

    def forward(self, **inputs) -> tuple[Any, dict[str, torch.Tensor]]:
        """`(student outputs, student_states)`: the student's outputs with the hidden states and attentions the terms
        need, and its (projected) hidden states for [`~IntermediateTerms.per_row`]."""
        outputs = self.student(**inputs, **self.terms.forward_kwargs())
        return outputs, self.terms.student_states(self.student, outputs)
