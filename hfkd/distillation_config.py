"""The arguments of [`DistillationTrainer`] and of the students it trains, beside the trainer (as TRL keeps
`gkd_config.py` beside `gkd_trainer.py`).

`DistillationArguments` extends `transformers.TrainingArguments`: every Trainer option works, plus the distillation
terms, the teacher and its logit cache. `StudentArguments` says how a student is cut from the teacher.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from .arguments import (
    allow_pickle_weights_field,
    check_choice,
    check_range,
    grad_health_field,
    overwrite_output_dir_field,
)
from .losses import ATTENTION_LOSSES, DISTILLATION_LOSSES, HIDDEN_LOSSES

STUDENT_VOCABULARIES = ("full", "trimmed")


@dataclass
class StudentArguments:
    """How a student is made from a teacher (DistilBERT-style: the teacher's embeddings, some layers, its head;
    optionally narrower, and with the vocabulary of its training text only)."""

    student_num_layers: int | None = field(
        default=None,
        metadata={"help": "Keep this many of the teacher's encoder layers, spread evenly (first and last included)."},
    )
    student_layer_ids: list[int] | None = field(
        default=None,
        metadata={"help": "Keep exactly these teacher layers (0-based, increasing). Overrides spreading."},
    )
    student_architecture: str = field(
        default="same",
        metadata={
            "help": "'same': the teacher's class with fewer layers; 'distilbert': convert a BERT teacher into a "
            "DistilBertForSequenceClassification."
        },
    )

    student_hidden_size: int | None = field(
        default=None,
        metadata={
            "help": "A narrower student: keep this many of the teacher's hidden dimensions (a multiple of its head "
            "size, e.g. 192 of MiniLM's 384; heads scaled by the same ratio), chosen by their activations on the "
            "training text (by weight norms where no text is at hand). Default: the teacher's width."
        },
    )
    student_intermediate_size: int | None = field(
        default=None,
        metadata={
            "help": "The narrower student's feed-forward width. Default: the teacher's, scaled like the hidden size."
        },
    )
    student_vocabulary: str = field(
        default="full",
        metadata={
            "help": "'full': the teacher's vocabulary; 'trimmed': only the special tokens, the tokens of the text the "
            "student trains on and the single characters (with their ## forms), with their embedding rows (a word "
            "outside them becomes [UNK]). 'trimmed' needs cached teacher logits."
        },
    )

    def __post_init__(self):
        check_range("student_num_layers", self.student_num_layers, 1)
        check_choice("student_architecture", self.student_architecture, ("same", "distilbert"))
        check_range("student_hidden_size", self.student_hidden_size, 1, hint="use e.g. 192 for a 384-wide teacher")
        check_range(
            "student_intermediate_size", self.student_intermediate_size, 1, hint="leave it unset (scaled with width)"
        )
        check_choice("student_vocabulary", self.student_vocabulary, STUDENT_VOCABULARIES)

    @property
    def builds_student(self) -> bool:
        """Whether these arguments ask for a student cut from a teacher (fewer layers, or narrower)."""
        return self.student_num_layers is not None or self.student_layer_ids is not None or self.narrows

    @property
    def narrows(self) -> bool:
        """Whether the student is to be narrower than the teacher (`student_hidden_size` / `_intermediate_size`)."""
        return self.student_hidden_size is not None or self.student_intermediate_size is not None


TEACHER_LOGITS_MODES = ("auto", "cache", "online")


@dataclass
class DistillationArguments(TrainingArguments):
    r"""
    Configuration class for [`DistillationTrainer`]: every [`~transformers.TrainingArguments`] field, plus the ones
    below, which are specific to distillation. Ranges are checked at construction (a `ValueError` names the field, the
    allowed range and the value). In YAML configs and on the command line the keys are these names.

    Args:
        teacher_model_name_or_path (`str`, *optional*):
            The fine-tuned teacher: a local folder (e.g. the output of `scripts/finetune.py`) or a Hub id. Its labels
            are brought to the data's order when the scripts load it.
        student_model_name_or_path (`str`, *optional*):
            Start the student from this checkpoint instead of cutting it from the teacher's layers.
        temperature (`float`, *optional*, defaults to `2.0`):
            Softmax temperature T > 0 of the soft targets; the distillation term is scaled by T².
        alpha (`float`, *optional*, defaults to `0.5`):
            Weight in [0, 1] of the distillation term; the hard-label term gets `1 - alpha`.
        distillation_loss (`str`, *optional*, defaults to `"kl"`):
            Soft-target loss: `"kl"`, `"reverse_kl"` or `"mse"` (on logits).
        hidden_weight (`float`, *optional*, defaults to `0.0`):
            Weight of the hidden-state term between paired layers (see `layer_map`); 0 turns it off.
        hidden_loss (`str`, *optional*, defaults to `"mse"`):
            Hidden-state distance: `"mse"` or `"cosine"` (DistilBERT's).
        attention_weight (`float`, *optional*, defaults to `0.0`):
            Weight of the per-head attention-distribution term (TinyBERT's); 0 turns it off.
        attention_loss (`str`, *optional*, defaults to `"kl"`):
            Attention distance: `"kl"` or `"mse"`.
        embedding_weight (`float`, *optional*, defaults to `0.0`):
            Weight of the MSE between the embedding outputs; 0 turns it off.
        layer_map (`str`, *optional*, defaults to `"auto"`):
            Which teacher layer each student layer is compared with: `"auto"` (the layers a student cut from the
            teacher came from, else uniform), `"uniform"`, `"last"`, or explicit ids such as `"0,3,5"`.
        teacher_logits (`str`, *optional*, defaults to `"auto"`):
            `"cache"`: the teacher's logits computed once and stored with their provenance; `"online"`: the teacher
            runs on every step; `"auto"`: the cache wherever it applies (not with intermediate terms).
        teacher_logits_cache_dir (`str`, *optional*):
            Where cached teacher logits are kept. Defaults to `$HF_HOME/hfkd/teacher_logits`.
        teacher_logits_batch_size (`int`, *optional*, defaults to `256`):
            Batch size of the one inference pass that fills the cache.
        grad_health (`bool`, *optional*, defaults to `True`):
            Per-layer-group gradient norms, clipping rate, vanishing/exploding warnings and `grad_health.png`.
        allow_pickle_weights (`bool`, *optional*, defaults to `False`):
            Load `pytorch_model.bin` weights (unpickling can run code); otherwise safetensors only.
        overwrite_output_dir (`bool`, *optional*, defaults to `False`):
            Replace a run of another config in `output_dir` (otherwise an error).

    The loss is `alpha * T² * KL(softmax(t / T) ‖ softmax(s / T)) + (1 - alpha) * CE(s, labels)`, plus the weighted
    intermediate terms. Some `TrainingArguments` defaults differ, to suit distillation runs:
    `output_dir="runs/distill"`, evaluation and checkpoints every epoch, `save_total_limit=2`, `logging_steps=20`,
    batch sizes 32 / 64.
    """

    teacher_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "The fine-tuned teacher: a local folder (e.g. the output of scripts/finetune.py) or a Hub id. "
            "Its label names must be the data's."
        },
    )
    student_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Start the student from this checkpoint (Hub id or folder) instead of cutting it from the teacher "
            "with student_num_layers / student_layer_ids."
        },
    )
    temperature: float = field(
        default=2.0, metadata={"help": "Softmax temperature T > 0 of the soft targets; the KD term is scaled by T^2."}
    )
    alpha: float = field(
        default=0.5,
        metadata={"help": "Weight in [0, 1] of the distillation term; the hard-label term gets 1 - alpha."},
    )
    distillation_loss: str = field(
        default="kl", metadata={"help": f"Soft-target loss, one of {sorted(DISTILLATION_LOSSES)}."}
    )
    hidden_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the hidden-state term (student layers vs teacher layers, see layer_map). 0 = off."
        },
    )
    hidden_loss: str = field(
        default="mse", metadata={"help": f"Hidden-state distance, one of {list(HIDDEN_LOSSES)} (cosine: DistilBERT)."}
    )
    attention_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of the attention-distribution term (TinyBERT-style, per head). 0 = off."},
    )
    attention_loss: str = field(
        default="kl", metadata={"help": f"Attention distance, one of {list(ATTENTION_LOSSES)}."}
    )
    embedding_weight: float = field(
        default=0.0, metadata={"help": "Weight of the MSE between the embedding outputs. 0 = off."}
    )
    layer_map: str = field(
        default="auto",
        metadata={
            "help": "Which teacher layer each student layer is compared with: 'auto' (the teacher layers a student "
            "cut from the teacher was copied from, e.g. 0,3,5 for 3 of 6; else 'uniform'), 'uniform' (student layer "
            "i <-> teacher layer round((i+1) * Lt / Ls) - 1, e.g. 1,3,5), 'last', or one teacher layer per student "
            "layer, e.g. '0,3,5'."
        },
    )
    grad_health: bool = grad_health_field()
    allow_pickle_weights: bool = allow_pickle_weights_field()
    overwrite_output_dir: bool = overwrite_output_dir_field()
    teacher_logits: str = field(
        default="auto",
        metadata={
            "help": "'cache': compute the teacher's logits on the training (and evaluation) data once, store them "
            "with their provenance and train without the teacher in memory; 'online': run the teacher on every step; "
            "'auto': cache wherever it applies (the scripts' fixed datasets)."
        },
    )
    teacher_logits_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where cached teacher logits are kept. Default: $HF_HOME/hfkd/teacher_logits."},
    )
    teacher_logits_batch_size: int = field(
        default=256, metadata={"help": "Batch size of the one inference pass that fills the teacher-logit cache."}
    )
    # Defaults that differ from TrainingArguments: evaluate and checkpoint each epoch, log often, keep 2 checkpoints.
    output_dir: str | None = field(
        default="runs/distill", metadata={"help": "Where the student, checkpoints and metrics go."}
    )
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: 'no', 'steps' or 'epoch'."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to checkpoint: 'no', 'steps' or 'epoch'."})
    logging_steps: float = field(default=20, metadata={"help": "Log every this many optimizer steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep at most this many checkpoints."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Training batch size per process."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Evaluation batch size per process."})

    def __post_init__(self):
        check_range("temperature", self.temperature, 0, low_open=True, hint="use a positive value such as 2.0")
        check_range("alpha", self.alpha, 0, 1, hint="use e.g. 0.5 (1.0 = distillation term only, 0.0 = labels only)")
        check_choice("distillation_loss", self.distillation_loss, DISTILLATION_LOSSES)
        check_choice("teacher_logits", self.teacher_logits, TEACHER_LOGITS_MODES)
        check_range("teacher_logits_batch_size", self.teacher_logits_batch_size, 1)
        for name in ("hidden_weight", "attention_weight", "embedding_weight"):
            check_range(name, getattr(self, name), 0, hint="use 0 (off) or a positive weight such as 1.0")
        check_choice("hidden_loss", self.hidden_loss, HIDDEN_LOSSES)
        check_choice("attention_loss", self.attention_loss, ATTENTION_LOSSES)
        if self.uses_intermediate_terms and self.teacher_logits == "cache":
            raise ValueError(
                "teacher_logits='cache' cannot serve hidden_weight / attention_weight / embedding_weight > 0: those "
                "terms need the teacher's hidden states on every step. Set teacher_logits to 'online' (or 'auto', "
                "which then runs the teacher online), or set the intermediate weights to 0."
            )
        super().__post_init__()

    @property
    def uses_intermediate_terms(self) -> bool:
        """Whether any hidden-state, attention or embedding term is on."""
        return self.hidden_weight > 0 or self.attention_weight > 0 or self.embedding_weight > 0

    @property
    def uses_logit_cache(self) -> bool:
        """Whether the pipelines precompute the teacher's logits: 'cache', or 'auto' without intermediate terms."""
        return self.teacher_logits == "cache" or (self.teacher_logits == "auto" and not self.uses_intermediate_terms)
