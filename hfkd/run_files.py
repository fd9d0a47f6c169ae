"""The files that describe a run in its output folder (`hfkd_run.json`, `metrics.json`), the check that an output
folder holds no other run, its checkpoints, and the environment a run records.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import time
from typing import Any

from .fingerprints import changed_settings, training_settings

RUN_INFO_FILE = "hfkd_run.json"
METRICS_FILE = "metrics.json"
SECRET_FIELDS = ("hub_token", "token")


def redact(config: dict[str, Any]) -> dict[str, Any]:
    """Drop secrets (tokens) from a flat config before it is written anywhere."""
    return {k: ("<redacted>" if k in SECRET_FIELDS and v else v) for k, v in config.items()}


def environment_info() -> dict[str, str]:
    import accelerate
    import datasets
    import torch
    import transformers

    return {
        "hfkd": importlib.metadata.version("hfkd"),
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "accelerate": accelerate.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def hardware_info() -> dict[str, Any]:
    """What the run ran on, in words (for results files and reports)."""
    import torch
    from accelerate import PartialState

    state = PartialState()
    if torch.cuda.is_available():
        device = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    else:
        device = "no GPU"
    cpu = platform.processor() or platform.machine()
    return {
        "description": f"{os.cpu_count()} CPU cores ({cpu}), {device}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "num_processes": state.num_processes,
        "device": str(state.device),
    }


def check_output_dir(
    output_dir: str,
    script: str,
    config: dict[str, Any],
    *,
    overwrite: bool,
    resuming: bool,
    defaults: dict[str, Any] | None = None,
) -> None:
    """Refuse to train into a folder that holds a run of another script or config (nothing is overwritten by
    accident); the same config, `resume_from_checkpoint` or `overwrite_output_dir` go ahead. An option the earlier
    run's record does not have (it came in a later version) counts as unchanged while it is at its value in `defaults`
    (the flat defaults, `config_to_dict(..., defaults=True)`)."""

    path = os.path.join(output_dir, RUN_INFO_FILE)
    if overwrite or resuming or not os.path.isfile(path):
        return
    try:
        with open(path) as f:
            previous = json.load(f)
    except (OSError, json.JSONDecodeError):
        return  # not a readable run record: nothing to compare with
    old = training_settings(previous.get("config") or {})
    new = training_settings(config)
    defaults = defaults or {}
    new = {k: v for k, v in new.items() if k in old or k not in defaults or v != defaults[k]}
    changes = changed_settings(old, new)
    if previous.get("script") != script:
        changes.insert(0, f"script: {previous.get('script')!r} -> {script!r}")
    if changes:
        raise ValueError(
            f"output_dir={output_dir!r} holds a run with another config ({'; '.join(changes[:6])}). Use another "
            "output_dir, --resume_from_checkpoint last to continue that run, or --overwrite_output_dir true to "
            "replace it."
        )


def write_run_info(output_dir: str, script: str, config: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    """Write `hfkd_run.json`: the script, its full flat config (secrets redacted), versions and start time."""
    os.makedirs(output_dir, exist_ok=True)
    info = {
        "script": script,
        "config": redact(config),
        "versions": environment_info(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    with open(os.path.join(output_dir, RUN_INFO_FILE), "w") as f:
        json.dump(info, f, indent=2)


def write_metrics(output_dir: str, metrics: dict[str, Any]) -> str:
    path = os.path.join(output_dir, METRICS_FILE)
    with open(path, "w") as f:
        json.dump(metrics, f, indent=2)
    return path


def list_checkpoints(output_dir: str) -> list[str]:
    """The `checkpoint-N` folders of `output_dir`, oldest (smallest N) first."""
    if not os.path.isdir(output_dir):
        return []
    found = [d for d in os.listdir(output_dir) if d.startswith("checkpoint-") and d.split("-")[-1].isdigit()]
    return [os.path.join(output_dir, d) for d in sorted(found, key=lambda d: int(d.split("-")[-1]))]


def last_complete_checkpoint(output_dir: str, marker: str) -> str | None:
    """The newest `checkpoint-N` folder of `output_dir` that holds `marker`, the file a checkpoint writes last
    (`trainer_state.json` for the Trainer, `hfkd_loop_state.json` for the Accelerate loop). A run killed while saving
    leaves an incomplete newest checkpoint; it is skipped with a warning, never resumed from."""
    from transformers.utils import logging

    for folder in reversed(list_checkpoints(output_dir)):
        if os.path.isfile(os.path.join(folder, marker)):
            return folder
        logging.get_logger(__name__).warning(
            f"{folder} is incomplete (no {marker}; the run was stopped while saving it): skipped."
        )
    return None
