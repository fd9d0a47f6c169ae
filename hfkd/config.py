"""Argument dataclasses: one per concern, each field documented, ranges checked in `__post_init__`.

YAML configs are flat and their keys are these field names (see `hfkd.parser`). `DistillationArguments` extends
`transformers.TrainingArguments` (it configures a `Trainer`); `FinetuneArguments` configures the plain Accelerate
loop and reuses the TrainingArguments names for the knobs both share, so a key means the same thing in every config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from .losses import ATTENTION_LOSSES, DISTILLATION_LOSSES, HIDDEN_LOSSES


def check_range(
    name: str,
    value: float | None,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    hint: str | None = None,
) -> None:
    """Raise a `ValueError` naming the field, the allowed range and the value when `value` is outside it."""
    if value is None:
        return
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        fix = hint or f"set --{name} (or `{name}:` in the YAML config) to a value in that range"
        raise ValueError(f"{name} must be in {left}{lo}, {hi}{right}; got {name}={value!r}. Fix: {fix}.")


def check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; set {name} to one of {sorted(choices)}.")


# Options every training script has (one definition, one help text).
def grad_health_field() -> bool:
    return field(
        default=True,
        metadata={
            "help": "Log per-layer-group gradient norms (before clipping) and the clipping rate at each logging step, "
            "warn on vanishing / exploding gradients, and draw grad_health.png in output_dir."
        },
    )


def allow_pickle_weights_field() -> bool:
    return field(
        default=False,
        metadata={
            "help": "Load model weights stored as pickles (pytorch_model.bin). Off by default: unpickling can run "
            "code; only safetensors are loaded."
        },
    )


def overwrite_output_dir_field() -> bool:
    return field(
        default=False,
        metadata={
            "help": "Replace a run of another config already in output_dir (by default that is an error, so that no "
            "run is overwritten by accident). Continuing a run is --resume_from_checkpoint."
        },
    )


@dataclass
class DataArguments:
    """Which domains to load and how to tokenise them."""

    dataset: str = field(
        default="tweets",
        metadata={
            "help": "Where the domains come from: 'tweets' (the built-in labelled tweets, needs the 'demo' extra), a "
            "local csv/json/jsonl/parquet file, a folder with one file per domain, or a Hugging Face Hub dataset id."
        },
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Configuration name of a Hub dataset (passed to datasets.load_dataset)."}
    )
    source_domains: list[str] | None = field(
        default=None,
        metadata={
            "help": "Domains whose labelled training split is trained on. Default: every domain of the dataset."
        },
    )
    text_column: str = field(default="text", metadata={"help": "Column that holds the input text."})
    label_column: str = field(default="label", metadata={"help": "Column that holds the label (name or id)."})
    domain_column: str | None = field(
        default=None, metadata={"help": "Column that splits a single table into domains, if any."}
    )
    class_names: list[str] | None = field(
        default=None,
        metadata={
            "help": "The label space (class names in id order); integer labels are ids into it (0 is the first name). "
            "Default: the sorted label names found in the data; integer labels are their own names, in numeric order."
        },
    )
    encoding: str = field(
        default="utf-8",
        metadata={
            "help": "Text encoding of local csv/tsv/json/jsonl files, e.g. 'latin-1' or 'cp1252' for files saved by "
            "older Windows tools (not used for parquet, the built-in tweets or Hub datasets)."
        },
    )
    max_length: int = field(default=128, metadata={"help": "Truncate inputs to this many tokens (dynamic padding)."})
    validation_size: float = field(
        default=0.1, metadata={"help": "Fraction of a domain put in validation when the source has no such split."}
    )
    test_size: float = field(
        default=0.1, metadata={"help": "Fraction of a domain put in test when the source has no such split."}
    )
    split_seed: int = field(default=42, metadata={"help": "Seed of the text hash that assigns rows to splits."})
    deduplicate: bool = field(
        default=True,
        metadata={
            "help": "Compare texts by a normalised key (lower-cased; a leading 'RT @x:' cut, @mentions as @user, "
            "links as http, spacing collapsed): of a domain's train rows with one key the first is kept, none if "
            "their labels disagree; splits are hashed on the key; train rows whose key is in a validation/test split "
            "are dropped. false: no de-duplication (tweets: exact text only) and the raw-text hash of earlier hfkd."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep at most this many training rows per domain (quick runs, debugging)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep at most this many validation and test rows per domain."}
    )

    def __post_init__(self):
        check_range("max_length", self.max_length, 1)
        check_range("validation_size", self.validation_size, 0, 1, high_open=True)
        check_range("test_size", self.test_size, 0, 1, high_open=True)
        check_range("max_train_samples", self.max_train_samples, 1)
        check_range("max_eval_samples", self.max_eval_samples, 1)
        if self.validation_size + self.test_size >= 1:
            raise ValueError(
                f"validation_size + test_size must be < 1; got {self.validation_size} + {self.test_size}. "
                "Lower one of them so that some rows are left for training."
            )


@dataclass
class StudentArguments:
    """How a student is made from a teacher (DistilBERT-style: the teacher's embeddings, some layers, its head)."""

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

    def __post_init__(self):
        check_range("student_num_layers", self.student_num_layers, 1)
        check_choice("student_architecture", self.student_architecture, ("same", "distilbert"))

    @property
    def builds_student(self) -> bool:
        """Whether these arguments ask for a student cut from a teacher."""
        return self.student_num_layers is not None or self.student_layer_ids is not None


@dataclass
class ModelArguments:
    """The model that plain fine-tuning starts from."""

    model_name_or_path: str = field(
        default="builtin:minilm-l6",
        metadata={
            "help": "Hub id, local folder, or 'builtin:minilm-l6' (the embedded all-MiniLM-L6-v2, 'demo' extra). With "
            "student_num_layers / student_layer_ids a smaller student is cut from it first (no-distillation baseline)."
        },
    )


@dataclass
class FinetuneArguments:
    """The plain Accelerate fine-tuning loop (teachers and no-distillation baselines).

    Mixed precision, the number of processes and DeepSpeed come from `accelerate launch` / `accelerate config`.
    """

    output_dir: str = field(default="runs/finetune", metadata={"help": "Where the model, checkpoints and metrics go."})
    num_train_epochs: float = field(
        default=3.0,
        metadata={
            "help": "Number of passes over the training data; a fraction counts optimizer steps the way "
            "`transformers.Trainer` does (ceil(epochs * steps per epoch)), so the loop and the Trainer take the same "
            "number of steps for the same value."
        },
    )
    max_steps: int = field(default=-1, metadata={"help": "If > 0, stop after this many optimizer steps."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Training batch size per process."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Evaluation batch size per process."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate of AdamW."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases and LayerNorm)."})
    warmup_steps: float = field(
        default=0.1,
        metadata={
            "help": "Linear warm-up: an integer number of steps, or a float in [0, 1) as a fraction of all steps."
        },
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Clip the global gradient norm to this (0 = off)."})
    seed: int = field(default=42, metadata={"help": "Random seed for initialisation and data order."})
    logging_steps: int = field(default=20, metadata={"help": "Log the training loss every this many steps."})
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Keep at most this many epoch checkpoints (oldest removed first)."}
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "A checkpoint folder to resume from, or 'last' for the newest one in output_dir."},
    )
    mixed_precision: str | None = field(
        default=None,
        metadata={"help": "'no', 'fp16' or 'bf16'. Default: whatever `accelerate launch` / `accelerate config` set."},
    )
    report_to: str = field(
        default="none",
        metadata={"help": "Accelerate tracker(s), e.g. 'tensorboard' or 'wandb' (comma-separated), or 'none'."},
    )
    dataloader_num_workers: int = field(default=0, metadata={"help": "Worker processes per dataloader."})
    grad_health: bool = grad_health_field()
    allow_pickle_weights: bool = allow_pickle_weights_field()
    overwrite_output_dir: bool = overwrite_output_dir_field()

    def __post_init__(self):
        check_range("num_train_epochs", self.num_train_epochs, 0, low_open=True)
        check_range("per_device_train_batch_size", self.per_device_train_batch_size, 1)
        check_range("per_device_eval_batch_size", self.per_device_eval_batch_size, 1)
        check_range("gradient_accumulation_steps", self.gradient_accumulation_steps, 1)
        check_range("learning_rate", self.learning_rate, 0, low_open=True)
        check_range("weight_decay", self.weight_decay, 0)
        check_range("warmup_steps", self.warmup_steps, 0)
        if 1 < self.warmup_steps != int(self.warmup_steps):
            raise ValueError(
                f"warmup_steps must be an integer number of steps or a fraction in [0, 1); got {self.warmup_steps}."
            )
        check_range("max_grad_norm", self.max_grad_norm, 0)
        check_range("logging_steps", self.logging_steps, 1)
        check_range("save_total_limit", self.save_total_limit, 1)
        if self.mixed_precision is not None:
            check_choice("mixed_precision", self.mixed_precision, ("no", "fp16", "bf16"))

    def num_warmup_steps(self, num_training_steps: int) -> int:
        if self.warmup_steps >= 1:
            return int(self.warmup_steps)
        return int(self.warmup_steps * num_training_steps + 0.5)


TEACHER_LOGITS_MODES = ("auto", "cache", "online")


@dataclass
class DistillationArguments(TrainingArguments):
    """`TrainingArguments` plus the distillation settings of [`DistillationTrainer`].

    The loss is `alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, labels)`.
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


EXPERIMENT_MODELS = ("teacher", "baseline", "distilled", "adaptive", "intermediate")
"""The models of a cross-domain experiment, in the order they are trained and shown."""
DEFAULT_EXPERIMENT_MODELS = EXPERIMENT_MODELS[:4]
STUDENT_MODELS = ("adaptive", "distilled", "intermediate", "baseline")
"""The students, in the order `hub_student` and `hfkd push` prefer them by default."""


def parse_domain_weights(entries: list[str] | None, field_name: str = "target_domain_weights") -> dict[str, float]:
    """`["apple=2", "coachella=1"]` -> `{"apple": 2.0, "coachella": 1.0}`, with errors that name the bad entry."""
    weights: dict[str, float] = {}
    for entry in entries or []:
        name, sep, value = str(entry).partition("=")
        try:
            weight = float(value) if sep and name.strip() else None
        except ValueError:
            weight = None
        if weight is None or not weight >= 0 or weight == float("inf"):
            raise ValueError(
                f"{field_name} entry {entry!r} is not 'domain=weight' with a finite weight >= 0; write e.g. "
                f"{field_name}: [apple=2, coachella=1] (the weights are normalised)."
            )
        weights[name.strip()] = weight
    if weights and not sum(weights.values()) > 0:
        raise ValueError(f"{field_name}: at least one weight must be > 0; got {entries!r}.")
    return weights


@dataclass
class ExperimentArguments:
    """A cross-domain experiment: which models to train on the source domain(s) and where to evaluate them."""

    mode: str = field(
        default="single",
        metadata={
            "help": "'single': train on source_domains, evaluate on every domain. 'leave_one_out': one block per "
            "domain, which is held out as the target while all the others are the sources."
        },
    )
    target_domains: list[str] | None = field(
        default=None,
        metadata={
            "help": "Domains evaluated as targets (and whose unlabeled training text the adaptive student sees). "
            "Default: every domain of the dataset that is not a source. In leave_one_out mode: the pool of domains."
        },
    )
    models: list[str] = field(
        default_factory=lambda: list(DEFAULT_EXPERIMENT_MODELS),
        metadata={
            "help": f"Which models to train and compare, any of {list(EXPERIMENT_MODELS)} ('intermediate': the "
            "distilled student with hidden-state and attention terms, see intermediate_*_weight). The teacher is "
            "always needed (trained here, or given with teacher_model_name_or_path)."
        },
    )
    teacher_num_train_epochs: float | None = field(
        default=None, metadata={"help": "Epochs for fine-tuning the teacher. Default: num_train_epochs."}
    )
    teacher_learning_rate: float | None = field(
        default=None, metadata={"help": "Peak learning rate for fine-tuning the teacher. Default: learning_rate."}
    )
    unlabeled_ratio: float = field(
        default=1.0,
        metadata={
            "help": "Adaptive student: unlabeled target rows added per labelled source row (1.0 = as many as the "
            "source has), taken from the targets' training splits (never their test splits)."
        },
    )
    target_domain_weights: list[str] | None = field(
        default=None,
        metadata={
            "help": "Adaptive student: how the unlabeled rows are shared among targets, as 'domain=weight' entries "
            "(normalised; a domain left out gets 0). Default: equal shares."
        },
    )
    extra_metrics: list[str] | None = field(
        default=None,
        metadata={
            "help": "More `evaluate` metrics computed on every (model, domain), by Hub name ('accuracy', 'f1') or "
            "path; stored in results.json under 'extra'. The built-in local metrics always run, offline too."
        },
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "Redo every stage even when a finished one with the same config is in output_dir."},
    )
    intermediate_hidden_weight: float = field(
        default=1.0, metadata={"help": "The 'intermediate' student: weight of its hidden-state term (hidden_loss)."}
    )
    intermediate_attention_weight: float = field(
        default=1.0, metadata={"help": "The 'intermediate' student: weight of its attention term (attention_loss)."}
    )
    hub_student: str | None = field(
        default=None,
        metadata={
            "help": f"With push_to_hub: the student to push, one of {list(STUDENT_MODELS)}. Default: the first of "
            "them that is trained."
        },
    )

    def __post_init__(self):
        check_choice("mode", self.mode, ("single", "leave_one_out"))
        unknown = [m for m in self.models if m not in EXPERIMENT_MODELS]
        if unknown or not self.models:
            raise ValueError(
                f"models={self.models!r} has unknown entries {unknown}; choose from {list(EXPERIMENT_MODELS)}."
            )
        self.models = [m for m in EXPERIMENT_MODELS if m in self.models]
        check_range("teacher_num_train_epochs", self.teacher_num_train_epochs, 0, low_open=True)
        check_range("teacher_learning_rate", self.teacher_learning_rate, 0, low_open=True)
        check_range("unlabeled_ratio", self.unlabeled_ratio, 0, low_open=True, hint="use e.g. 1.0")
        check_range("intermediate_hidden_weight", self.intermediate_hidden_weight, 0)
        check_range("intermediate_attention_weight", self.intermediate_attention_weight, 0)
        parse_domain_weights(self.target_domain_weights)
        students = [m for m in self.models if m != "teacher"]
        if self.hub_student is not None and self.hub_student not in students:
            raise ValueError(
                f"hub_student={self.hub_student!r} is not a trained student; choose one of {students} (the students "
                "in models)."
            )


@dataclass
class EvaluationArguments:
    """`scripts/evaluate_models.py`: saved models evaluated on the test split of some domains."""

    model_paths: list[str] = field(
        default_factory=list,
        metadata={
            "help": "The models, as 'name=path' (or a bare path, named by its folder): saved Hugging Face folders or "
            "Hub ids."
        },
    )
    teacher: str | None = field(
        default=None,
        metadata={
            "help": "Name of the reference model: students' retention, agreement and KL are measured against it. "
            "Default: the model named 'teacher', if any."
        },
    )
    target_domains: list[str] | None = field(
        default=None,
        metadata={"help": "Domains to evaluate on (besides source_domains, shown as in-domain). Default: all."},
    )
    output_dir: str = field(default="runs/evaluate", metadata={"help": "Where results.json and report.md go."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Evaluation batch size per process."})
    extra_metrics: list[str] | None = field(
        default=None, metadata={"help": "More `evaluate` metrics by Hub name or path (see cross_domain.py)."}
    )
    allow_pickle_weights: bool = allow_pickle_weights_field()

    def __post_init__(self):
        if not self.model_paths:
            raise ValueError("model_paths is empty; pass e.g. --model_paths teacher=runs/t student=runs/s.")
        check_range("per_device_eval_batch_size", self.per_device_eval_batch_size, 1)
