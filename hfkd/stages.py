"""Stages of an experiment, reused across reruns: each one lives in a folder named by a hash of what it depends on.

A stage's *key* is a JSON-able dict of everything its result depends on: its settings, the fingerprint of its data
and the hashes of the stages it builds on (so a retrained teacher invalidates the students distilled from it). The
folder is `<block_dir>/<stage>-<hash>`; `hfkd_stage.json` inside says whether it finished. On a rerun:

- a finished stage with the same key is reused as it is;
- an unfinished one (killed, crashed) is resumed from its last checkpoint;
- a changed key gets a new folder, and the old one is left where it is (nothing is deleted behind your back);
- `overwrite=True` deletes the stage's folder and redoes it.

Under several processes every process takes the same decision (made before anything is written), and only the main
process writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

from accelerate import PartialState
from datasets import DatasetDict
from transformers.utils import logging

from .parser import config_to_dict

logger = logging.get_logger(__name__)

STAGE_FILE = "hfkd_stage.json"
HASH_LENGTH = 10

# TrainingArguments fields that do not change what a stage trains: left out of its hash, so that e.g. another
# logging interval or output folder still reuses the stage.
_NOT_IN_KEY = {
    "output_dir", "logging_dir", "report_to", "run_name", "resume_from_checkpoint", "disable_tqdm", "local_rank",
    "overwrite", "per_device_eval_batch_size", "dataloader_num_workers", "dataloader_pin_memory",
    "dataloader_persistent_workers", "dataloader_prefetch_factor", "skip_memory_metrics", "project", "debug",
    "ddp_timeout", "do_train", "do_eval", "do_predict", "hub_token", "push_to_hub", "batch_eval_metrics",
    "teacher_model_name_or_path", "overwrite_output_dir", "allow_pickle_weights",
    "grad_health",
}  # fmt: skip
_NOT_IN_KEY_PREFIXES = ("logging_", "log_", "save_", "eval_", "hub_", "trackio_", "include_")


def training_key(*configs: Any) -> dict[str, Any]:
    """The settings of some argument dataclasses that change a trained model (see `_NOT_IN_KEY`)."""
    return training_settings(config_to_dict(*configs)) | {"num_processes": PartialState().num_processes}


def training_settings(flat: dict[str, Any]) -> dict[str, Any]:
    """The entries of a flat config that change what is trained (not where it goes, how often it logs, ...)."""
    return {k: v for k, v in flat.items() if k not in _NOT_IN_KEY and not k.startswith(_NOT_IN_KEY_PREFIXES)}


def changed_settings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`["key: old -> new", ...]` for the nested keys whose values differ."""
    return _changed_keys(old, new)


def domain_fingerprints(domains: dict[str, DatasetDict]) -> dict[str, str]:
    """Per domain, a hash of its rows (all splits): a stage keyed by it is redone when the data changes."""
    return {
        name: fingerprint_rows(*(table[column] for table in splits.values() for column in ("text", "label")))
        for name, splits in domains.items()
    }


def model_fingerprint(name_or_path: str) -> str:
    """A hash of a local model folder's weights and config (a retrained teacher in the same folder changes it), or
    the name itself for a Hub id (pin a revision there to make it exact)."""
    from .models import resolve_model_name_or_path

    folder = resolve_model_name_or_path(name_or_path)
    if not os.path.isdir(folder):
        return name_or_path
    digest = hashlib.sha256()
    for entry in sorted(os.listdir(folder)):
        if entry == "config.json" or entry.endswith((".safetensors", ".bin")):
            digest.update(entry.encode())
            with open(os.path.join(folder, entry), "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()[:16]


def stage_hash(key: dict[str, Any]) -> str:
    """A short, stable hash of a stage key (sorted-key JSON; non-JSON values by their `str`)."""
    text = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


def fingerprint_rows(*columns) -> str:
    """A hash of the rows of some columns (e.g. a split's texts and labels): equal data, equal fingerprint."""
    digest = hashlib.sha256()
    for column in columns:
        for value in column:
            digest.update(str(value).encode())
            digest.update(b"\x1f")
        digest.update(b"\x1e")
    return digest.hexdigest()[:16]


def read_stage_record(folder: str) -> dict[str, Any] | None:
    path = os.path.join(folder, STAGE_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        logger.warning(f"{path} is unreadable; the stage in {folder} is redone.")
        return None


def _write_record(folder: str, record: dict[str, Any]) -> None:
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, STAGE_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(record, f, indent=2, default=str)
    os.replace(tmp, os.path.join(folder, STAGE_FILE))  # atomic: a crash never leaves a half-written record


def _changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return changed


def run_stage(
    name: str,
    block_dir: str,
    key: dict[str, Any],
    train: Callable[[str, bool], dict[str, Any]],
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run (or reuse, or resume) one stage.

    Args:
        name: the stage's name, e.g. `"teacher"`.
        block_dir: the folder that holds the block's stage folders.
        key: everything the stage's result depends on (see the module docstring).
        train: `train(folder, resume)` trains into `folder` and returns its metrics; `resume` says whether an
            unfinished run of the same stage left checkpoints there to continue from.
        overwrite: redo the stage even if it finished before.

    Returns:
        `{"path", "hash", "reused", "resumed", "wall_time_s", "train"}`: what went into results.json.
    """
    state = PartialState()
    digest = stage_hash(key)
    folder = os.path.join(block_dir, f"{name}-{digest}")
    record = read_stage_record(folder)
    state.wait_for_everyone()  # every process has read the record before the main one changes anything

    if record is not None and record.get("status") == "done" and not overwrite:
        finished = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.get("finished") or 0))
        logger.info(f"Stage {name}: reusing {folder} (finished {finished}, same config).")
        return {
            "path": folder,
            "hash": digest,
            "reused": True,
            "resumed": False,
            "wall_time_s": record.get("wall_time_s"),
            "train": record.get("metrics", {}),
        }
    if state.is_main_process:
        if overwrite and os.path.isdir(folder):
            logger.info(f"Stage {name}: overwrite is set, deleting {folder}.")
            shutil.rmtree(folder)
        _log_previous_versions(name, block_dir, folder, key)
    resume = record is not None and not overwrite
    started = time.time()
    if state.is_main_process:
        _write_record(folder, {"stage": name, "hash": digest, "status": "running", "key": key, "started": started})
    state.wait_for_everyone()
    logger.info(f"Stage {name}: {'resuming' if resume else 'training'} in {folder}.")
    metrics = train(folder, resume)
    wall_time = time.time() - started
    if state.is_main_process:
        record = {"stage": name, "hash": digest, "status": "done", "key": key, "started": started}
        _write_record(folder, record | {"finished": time.time(), "wall_time_s": wall_time, "metrics": metrics})
    state.wait_for_everyone()
    return {
        "path": folder,
        "hash": digest,
        "reused": False,
        "resumed": resume,
        "wall_time_s": wall_time,
        "train": metrics,
    }


def _log_previous_versions(name: str, block_dir: str, folder: str, key: dict[str, Any]) -> None:
    """Say which earlier versions of this stage exist and what changed since (they are kept)."""
    if not os.path.isdir(block_dir):
        return
    for entry in sorted(os.listdir(block_dir)):
        other = os.path.join(block_dir, entry)
        if other == folder or not entry.startswith(f"{name}-"):
            continue
        record = read_stage_record(other)
        if record is None or "key" not in record:
            continue
        changes = "; ".join(_changed_keys(record["key"], key)[:8]) or "nothing recorded"
        logger.warning(f"Stage {name}: the config changed since {other} (kept), so it is redone. Changed: {changes}")
