"""`ExperimentArguments`: what a cross-domain experiment trains and where it evaluates it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..arguments import (
    check_choice,
    check_eval_splits,
    check_range,
    max_target_eval_samples_field,
    target_eval_splits_field,
)

EXPERIMENT_MODELS = (
    "teacher",
    "baseline",
    "distilled",
    "adaptive",
    "self_trained",
    "augmented",
    "adaptive_augmented",
    "intermediate",
    "multi_teacher",
    "dapt_teacher",
    "dapt_student",
)
"""The models of a cross-domain experiment, in the order they are trained and shown."""


DEFAULT_EXPERIMENT_MODELS = EXPERIMENT_MODELS[:4]
STUDENT_MODELS = (
    "adaptive_augmented",
    "adaptive",
    "self_trained",
    "distilled",
    "augmented",
    "dapt_student",
    "multi_teacher",
    "intermediate",
    "baseline",
)
"""The students, in the order `hub_student` and `hfkd push` prefer them by default."""
TEACHER_MODELS = ("teacher", "dapt_teacher")
"""The models of an experiment that are teachers: in the tables and comparisons, never chosen or pushed as the
student."""


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
    target_eval_splits: list[str] = target_eval_splits_field()
    max_target_eval_samples: int | None = max_target_eval_samples_field()
    seeds: list[int] | None = field(
        default=None,
        metadata={
            "help": "Train every stage once per seed, e.g. [42, 43, 44] (students of seed s learn from the teacher "
            "of seed s; a given teacher_model_name_or_path serves all), and report means and intervals over the seeds "
            "and the test rows. Seeds vary training only: the splits (split_seed) stay fixed. Default: [seed]."
        },
    )
    models: list[str] = field(
        default_factory=lambda: list(DEFAULT_EXPERIMENT_MODELS),
        metadata={
            "help": f"Which models to train and compare, any of {list(EXPERIMENT_MODELS)} ('self_trained': the "
            "adaptive student plus the teacher's confident predictions on the target text as hard labels, see "
            "self_training_*; 'intermediate': the distilled student with hidden-state and attention terms, see "
            "intermediate_*_weight; 'multi_teacher': distilled from one teacher per source domain, their soft "
            "targets combined per row, see multi_teacher_weighting; 'augmented': distilled on the source data plus "
            "augmented copies of its text, soft targets only, see augment_*; 'adaptive_augmented': the adaptive "
            "student plus augmented copies of the source and of the unlabeled target text; 'dapt_teacher': the base "
            "model's encoder first trained as a masked LM on the unlabeled source and target text (domain-adaptive "
            "pre-training), then fine-tuned like the teacher, see dapt_*; 'dapt_student': the adaptive student cut "
            "from and distilled by dapt_teacher). The teacher is always needed (trained here, or given with "
            "teacher_model_name_or_path)."
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
    self_training_fraction: float = field(
        default=0.5,
        metadata={
            "help": "The 'self_trained' student: of the target rows the labelling model predicts as each class, the "
            "most confident share that gets that class as a hard label (class-balanced; the rest keep only the "
            "soft targets)."
        },
    )
    self_training_rounds: int = field(
        default=1,
        metadata={
            "help": "The 'self_trained' student: rounds of labelling; round 1 is labelled by the teacher, round r + 1 "
            "by the student of round r (the soft targets stay the teacher's). Each round is a reused stage."
        },
    )
    augment_factor: float = field(
        default=1.0,
        metadata={
            "help": "The 'augmented' and 'adaptive_augmented' students: augmented texts made per source training "
            "text (and, for adaptive_augmented, per unlabeled target text; soft targets only; the student takes that "
            "many more optimizer steps)."
        },
    )
    augment_methods: list[str] = field(
        default_factory=lambda: ["span_drop", "sentence_mix"],
        metadata={
            "help": "The 'augmented' and 'adaptive_augmented' students: any of mlm_replace (needs "
            "augment_mlm_model), span_drop, sentence_mix (see hfkd.augment)."
        },
    )
    augment_mlm_model: str | None = field(
        default=None,
        metadata={
            "help": "The masked LM that mlm_replace samples words from: a folder written by hfkd.adaptation."
            "adapt_encoder (its mlm/), or any checkpoint with a trained masked-LM head."
        },
    )
    multi_teacher_weighting: str = field(
        default="mean",
        metadata={
            "help": "The 'multi_teacher' student (two or more source domains): how the soft targets of the per-domain "
            "teachers are combined per row: 'mean' (equal weights) or 'confidence' (each teacher weighted by its "
            "highest class probability on the row)."
        },
    )
    dapt_num_train_epochs: float = field(
        default=1.0,
        metadata={
            "help": "'dapt_teacher'/'dapt_student': epochs of masked-LM training of the base encoder on the source "
            "training text plus the adaptive student's unlabeled target text (unlabeled_ratio), before the "
            "fine-tuning on the source labels."
        },
    )
    dapt_learning_rate: float = field(
        default=5e-5,
        metadata={
            "help": "'dapt_teacher'/'dapt_student': peak learning rate of the encoder's masked-LM training (a new "
            "masked-LM head, tied to the word embeddings, trains at 2e-3)."
        },
    )
    dapt_mlm_probability: float = field(
        default=0.15,
        metadata={"help": "'dapt_teacher'/'dapt_student': the share of tokens masked in the masked-LM training."},
    )
    intermediate_hidden_weight: float = field(
        default=1.0, metadata={"help": "The 'intermediate' student: weight of its hidden-state term (hidden_loss)."}
    )
    intermediate_attention_weight: float = field(
        default=1.0, metadata={"help": "The 'intermediate' student: weight of its attention term (attention_loss)."}
    )
    export: str | None = field(
        default=None,
        metadata={
            "help": "'int8': export every trained student to ONNX and dynamic INT8 (`hfkd export`, files in its "
            "onnx/ folder, reused while the student is unchanged) and score the INT8 file as one more model, "
            "'<student>-int8', compared with its PyTorch student on the same rows. Needs pip install 'hfkd[export]'."
        },
    )
    select_student_by: str = field(
        default="source_validation",
        metadata={
            "help": "How the report names the student to ship, before any target label is read (every student stays "
            "in the tables): 'source_validation' (highest macro-F1 on the sources' validation rows) or 'label_free' "
            "(highest label-free ATC estimate of the target-mean macro-F1)."
        },
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
        check_eval_splits(self.target_eval_splits)
        check_range("max_target_eval_samples", self.max_target_eval_samples, 1)
        check_choice("select_student_by", self.select_student_by, ("source_validation", "label_free"))
        check_choice("export", self.export, (None, "int8"))
        check_choice("multi_teacher_weighting", self.multi_teacher_weighting, ("mean", "confidence"))
        check_range("augment_factor", self.augment_factor, 0, low_open=True, hint="use e.g. 1.0")
        for method in self.augment_methods:
            check_choice("augment_methods", method, ("mlm_replace", "span_drop", "sentence_mix"))
        augmenting = {"augmented", "adaptive_augmented"} & set(self.models)
        if "mlm_replace" in self.augment_methods and augmenting and not self.augment_mlm_model:
            raise ValueError(
                "augment_methods has mlm_replace but augment_mlm_model is not set; give the folder of an adapted "
                "encoder (hfkd.adaptation.adapt_encoder) or a checkpoint with a masked-LM head, or drop mlm_replace."
            )
        if self.seeds is not None and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise ValueError(f"seeds={self.seeds!r} must be a non-empty list of distinct integers, e.g. [42, 43, 44].")
        unknown = [m for m in self.models if m not in EXPERIMENT_MODELS]
        if unknown or not self.models:
            raise ValueError(
                f"models={self.models!r} has unknown entries {unknown}; choose from {list(EXPERIMENT_MODELS)}."
            )
        self.models = [m for m in EXPERIMENT_MODELS if m in self.models]
        check_range("teacher_num_train_epochs", self.teacher_num_train_epochs, 0, low_open=True)
        check_range("teacher_learning_rate", self.teacher_learning_rate, 0, low_open=True)
        check_range("unlabeled_ratio", self.unlabeled_ratio, 0, low_open=True, hint="use e.g. 1.0")
        check_range("self_training_fraction", self.self_training_fraction, 0, 1, low_open=True, hint="use e.g. 0.5")
        check_range("self_training_rounds", self.self_training_rounds, 1)
        check_range("dapt_num_train_epochs", self.dapt_num_train_epochs, 0, low_open=True, hint="use e.g. 1.0")
        check_range("dapt_learning_rate", self.dapt_learning_rate, 0, low_open=True, hint="use e.g. 5e-5")
        check_range("dapt_mlm_probability", self.dapt_mlm_probability, 0, 1, low_open=True, hint="use e.g. 0.15")
        if "dapt_student" in self.models and "dapt_teacher" not in self.models:
            self.models.append("dapt_teacher")  # the student's teacher is always in the tables
            self.models = [m for m in EXPERIMENT_MODELS if m in self.models]
        check_range("intermediate_hidden_weight", self.intermediate_hidden_weight, 0)
        check_range("intermediate_attention_weight", self.intermediate_attention_weight, 0)
        parse_domain_weights(self.target_domain_weights)
        students = [m for m in self.models if m not in TEACHER_MODELS]
        if self.hub_student is not None and self.hub_student not in students:
            raise ValueError(
                f"hub_student={self.hub_student!r} is not a trained student; choose one of {students} (the students "
                "in models)."
            )
