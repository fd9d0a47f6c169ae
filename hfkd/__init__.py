"""hfkd: knowledge distillation of BERT-class text classifiers with Hugging Face Transformers."""

__version__ = "0.2.0"

from .config import (
    DataArguments,
    DistillationArguments,
    EvaluationArguments,
    ExperimentArguments,
    FinetuneArguments,
    ModelArguments,
    StudentArguments,
)
from .data import load_domains, tokenize_domains
from .evaluation import evaluate_models
from .experiment import run_experiment
from .losses import distillation_loss, hard_label_ce, soft_target_kl
from .models import load_classifier, load_tokenizer
from .parser import HfkdParser
from .students import student_from_teacher, student_tokenizer
from .trainer import DistillationTrainer

__all__ = [
    "DataArguments",
    "DistillationArguments",
    "DistillationTrainer",
    "EvaluationArguments",
    "ExperimentArguments",
    "FinetuneArguments",
    "HfkdParser",
    "ModelArguments",
    "StudentArguments",
    "__version__",
    "distillation_loss",
    "evaluate_models",
    "hard_label_ce",
    "load_classifier",
    "load_domains",
    "load_tokenizer",
    "run_experiment",
    "soft_target_kl",
    "student_from_teacher",
    "student_tokenizer",
    "tokenize_domains",
]
