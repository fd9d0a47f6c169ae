"""What every argument dataclass shares: range and choice checks that name the field, and option fields that several
commands have (one definition, one help text).

Each command owns its own dataclass, beside the code that uses it: `DistillationArguments` / `StudentArguments` in
`hfkd.distillation_config`, `DataArguments` in `hfkd.data`, `FinetuneArguments` / `ModelArguments` in
`hfkd.pipelines.finetune`, `ExperimentArguments` in `hfkd.experiment`, `EvaluationArguments` in `hfkd.evaluation`.
YAML configs are flat and their keys are the field names (see `hfkd.parser`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field


def check_range(
    name: str,
    value: float | None,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    hint: str | None = None,
) -> None:
    """Raise a `ValueError` naming the field, the allowed range and the value when `value` is outside it."""
    if value is None:
        return
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        fix = hint or f"set --{name} (or `{name}:` in the YAML config) to a value in that range"
        raise ValueError(f"{name} must be in {left}{lo}, {hi}{right}; got {name}={value!r}. Fix: {fix}.")


def check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; set {name} to one of {sorted(choices)}.")


# Options every training script has (one definition, one help text).
def grad_health_field() -> bool:
    return field(
        default=True,
        metadata={
            "help": "Log per-layer-group gradient norms (before clipping) and the clipping rate at each logging step, "
            "warn on vanishing / exploding gradients, and draw grad_health.png in output_dir."
        },
    )


def allow_pickle_weights_field() -> bool:
    return field(
        default=False,
        metadata={
            "help": "Load model weights stored as pickles (pytorch_model.bin). Off by default: unpickling can run "
            "code; only safetensors are loaded."
        },
    )


def overwrite_output_dir_field() -> bool:
    return field(
        default=False,
        metadata={
            "help": "Replace a run of another config already in output_dir (by default that is an error, so that no "
            "run is overwritten by accident). Continuing a run is --resume_from_checkpoint."
        },
    )


def target_eval_splits_field() -> list[str]:
    return field(
        default_factory=lambda: ["validation", "test"],
        metadata={
            "help": "The splits a target domain is scored on, together and uncapped: its labels are never trained or "
            "selected on, so both its validation and test rows count (more rows, narrower intervals). [test]: the "
            "test split only. Source domains are scored on their test split, capped by max_eval_samples."
        },
    )


def max_target_eval_samples_field() -> int | None:
    return field(
        default=None,
        metadata={
            "help": "Cap a target domain's scored rows too (a seeded random subset): quick runs and tests. Default: "
            "every row of its target_eval_splits."
        },
    )


def check_eval_splits(target_eval_splits: Sequence[str], name: str = "target_eval_splits") -> None:
    """`ValueError` naming the field unless it is a non-empty list of distinct `validation`/`test`."""
    values = list(target_eval_splits or [])
    if not values or len(set(values)) != len(values) or not set(values) <= {"validation", "test"}:
        raise ValueError(
            f"{name}={list(target_eval_splits or [])!r} must name distinct splits among ['validation', 'test'] (a "
            f"target's train rows are the adaptive student's unlabeled text); set {name}: [validation, test] or "
            "[test]."
        )
