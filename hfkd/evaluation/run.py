"""What `scripts/evaluate_models.py` runs: saved models (folders or Hub ids) on some domains (sources on their test
split, targets on their `target_eval_splits`), with the files of a cross-domain run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from accelerate import Accelerator, PartialState
from datasets import Dataset

from ..arguments import (
    allow_pickle_weights_field,
    check_eval_splits,
    check_range,
    max_target_eval_samples_field,
    target_eval_splits_field,
)
from ..data.domains import EVALUATION_SPLIT, class_counts, evaluation_splits, scored_rows
from ..data.reading import FILE_FORMATS, read_file
from ..data.source import load_data
from ..inference import predict
from ..models import set_loading_policy
from ..parser import config_to_dict
from ..run_files import redact
from .compare import save_predictions
from .label_free import atc_estimate, atc_threshold
from .matrix import evaluate_models, load_model_for_eval
from .outputs import write_outputs
from .results import add_block, atomic_write, new_results


@dataclass
class EvaluationArguments:
    """`scripts/evaluate_models.py`: saved models evaluated on some domains (sources: test split; targets: the rows of
    `target_eval_splits`)."""

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
    target_eval_splits: list[str] = target_eval_splits_field()
    max_target_eval_samples: int | None = max_target_eval_samples_field()
    output_dir: str = field(default="runs/evaluate", metadata={"help": "Where results.json and report.md go."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Evaluation batch size per process."})
    extra_metrics: list[str] | None = field(
        default=None, metadata={"help": "More `evaluate` metrics by Hub name or path (see cross_domain.py)."}
    )
    unlabeled_files: list[str] | None = field(
        default=None,
        metadata={
            "help": "Domains that have text but no labels, as 'name=path' (csv/tsv/json/jsonl/parquet with the "
            "text_column): instead of the labelled evaluation, estimate each model's accuracy and macro-F1 there "
            "without labels (ATC, calibrated on the validation split of source_domains) and write label_free.json."
        },
    )
    allow_pickle_weights: bool = allow_pickle_weights_field()

    def __post_init__(self):
        if not self.model_paths:
            raise ValueError("model_paths is empty; pass e.g. --model_paths teacher=runs/t student=runs/s.")
        check_range("per_device_eval_batch_size", self.per_device_eval_batch_size, 1)
        check_eval_splits(self.target_eval_splits)
        check_range("max_target_eval_samples", self.max_target_eval_samples, 1)


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
    """`scripts/evaluate_models.py`: saved models on some domains; writes an experiment's files. A domain of
    `source_domains` is scored on its test split (capped by `max_eval_samples`), any other on all the rows of its
    `target_eval_splits` (uncapped).

    Args:
        eval_args ([`EvaluationArguments`]): the models, the reference (teacher) model, the output folder.
        data_args ([`DataArguments`]): where the domains come from; `source_domains` are shown as in-domain.
    """
    set_loading_policy(eval_args.allow_pickle_weights)
    wall_start = time.perf_counter()
    models = parse_model_paths(eval_args.model_paths)
    teacher = eval_args.teacher or ("teacher" if "teacher" in models else None)
    sources = list(data_args.source_domains or [])
    # without target_domains every domain is evaluated; with them, the sources and those targets
    targets = list(eval_args.target_domains or [])
    wanted = list(dict.fromkeys(sources + targets)) if targets else None
    state = PartialState()
    with state.main_process_first():
        loaded = load_data(data_args, wanted, cap_eval=False)
    domains = evaluation_splits(
        loaded,
        sources,
        eval_args.target_eval_splits,
        data_args.max_eval_samples,
        max_target_eval_samples=eval_args.max_target_eval_samples,
        split_seed=data_args.split_seed,
        deduplicate=data_args.deduplicate,
    )
    rows = scored_rows(
        domains, sources, eval_args.target_eval_splits, data_args.max_eval_samples, eval_args.max_target_eval_samples
    )
    results = new_results(
        title=f"Evaluation on {os.path.basename(str(data_args.dataset).rstrip('/'))}",
        mode="evaluate",
        dataset=data_args.dataset,
        label_names=next(iter(domains.values()))[EVALUATION_SPLIT].features["label"].names,
        teacher=teacher,
        config=redact(config_to_dict(eval_args, data_args)),
        command=command,
        seeds={"split_seed": data_args.split_seed},
        data={
            "rows": {n: {s: t.num_rows for s, t in d.items()} for n, d in loaded.items()},
            "class_counts": class_counts(loaded),
            "small_classes": rows["small_classes"],
        },
    )
    block, predictions = evaluate_models(
        models,
        domains,
        teacher=teacher,
        source_domains=sources,
        split=EVALUATION_SPLIT,
        max_length=data_args.max_length,
        batch_size=eval_args.per_device_eval_batch_size,
        accelerator=Accelerator(),
        extra_metrics=eval_args.extra_metrics,
        return_predictions=True,
        long_text_options=data_args.long_text_options,
    )
    descriptions = {
        name: {
            "role": "teacher" if name == teacher else "student" if teacher else "model",
            "description": path,
            "num_layers": block["speed"][name]["num_layers"],
            "parameters": block["speed"][name]["parameters"],
            "path": path,
        }
        for name, path in models.items()
    }
    block = {"name": "evaluation"} | block | {"evaluation_rows": rows, "stages": {}}
    add_block(results, block, descriptions, time.perf_counter() - wall_start)
    if state.is_main_process:
        write_outputs(results, eval_args.output_dir)
        save_predictions(eval_args.output_dir, {"evaluation": predictions})
    return results


LABEL_FREE_FILE = "label_free.json"


def estimate_unlabeled(eval_args: EvaluationArguments, data_args) -> dict[str, Any]:
    """
    `scripts/evaluate_models.py --unlabeled_files name=path ...`: each model's accuracy and macro-F1 on domains that
    have no labels, estimated with ATC (see `hfkd.evaluation.label_free`) calibrated on the validation split of
    `source_domains`; written to `label_free.json` in `output_dir`.

    How far to trust the estimate: the report of a cross-domain run (or a labelled `evaluate_models` run) gives its
    error on labelled targets of the same kind.
    """
    if not data_args.source_domains:
        raise ValueError(
            "unlabeled_files needs source_domains: the estimate is calibrated on the labelled validation split of the "
            "domains the models were trained on; set e.g. --source_domains airline."
        )
    set_loading_policy(eval_args.allow_pickle_weights)
    models = parse_model_paths(eval_args.model_paths)
    files = parse_model_paths(eval_args.unlabeled_files or [])  # the same 'name=path' grammar
    texts = {name: _unlabeled_texts(path, data_args) for name, path in files.items()}
    with PartialState().main_process_first():
        domains = load_data(data_args, list(data_args.source_domains))
    label_names = list(next(iter(domains.values()))["validation"].features["label"].names)
    run = dict(
        label_names=label_names,
        max_length=data_args.max_length,
        batch_size=eval_args.per_device_eval_batch_size,
        long_text_options=data_args.long_text_options,
    )
    estimates: dict[str, dict[str, Any]] = {}
    for model_name, path in models.items():
        model, tokenizer = load_model_for_eval(path, label_names)
        validation = [predict(model, tokenizer, domains[d]["validation"], **run) for d in domains]
        threshold = atc_threshold(
            np.concatenate([p.logits for p in validation]), np.concatenate([p.labels for p in validation])
        )
        estimates[model_name] = {"atc_threshold": threshold}
        for domain, table in texts.items():
            logits = predict(model, tokenizer, table, desc=f"Tokenizing {domain}", **run).logits
            estimates[model_name][domain] = atc_estimate(logits, threshold) | {"n": len(table)}
        del model
    out = {
        "method": "ATC (Garg et al., ICLR 2022), calibrated on the source validation split",
        "source_domains": list(data_args.source_domains),
        "unlabeled_files": files,
        "estimates": estimates,
    }
    if PartialState().is_main_process:
        atomic_write(os.path.join(eval_args.output_dir, LABEL_FREE_FILE), json.dumps(out, indent=2) + "\n")
    return out


def _unlabeled_texts(path: str, data_args) -> Dataset:
    if not os.path.isfile(path) or Path(path).suffix.lower() not in FILE_FORMATS:
        raise ValueError(
            f"unlabeled_files entry {path!r} is not a {'/'.join(sorted(FILE_FORMATS))} file; give name=path of a file "
            "with a text column."
        )
    table = read_file(Path(path), None, data_args.encoding)
    if data_args.text_column not in table.column_names:
        raise ValueError(
            f"Column {data_args.text_column!r} (set with `text_column`) is not in {path}; its columns are "
            f"{table.column_names}. Set `text_column` to the column that holds the text."
        )
    texts = [t for t in table[data_args.text_column] if isinstance(t, str) and t.strip()]
    if not texts:
        raise ValueError(f"{path} has no text in column {data_args.text_column!r}; add rows or fix the column.")
    return Dataset.from_dict({"text": texts})
