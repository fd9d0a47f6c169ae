"""hfkd: knowledge distillation of BERT-class text classifiers with Hugging Face Transformers."""

__version__ = "0.1.0"

from .config import DataArguments, DistillationArguments, FinetuneArguments, ModelArguments, StudentArguments
from .data import load_domains, tokenize_domains
from .losses import distillation_loss, hard_label_ce, soft_target_kl
from .models import load_classifier, load_tokenizer
from .parser import HfkdParser
from .students import student_from_teacher, student_tokenizer
from .trainer import DistillationTrainer

__all__ = [
    "DataArguments",
    "DistillationArguments",
    "DistillationTrainer",
    "FinetuneArguments",
    "HfkdParser",
    "ModelArguments",
    "StudentArguments",
    "__version__",
    "distillation_loss",
    "hard_label_ce",
    "load_classifier",
    "load_domains",
    "load_tokenizer",
    "soft_target_kl",
    "student_from_teacher",
    "student_tokenizer",
    "tokenize_domains",
]
