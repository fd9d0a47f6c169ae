"""What `scripts/evaluate_models.py` runs: saved models (folders or Hub ids) on the test split of some domains, with
the files of a cross-domain run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from accelerate import Accelerator, PartialState

from ..arguments import allow_pickle_weights_field, check_range
from ..data.source import load_data
from ..models import set_loading_policy
from ..parser import config_to_dict
from ..run_files import redact
from .compare import save_predictions
from .matrix import evaluate_models
from .outputs import write_outputs
from .results import add_block, new_results


@dataclass
class EvaluationArguments:
    """`scripts/evaluate_models.py`: saved models evaluated on the test split of some domains."""

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
    output_dir: str = field(default="runs/evaluate", metadata={"help": "Where results.json and report.md go."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Evaluation batch size per process."})
    extra_metrics: list[str] | None = field(
        default=None, metadata={"help": "More `evaluate` metrics by Hub name or path (see cross_domain.py)."}
    )
    allow_pickle_weights: bool = allow_pickle_weights_field()

    def __post_init__(self):
        if not self.model_paths:
            raise ValueError("model_paths is empty; pass e.g. --model_paths teacher=runs/t student=runs/s.")
        check_range("per_device_eval_batch_size", self.per_device_eval_batch_size, 1)


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
        domains = load_data(data_args, wanted)
    results = new_results(
        title=f"Evaluation on {os.path.basename(str(data_args.dataset).rstrip('/'))}",
        mode="evaluate",
        dataset=data_args.dataset,
        label_names=next(iter(domains.values()))["test"].features["label"].names,
        teacher=teacher,
        config=redact(config_to_dict(eval_args, data_args)),
        command=command,
        seeds={"split_seed": data_args.split_seed},
    )
    block, predictions = evaluate_models(
        models,
        domains,
        teacher=teacher,
        source_domains=sources,
        max_length=data_args.max_length,
        batch_size=eval_args.per_device_eval_batch_size,
        accelerator=Accelerator(),
        extra_metrics=eval_args.extra_metrics,
        return_predictions=True,
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
    add_block(results, {"name": "evaluation"} | block | {"stages": {}}, descriptions, time.perf_counter() - wall_start)
    if state.is_main_process:
        write_outputs(results, eval_args.output_dir)
        save_predictions(eval_args.output_dir, {"evaluation": predictions})
    return results
