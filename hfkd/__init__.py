"""hfkd: knowledge distillation of BERT-class text classifiers with Hugging Face Transformers."""

import importlib.metadata

from . import _deprecated
from .data import DataArguments, load_domains, tokenize_domains
from .distillation_config import DistillationArguments, StudentArguments
from .evaluation import EvaluationArguments, evaluate_models
from .experiment import ExperimentArguments, run_experiment
from .losses import distillation_loss, hard_label_ce, soft_target_kl
from .models import load_classifier, load_tokenizer
from .parser import HfkdParser
from .pipelines.finetune import FinetuneArguments, ModelArguments
from .students import prune_width, student_from_teacher, student_tokenizer
from .trainer import DistillationTrainer
from .vocabulary import trim_vocabulary

__version__ = importlib.metadata.version("hfkd")

_deprecated.install()

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
    "prune_width",
    "run_experiment",
    "soft_target_kl",
    "student_from_teacher",
    "student_tokenizer",
    "tokenize_domains",
    "trim_vocabulary",
]
