"""The cross-domain experiment that `scripts/cross_domain.py` runs: teacher, baseline and distilled students trained
on the source domain(s) and evaluated on every domain, as named stages reused by content hash."""

from .arguments import (
    DEFAULT_EXPERIMENT_MODELS,
    EXPERIMENT_MODELS,
    STUDENT_MODELS,
    TEACHER_MODELS,
    ExperimentArguments,
)
from .cross_domain import Experiment, finetune_arguments, run_experiment, unlabeled_target_rows

__all__ = [
    "DEFAULT_EXPERIMENT_MODELS",
    "EXPERIMENT_MODELS",
    "STUDENT_MODELS",
    "TEACHER_MODELS",
    "Experiment",
    "ExperimentArguments",
    "finetune_arguments",
    "run_experiment",
    "unlabeled_target_rows",
]
