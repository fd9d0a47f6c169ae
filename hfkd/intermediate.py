"""Intermediate-layer distillation for [`DistillationTrainer`]: hidden states, attention maps, embedding outputs.

The loss functions are pure (`hfkd.losses`); this module holds what ties them to two models: which student layer is
compared with which teacher layer (`layer_map`), the learned projections when the student is narrower than the
teacher, and the forward-pass options the terms need (hidden states, attention probabilities).

The projections are trained with the student. They live on the student as the submodule `hfkd_projection`, so that
the optimizer, DDP and the Trainer's checkpoints (and therefore `resume_from_checkpoint`) include them; the trainer
leaves them out of the final saved student, which stays a plain Hugging Face model.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import logging

from .losses import attention_loss, hidden_state_loss, resolve_layer_map

logger = logging.get_logger(__name__)

PROJECTION_ATTR = "hfkd_projection"
TERMS = ("hidden", "attention", "embedding")


def _config_value(model: PreTrainedModel, *names: str) -> int:
    config = model.config.get_text_config()
    return next(getattr(config, n) for n in names if getattr(config, n, None) is not None)


def num_layers(model: PreTrainedModel) -> int:
    return _config_value(model, "num_hidden_layers", "n_layers")


def hidden_size(model: PreTrainedModel) -> int:
    return _config_value(model, "hidden_size", "dim")


def num_heads(model: PreTrainedModel) -> int:
    return _config_value(model, "num_attention_heads", "n_heads")


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
        self.pairs = resolve_layer_map(args.layer_map, num_layers(student), num_layers(teacher))
        if "attention" in self.active:
            if num_heads(student) != num_heads(teacher):
                raise ValueError(
                    f"attention_weight > 0 compares attention maps head by head, but the student has "
                    f"{num_heads(student)} heads and the teacher {num_heads(teacher)}; set attention_weight to 0."
                )
            for model in (student, teacher):  # SDPA / flash kernels do not return attention probabilities
                model.set_attn_implementation("eager")
        widths = hidden_size(student), hidden_size(teacher)
        if ("hidden" in self.active or "embedding" in self.active) and widths[0] != widths[1]:
            names = [f"layer_{s}" for s, _ in self.pairs] * ("hidden" in self.active)
            names += ["embeddings"] * ("embedding" in self.active)
            projection = nn.ModuleDict({name: nn.Linear(*widths) for name in names})
            param = next(student.parameters())
            setattr(student, PROJECTION_ATTR, projection.to(device=param.device, dtype=param.dtype))
            logger.info(f"Student width {widths[0]} != teacher width {widths[1]}: learned projections for {names}.")
        logger.info(f"Intermediate terms {self.active}, layer pairs (student, teacher) {self.pairs}.")

    def forward_kwargs(self) -> dict[str, bool]:
        kwargs = {}
        if "hidden" in self.active or "embedding" in self.active:
            kwargs["output_hidden_states"] = True
        if "attention" in self.active:
            kwargs["output_attentions"] = True
        return kwargs

    def per_row(self, student: nn.Module, student_out, teacher_out, attention_mask: torch.Tensor) -> dict:
        """`{term: (batch_size,) tensor}` of the active terms; layer terms are averaged over the layer pairs."""
        projection = getattr(student, PROJECTION_ATTR, None)

        def project(name: str, hidden: torch.Tensor) -> torch.Tensor:
            return projection[name](hidden) if projection is not None else hidden

        terms = {}
        s_hidden, t_hidden = student_out.hidden_states, teacher_out.hidden_states
        if "hidden" in self.active:
            terms["hidden"] = torch.stack(
                [
                    hidden_state_loss(
                        project(f"layer_{s}", s_hidden[s + 1]),
                        t_hidden[t + 1],
                        attention_mask,
                        self.hidden_kind,
                        "none",
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
            embeddings = project("embeddings", s_hidden[0])
            terms["embedding"] = hidden_state_loss(embeddings, t_hidden[0], attention_mask, "mse", "none")
        return terms
