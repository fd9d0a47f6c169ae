"""hfkd: knowledge distillation of BERT-class text classifiers with Hugging Face Transformers."""

__version__ = "0.1.0"

from .config import DataArguments, DistillationArguments, FinetuneArguments, ModelArguments, StudentArguments
from .losses import distillation_loss, hard_label_ce, soft_target_kl
from .parser import HfkdParser
from .trainer import DistillationTrainer
