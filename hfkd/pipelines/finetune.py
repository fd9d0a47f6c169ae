"""Plain fine-tuning with a hand-written Accelerate loop: teachers and no-distillation student baselines.

The loop follows Accelerate's `examples/nlp_example.py` and `by_feature/gradient_accumulation.py`: dataloaders built
under `main_process_first`, `accelerator.prepare`, `accelerator.accumulate`, clipping and the scheduler on synced
steps only, evaluation with `gather_for_metrics`, one checkpoint per epoch that `resume_from_checkpoint` continues.
Mixed precision, the number of processes and DeepSpeed come from `accelerate launch`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, set_seed
from datasets import Dataset
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import DataCollatorWithPadding, PreTrainedModel, get_linear_schedule_with_warmup

from ..arguments import (
    allow_pickle_weights_field,
    check_choice,
    check_range,
    grad_health_field,
    overwrite_output_dir_field,
)
from ..data.arguments import DataArguments
from ..data.source import domain_label_names, load_data, tokenize_source_splits
from ..distillation_config import StudentArguments
from ..grad_health import PLOT_FILE as GRAD_HEALTH_PLOT
from ..grad_health import GradientHealth
from ..metrics import compute_classification_metrics
from ..models import forward_argument_names, load_classifier, load_tokenizer, set_loading_policy
from ..parser import config_to_dict
from ..run_files import (
    check_output_dir,
    last_complete_checkpoint,
    list_checkpoints,
    redact,
    write_metrics,
    write_run_info,
)
from ..students import cut_student

logger = get_logger(__name__)

LOOP_STATE_FILE = "hfkd_loop_state.json"


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


def get_dataloaders(
    accelerator: Accelerator, tokenizer, args: FinetuneArguments, train: Dataset, *evaluation: Dataset
) -> list[DataLoader]:
    """A shuffled training dataloader and ordered evaluation dataloaders, all with dynamic padding."""
    pad_to = 8 if accelerator.mixed_precision in ("fp16", "bf16") else None  # tensor-core friendly shapes on GPUs
    common = dict(collate_fn=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to))
    common["num_workers"] = args.dataloader_num_workers
    loaders = [DataLoader(train, shuffle=True, batch_size=args.per_device_train_batch_size, **common)]
    loaders += [
        DataLoader(ds, shuffle=False, batch_size=args.per_device_eval_batch_size, **common) for ds in evaluation
    ]
    return loaders


def evaluate_model(accelerator: Accelerator, model, dataloader: DataLoader, input_names: set[str]) -> dict[str, float]:
    """Loss, accuracy and macro-F1 over a whole (possibly sharded) dataloader."""
    model.eval()
    predictions, references = [], []
    loss_sum = torch.zeros((), device=accelerator.device)
    for batch in dataloader:
        with torch.no_grad():
            outputs = model(**{k: v for k, v in batch.items() if k in input_names})
        logits, labels = accelerator.gather_for_metrics((outputs.logits, batch["labels"]))
        loss = torch.nn.functional.cross_entropy(logits.float(), labels, ignore_index=-100, reduction="sum")
        loss_sum += loss
        predictions.append(logits.argmax(-1).cpu())
        references.append(labels.cpu())
    predictions, references = torch.cat(predictions), torch.cat(references)
    keep = references != -100
    num_labels = accelerator.unwrap_model(model).config.num_labels
    metrics = compute_classification_metrics(
        predictions[keep].tolist(), references[keep].tolist(), num_labels=num_labels
    )
    return {"loss": loss_sum.item() / max(int(keep.sum()), 1), **metrics}


def resolve_checkpoint(resume_from_checkpoint: str | None, output_dir: str) -> str | None:
    """`None`, a checkpoint folder, or `'last'` (the newest `checkpoint-N` in `output_dir`) to a folder or `None`."""
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint == "last":
        last = last_complete_checkpoint(output_dir, LOOP_STATE_FILE)
        if last is None:
            raise ValueError(
                f"resume_from_checkpoint='last' but {output_dir!r} holds no complete checkpoint-N folder; start "
                "without --resume_from_checkpoint, or pass the path of a checkpoint."
            )
        return last
    if not os.path.isfile(os.path.join(resume_from_checkpoint, LOOP_STATE_FILE)):
        raise ValueError(
            f"resume_from_checkpoint={resume_from_checkpoint!r} is not a checkpoint of this loop (no "
            f"{LOOP_STATE_FILE}); pass a checkpoint-N folder from a previous run's output_dir, or 'last'."
        )
    return resume_from_checkpoint


def train_classifier(
    model: PreTrainedModel,
    tokenizer,
    train_dataset: Dataset,
    eval_dataset: Dataset,
    args: FinetuneArguments,
    accelerator: Accelerator | None = None,
    test_dataset: Dataset | None = None,
) -> dict[str, Any]:
    """Fine-tune `model` on `train_dataset`, evaluating on `eval_dataset` each epoch; save it to `args.output_dir`.

    Returns the final metrics (also written to `metrics.json`): `train_loss`, `eval_*` (and `test_*` when a test set
    is given), runtimes and throughput.
    """
    if accelerator is None:
        accelerator = make_accelerator(args)
    set_seed(args.seed)
    input_names = forward_argument_names(model)

    extra = [] if test_dataset is None else [test_dataset]
    train_dl, eval_dl, *test_dl = get_dataloaders(accelerator, tokenizer, args, train_dataset, eval_dataset, *extra)
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
            "weight_decay": args.weight_decay,
        },
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate)

    # Steps per epoch as the prepared (sharded) dataloader will yield them, and the total the way
    # `transformers.Trainer` counts it (ceil(epochs * steps per epoch)): a baseline trained with this loop takes as
    # many optimizer steps as a student distilled with the Trainer for the same `num_train_epochs`.
    batches_per_epoch = math.ceil(len(train_dl) / accelerator.num_processes)
    steps_per_epoch = max(math.ceil(batches_per_epoch / args.gradient_accumulation_steps), 1)
    max_steps = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * steps_per_epoch)
    num_epochs = math.ceil(max_steps / steps_per_epoch)
    # The prepared scheduler steps once per process per optimizer step (Accelerate's convention without
    # split_batches), so its horizon is counted in process-steps.
    processes = accelerator.num_processes
    scheduler = get_linear_schedule_with_warmup(
        optimizer, args.num_warmup_steps(max_steps) * processes, max_steps * processes
    )

    model, optimizer, train_dl, eval_dl, scheduler, *test_dl = accelerator.prepare(
        model, optimizer, train_dl, eval_dl, scheduler, *test_dl
    )

    start_epoch, completed_steps = 0, 0
    checkpoint = resolve_checkpoint(args.resume_from_checkpoint, args.output_dir)
    if checkpoint is not None:
        accelerator.load_state(checkpoint)
        with open(os.path.join(checkpoint, LOOP_STATE_FILE)) as f:
            state = json.load(f)
        start_epoch, completed_steps = state["epoch"], state["completed_steps"]
        logger.info(f"Resumed from {checkpoint}: epoch {start_epoch}, step {completed_steps}", main_process_only=True)

    logger.info(
        f"Training on {len(train_dataset)} rows, {accelerator.num_processes} process(es), "
        f"{steps_per_epoch} steps/epoch, {max_steps} steps, mixed precision {accelerator.mixed_precision}",
        main_process_only=True,
    )
    progress = tqdm(
        total=max_steps, initial=completed_steps, desc="finetune", disable=not accelerator.is_local_main_process
    )
    history: list[dict[str, Any]] = []
    health = GradientHealth(accelerator.unwrap_model(model), args.max_grad_norm) if args.grad_health else None
    norms, log_every = None, max(args.logging_steps, 1)
    running_loss, running_batches = torch.zeros((), device=accelerator.device), 0
    total_loss, total_batches = 0.0, 0
    start = time.perf_counter()
    eval_metrics: dict[str, float] = {}
    for epoch in range(start_epoch, num_epochs):
        model.train()
        train_dl.set_epoch(epoch)  # the seedable sampler reshuffles per epoch, identically on resume
        for batch in train_dl:
            with accelerator.accumulate(model):
                outputs = model(**{k: v for k, v in batch.items() if k in input_names})
                loss = outputs.loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and health is not None and (completed_steps + 1) % log_every == 0:
                    norms = health.group_norms()  # before clipping, at logging steps only
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    total_norm = accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                    if health is not None:
                        health.count_step(total_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            running_loss += loss.detach()
            running_batches += 1
            if accelerator.sync_gradients:
                completed_steps += 1
                progress.update(1)
                if completed_steps % args.logging_steps == 0:
                    mean_loss = accelerator.reduce(running_loss, "mean").item() / running_batches
                    total_loss, total_batches = (
                        total_loss + mean_loss * running_batches,
                        total_batches + running_batches,
                    )
                    running_loss.zero_()
                    running_batches = 0
                    log = {"loss": mean_loss, "learning_rate": scheduler.get_last_lr()[0], "step": completed_steps}
                    if health is not None and norms is not None:
                        global_norm = sum(v * v for v in norms.values()) ** 0.5
                        log |= health.record(completed_steps, norms, global_norm) | {"grad_norm": global_norm}
                        norms = None
                    progress.set_postfix(loss=f"{mean_loss:.4f}")
                    accelerator.log(log, step=completed_steps)
                    history.append(log)
                if completed_steps >= max_steps:
                    break

        eval_metrics = evaluate_model(accelerator, model, eval_dl, input_names)
        log = {f"eval_{k}": v for k, v in eval_metrics.items()} | {"epoch": epoch + 1, "step": completed_steps}
        shown = ", ".join(
            f"{k}={v:.4f}" if isinstance(v, float) and not v.is_integer() else f"{k}={v:g}" for k, v in log.items()
        )
        logger.info(f"epoch {epoch + 1}: {shown}", main_process_only=True)
        accelerator.log(log, step=completed_steps)
        history.append(log)
        save_checkpoint(accelerator, args, epoch + 1, completed_steps)
        if completed_steps >= max_steps:
            break
    progress.close()
    runtime = time.perf_counter() - start

    if running_batches:
        leftover = accelerator.reduce(running_loss, "mean").item()
        total_loss, total_batches = total_loss + leftover, total_batches + running_batches
    metrics: dict[str, Any] = {
        "train_loss": total_loss / max(total_batches, 1),
        **{f"eval_{k}": v for k, v in eval_metrics.items()},
        "epoch": epoch + 1 if num_epochs > start_epoch else start_epoch,
        "global_step": completed_steps,
        "train_runtime": runtime,
        "train_samples": len(train_dataset),
    }
    if test_dl:
        metrics |= {f"test_{k}": v for k, v in evaluate_model(accelerator, model, test_dl[0], input_names).items()}

    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.save_pretrained(
        args.output_dir,
        is_main_process=accelerator.is_main_process,
        save_function=accelerator.save,
        state_dict=accelerator.get_state_dict(model),
    )
    if accelerator.is_main_process:
        tokenizer.save_pretrained(args.output_dir)
        write_metrics(args.output_dir, metrics)
        with open(os.path.join(args.output_dir, "log_history.json"), "w") as f:
            json.dump(history, f, indent=2)
        if health is not None:
            health.plot(os.path.join(args.output_dir, GRAD_HEALTH_PLOT))
    # No `end_training()` here: it destroys the process group, and a caller (an experiment) may train more models.
    return metrics


def save_checkpoint(accelerator: Accelerator, args: FinetuneArguments, epoch: int, completed_steps: int) -> None:
    """`accelerator.save_state` into `checkpoint-<step>`, plus where the loop stands; keep `save_total_limit`."""
    folder = os.path.join(args.output_dir, f"checkpoint-{completed_steps}")
    accelerator.save_state(folder)
    if accelerator.is_main_process:
        with open(os.path.join(folder, LOOP_STATE_FILE), "w") as f:
            json.dump({"epoch": epoch, "completed_steps": completed_steps}, f)
        if args.save_total_limit is not None:
            for old in list_checkpoints(args.output_dir)[: -args.save_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def make_accelerator(args: FinetuneArguments) -> Accelerator:
    log_with = None if args.report_to in ("none", "", None) else args.report_to.split(",")
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=log_with,
        project_dir=args.output_dir,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    return accelerator


def finetune(
    model_args: ModelArguments,
    data_args: DataArguments,
    student_args: StudentArguments,
    args: FinetuneArguments,
) -> dict[str, Any]:
    """Everything `scripts/finetune.py` does: data, model (or a student cut from it), the loop, the saved folder."""
    set_loading_policy(args.allow_pickle_weights)
    accelerator = make_accelerator(args)
    set_seed(args.seed)
    with accelerator.main_process_first():
        domains = load_data(data_args)
    label_names = domain_label_names(domains)
    # The model gets a head for the data's labels (or must already have one with these names).
    model = load_classifier(model_args.model_name_or_path, label_names=label_names)
    tokenizer = load_tokenizer(model_args.model_name_or_path)
    if student_args.builds_student:  # a no-distillation baseline: the student cut from the model, then fine-tuned
        texts = [text for splits in domains.values() for text in splits["train"]["text"]]  # what it trains on
        model, tokenizer = cut_student(model, tokenizer, student_args, texts, max_length=data_args.max_length)
    splits = tokenize_source_splits(
        domains,
        tokenizer,
        data_args.max_length,
        accelerator.main_process_first,
        long_text_options=data_args.long_text_options,
    )
    config = redact(config_to_dict(model_args, data_args, student_args, args))
    resuming = args.resume_from_checkpoint is not None
    defaults = config_to_dict(model_args, data_args, student_args, args, defaults=True)
    check_output_dir(
        args.output_dir, "finetune", config, overwrite=args.overwrite_output_dir, resuming=resuming, defaults=defaults
    )
    if accelerator.is_main_process:
        write_run_info(args.output_dir, "finetune", config, extra={"source_domains": splits.domains})
    if accelerator.log_with:
        accelerator.init_trackers("hfkd-finetune", config=config)
    metrics = train_classifier(model, tokenizer, splits.train, splits.validation, args, accelerator, splits.test)
    accelerator.end_training()  # trackers finished, process group destroyed
    return metrics
