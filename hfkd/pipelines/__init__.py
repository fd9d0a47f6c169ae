"""What the single-step scripts run: `finetune` (the plain Accelerate loop: teachers and no-distillation baselines)
and `distill` (a student distilled with `DistillationTrainer`)."""

from .distill import distill, train_student
from .finetune import FinetuneArguments, ModelArguments, finetune, train_classifier

__all__ = ["FinetuneArguments", "ModelArguments", "distill", "finetune", "train_classifier", "train_student"]
