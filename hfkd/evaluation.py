"""Many models on many domains: the cross-domain matrix, and the figures derived from it.

For every (model, domain) the test split is run once; the local `evaluate` modules in `hfkd.metrics` turn the logits
into accuracy, macro-F1 and calibration (ECE), and, for students, agreement and KL with the teacher's logits on the
same rows. The derived figures are retention (student score / teacher score, per domain and as the mean over the
targets), the in-domain and target means, and the transfer gap (in-domain mean minus target mean).

Under several processes (`accelerate launch`) each domain's rows are sharded and gathered back in order
(`gather_for_metrics`); every process returns the same numbers.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from datasets import Dataset, DatasetDict
from torch.utils.data import DataLoader
from transformers import AutoConfig, DataCollatorWithPadding, PreTrainedModel
from transformers.utils import logging

from .metrics import load_metric
from .models import (
    labels_are_generic,
    load_classifier,
    load_tokenizer,
    model_label_names,
    resolve_model_name_or_path,
    set_loading_policy,
)
from .trainer import forward_argument_names

logger = logging.get_logger(__name__)

SCORES = ("macro_f1", "accuracy")
"""The scores that retention, means and gaps are computed for (macro-F1 first: it is the headline number)."""


@dataclass
class Predictions:
    """A model's logits on one split (in the split's row order), the gold labels, and the forward passes' time."""

    logits: np.ndarray
    labels: np.ndarray
    seconds: float


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def num_layers(model: PreTrainedModel) -> int | None:
    config = model.config
    return getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None)


def load_model_for_eval(name_or_path: str, label_names: Sequence[str]) -> tuple[PreTrainedModel, Any]:
    """A saved classifier and its tokenizer; its labels must be the data's (by name; generic LABEL_i by position)."""
    config = AutoConfig.from_pretrained(resolve_model_name_or_path(name_or_path))
    if not any(a.endswith("ForSequenceClassification") for a in config.architectures or []):
        raise ValueError(
            f"Model {name_or_path!r} has no trained classification head (architectures {config.architectures}); "
            "evaluate fine-tuned classifiers, e.g. the output_dir of scripts/finetune.py or scripts/distill.py."
        )
    names = model_label_names(config)
    if labels_are_generic(config) and len(names) != len(label_names):
        raise ValueError(
            f"Model {name_or_path!r} has {len(names)} generic labels but the data has {len(label_names)} "
            f"({list(label_names)}); evaluate a model fine-tuned on this label space."
        )
    if not labels_are_generic(config) and sorted(names) != sorted(label_names):
        raise ValueError(
            f"Model {name_or_path!r} predicts {names} but the data's labels are {list(label_names)}; evaluate it on "
            "data with the same label names (set class_names), or pass a model trained on these labels."
        )
    # In the data's label order: a trained head reordered by name, generic LABEL_i taken as the data's i-th label.
    model = load_classifier(name_or_path, label_names=label_names)
    return model, load_tokenizer(name_or_path)


def predict(
    model: PreTrainedModel,
    tokenizer,
    dataset: Dataset,
    *,
    label_names: Sequence[str],
    max_length: int = 128,
    batch_size: int = 64,
    accelerator: Accelerator | None = None,
    autocast_dtype: torch.dtype | None = None,
    desc: str = "Tokenizing for evaluation",
) -> Predictions:
    """Logits of `model` on an untokenised `dataset` (`text`, and `label` if any), columns in the order of
    `label_names`.

    Rows are tokenised with the model's own tokenizer (cached by `datasets`) and run sorted by length, which cuts the
    padding of a batch; the logits come back in the dataset's order. A first batch is run untimed (warm-up), so that
    `seconds` compares models fairly. With an `accelerator` the rows are sharded over its processes and gathered
    back, under its autocast; without one, this process runs every row, under `autocast_dtype` on a GPU if given.
    Rows without a `label` column get label -1.
    """
    state = PartialState()
    tokenized = dataset.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length),
        batched=True,
        remove_columns=["text"],
        desc=desc,
    )
    if "label" not in tokenized.column_names:
        tokenized = tokenized.add_column("label", [-1] * len(tokenized))
    order = np.argsort([len(ids) for ids in tokenized["input_ids"]], kind="stable")
    input_names = forward_argument_names(model)
    tokenized = tokenized.select(order).rename_column("label", "labels")
    tokenized = tokenized.remove_columns([c for c in tokenized.column_names if c not in input_names | {"labels"}])
    loader = DataLoader(tokenized, batch_size=batch_size, collate_fn=DataCollatorWithPadding(tokenizer))
    if accelerator is not None:
        loader = accelerator.prepare_data_loader(loader)
    # The model's label order may be a permutation of the data's: pick its columns in the data's order.
    label2id = {name: i for i, name in model.config.id2label.items()}
    columns = torch.tensor([int(label2id[name]) for name in label_names])
    model = model.to(state.device).eval()

    if accelerator is not None:
        make_autocast = accelerator.autocast
    elif autocast_dtype is not None and state.device.type == "cuda":
        make_autocast = lambda: torch.autocast("cuda", dtype=autocast_dtype)  # noqa: E731
    else:
        make_autocast = contextlib.nullcontext

    def forward(batch):
        inputs = {k: v.to(state.device) for k, v in batch.items() if k != "labels"}
        autocast = make_autocast()
        with torch.inference_mode(), autocast:
            return model(**inputs).logits.float().index_select(-1, columns.to(state.device))

    logits, labels, seconds = [], [], 0.0
    for step, batch in enumerate(loader):
        if step == 0:
            forward(batch)  # warm-up: allocator, kernels, thread pools
        start = time.perf_counter()
        out = forward(batch)
        seconds += time.perf_counter() - start
        gold = batch["labels"].to(state.device)
        if accelerator is not None:
            out, gold = accelerator.gather_for_metrics((out, gold))
        logits.append(out.cpu())
        labels.append(gold.cpu())
    sorted_logits = torch.cat(logits).numpy()
    sorted_labels = torch.cat(labels).numpy()
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return Predictions(logits=sorted_logits[inverse], labels=sorted_labels[inverse], seconds=seconds)


def score(
    predictions: Predictions,
    num_labels: int,
    teacher: Predictions | None = None,
    extra_metrics: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The numbers of one (model, domain) cell: accuracy, macro_f1, n, ece; agreement and kl against a teacher."""
    ids = predictions.logits.argmax(-1)
    cell = dict(
        load_metric("classification").compute(predictions=ids, references=predictions.labels, num_labels=num_labels)
    )
    calibration = load_metric("calibration").compute(predictions=predictions.logits, references=predictions.labels)
    cell["ece"] = calibration["ece"]
    if teacher is not None:
        agreement = load_metric("agreement").compute(predictions=predictions.logits, references=teacher.logits)
        cell["agreement"], cell["kl"] = agreement["agreement"], agreement["kl"]
    extra = {}
    for name in extra_metrics or []:
        extra[name] = load_metric(name).compute(predictions=ids, references=predictions.labels)
    if extra:
        cell["extra"] = extra
    return cell


def evaluate_models(
    models: dict[str, str | tuple[PreTrainedModel, Any]],
    domains: dict[str, DatasetDict],
    *,
    teacher: str | None = None,
    source_domains: Sequence[str] = (),
    split: str = "test",
    max_length: int = 128,
    batch_size: int = 64,
    accelerator: Accelerator | None = None,
    extra_metrics: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Evaluate every model on the `split` of every domain; return one results block (see `hfkd.report`).

    Args:
        models: name -> a saved folder / Hub id, or a loaded `(model, tokenizer)`; loaded one at a time, in order.
        domains: as returned by `load_domains` (untokenised), with one shared label space.
        teacher: the name of the reference model among `models` (evaluated first); students are the others.
        source_domains: the domains the models were trained on (in-domain); the others are targets.

    Returns:
        A dict with `source_domains`, `target_domains`, `domains`, `metrics` (model -> domain -> numbers), `summary`
        (derived figures, see [`summarize`]) and `speed` (inference rows/s over all domains, parameters, layers).
    """
    if teacher is not None and teacher not in models:
        raise ValueError(f"teacher={teacher!r} is not one of the models {list(models)}; name one of them.")
    label_names = list(next(iter(domains.values()))[split].features["label"].names)
    order = ([teacher] if teacher else []) + [name for name in models if name != teacher]
    metrics: dict[str, dict[str, Any]] = {}
    speed: dict[str, dict[str, Any]] = {}
    teacher_predictions: dict[str, Predictions] = {}
    for name in order:
        entry = models[name]
        model, tokenizer = load_model_for_eval(entry, label_names) if isinstance(entry, str) else entry
        rows, seconds = 0, 0.0
        metrics[name] = {}
        for domain, splits in domains.items():
            predictions = predict(
                model,
                tokenizer,
                splits[split],
                label_names=label_names,
                max_length=max_length,
                batch_size=batch_size,
                accelerator=accelerator,
            )
            rows, seconds = rows + len(predictions.labels), seconds + predictions.seconds
            if name == teacher:
                teacher_predictions[domain] = predictions
            reference = teacher_predictions.get(domain) if name != teacher else None
            metrics[name][domain] = score(predictions, len(label_names), reference, extra_metrics)
            logger.info(
                f"{name} on {domain}: macro_f1={metrics[name][domain]['macro_f1']:.4f} "
                f"accuracy={metrics[name][domain]['accuracy']:.4f} (n={metrics[name][domain]['n']})"
            )
        speed[name] = {
            "samples_per_second": rows / seconds if seconds > 0 else None,
            "rows": rows,
            "eval_seconds": seconds,
            "parameters": count_parameters(model),
            "num_layers": num_layers(model),
        }
        if isinstance(entry, str):
            del model  # loaded here: free it before the next one
    if teacher is not None and speed[teacher]["samples_per_second"]:
        for entry in speed.values():
            rate = entry["samples_per_second"]
            entry["speedup_vs_teacher"] = rate / speed[teacher]["samples_per_second"] if rate else None
    metrics = {name: metrics[name] for name in models}  # back to the caller's order
    speed = {name: speed[name] for name in models}
    sources = [d for d in domains if d in set(source_domains)]
    targets = [d for d in domains if d not in set(source_domains)]
    return {
        "source_domains": sources,
        "target_domains": targets,
        "domains": list(domains),
        "metrics": metrics,
        "summary": summarize(metrics, sources, targets, teacher),
        "speed": speed,
    }


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarize(
    metrics: dict[str, dict[str, dict[str, Any]]],
    source_domains: Sequence[str],
    target_domains: Sequence[str],
    teacher: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Derived figures per model: in-domain mean, target mean and transfer gap of each score; for students also
    retention of the teacher's score (per domain, in-domain, mean over targets) and target means of agreement, KL
    and ECE. Absent figures (no source, no target, no teacher) are `None`."""
    summary: dict[str, dict[str, Any]] = {}
    for name, cells in metrics.items():
        figures: dict[str, Any] = {}
        for key in SCORES:
            in_domain = _mean([cells[d][key] for d in source_domains]) if source_domains else None
            target = _mean([cells[d][key] for d in target_domains]) if target_domains else None
            figures[f"in_domain_{key}"] = in_domain
            figures[f"target_mean_{key}"] = target
            figures[f"transfer_gap_{key}"] = None if in_domain is None or target is None else in_domain - target
        figures["ece_target_mean"] = _mean([cells[d].get("ece") for d in target_domains]) if target_domains else None
        if teacher is not None and name != teacher:
            reference = metrics[teacher]
            for key in SCORES:
                per_domain = {d: _ratio(cells[d][key], reference[d][key]) for d in cells}
                figures[f"retention_{key}"] = per_domain
                figures[f"retention_in_domain_{key}"] = _mean([per_domain[d] for d in source_domains])
                figures[f"retention_target_mean_{key}"] = _mean([per_domain[d] for d in target_domains])
            for key in ("agreement", "kl"):
                figures[f"{key}_target_mean"] = _mean([cells[d].get(key) for d in target_domains])
        summary[name] = figures
    return summary


def overall_summary(blocks: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """The scalar summary figures of each model averaged over blocks (a block's own figures when there is one)."""
    names = list(blocks[0]["summary"]) if blocks else []
    overall: dict[str, dict[str, float | None]] = {}
    for name in names:
        keys = [k for k, v in blocks[0]["summary"][name].items() if not isinstance(v, dict)]
        overall[name] = {k: _mean([block["summary"].get(name, {}).get(k) for block in blocks]) for k in keys}
    return overall


def parse_model_paths(entries: Sequence[str]) -> dict[str, str]:
    """`["teacher=runs/t", "runs/s"]` -> `{"teacher": "runs/t", "s": "runs/s"}`: a bare path is named by its folder."""
    models: dict[str, str] = {}
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep:
            name, path = os.path.basename(entry.rstrip("/")) or entry, entry
        if not name or not path:
            raise ValueError(f"model_paths entry {entry!r} is not 'name=path' or a path; write e.g. teacher=runs/t.")
        if name in models:
            raise ValueError(f"model_paths names {name!r} twice; give each model its own name, e.g. {name}_2={path}.")
        models[name] = path
    return models


def run_evaluation(eval_args, data_args, command: str | None = None) -> dict[str, Any]:
    """`scripts/evaluate_models.py`: saved models on the test split of some domains; writes an experiment's files.

    Args:
        eval_args ([`EvaluationArguments`]): the models, the reference (teacher) model, the output folder.
        data_args ([`DataArguments`]): where the domains come from; `source_domains` are shown as in-domain.
    """
    from .parser import config_to_dict
    from .report import write_outputs
    from .runs import environment_info, hardware_info, load_data, redact

    set_loading_policy(eval_args.allow_pickle_weights)
    started, wall_start = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter()
    models = parse_model_paths(eval_args.model_paths)
    teacher = eval_args.teacher or ("teacher" if "teacher" in models else None)
    sources = list(data_args.source_domains or [])
    # without target_domains every domain is evaluated; with them, the sources and those targets
    targets = list(eval_args.target_domains or [])
    wanted = list(dict.fromkeys(sources + targets)) if targets else None
    state = PartialState()
    with state.main_process_first():
        domains = load_data(data_args, wanted)
    block = evaluate_models(
        models,
        domains,
        teacher=teacher,
        source_domains=sources,
        max_length=data_args.max_length,
        batch_size=eval_args.per_device_eval_batch_size,
        accelerator=Accelerator(),
        extra_metrics=eval_args.extra_metrics,
    )
    results = {
        "format": "hfkd-cross-domain/1",
        "title": f"Evaluation on {os.path.basename(str(data_args.dataset).rstrip('/'))}",
        "mode": "evaluate",
        "dataset": data_args.dataset,
        "label_names": list(next(iter(domains.values()))["test"].features["label"].names),
        "teacher": teacher,
        "models": {
            name: {
                "role": "teacher" if name == teacher else "student" if teacher else "model",
                "description": path,
                "num_layers": block["speed"][name]["num_layers"],
                "parameters": block["speed"][name]["parameters"],
                "path": path,
            }
            for name, path in models.items()
        },
        "blocks": [{"name": "evaluation"} | block | {"stages": {}}],
        "overall": overall_summary([block]),
        "hardware": hardware_info(),
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_time_s": time.perf_counter() - wall_start,
        "command": command,
        "config": redact(config_to_dict(eval_args, data_args)),
        "versions": environment_info(),
        "seeds": {"split_seed": data_args.split_seed},
    }
    if state.is_main_process:
        write_outputs(results, eval_args.output_dir)
    return results
