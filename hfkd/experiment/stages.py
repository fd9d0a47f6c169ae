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

import json
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

from accelerate import PartialState
from transformers.utils import logging

from ..fingerprints import changed_settings, content_hash

logger = logging.get_logger(__name__)


STAGE_FILE = "hfkd_stage.json"


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
    digest = content_hash(key)
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


def _identity(key: dict[str, Any]) -> tuple[Any, Any]:
    """What tells two stages of one name apart without one being an earlier version of the other: the training seed
    (each seed of a run has its own stage) and the names of the source domains (e.g. the per-domain teachers of
    `multi_teacher` share a folder)."""
    training, data = key.get("training"), key.get("data")
    seed = training.get("seed") if isinstance(training, dict) else None
    sources = data.get("sources") if isinstance(data, dict) else None
    return seed, sorted(sources) if isinstance(sources, dict) else sources


def _log_previous_versions(name: str, block_dir: str, folder: str, key: dict[str, Any]) -> None:
    """Say which earlier versions of this stage exist and what changed since (they are kept). Another seed's stage,
    or the same stage on other source domains, is not an earlier version (see [`_identity`])."""
    if not os.path.isdir(block_dir):
        return
    for entry in sorted(os.listdir(block_dir)):
        other = os.path.join(block_dir, entry)
        if other == folder or not entry.startswith(f"{name}-"):
            continue
        record = read_stage_record(other)
        if record is None or "key" not in record or _identity(record["key"]) != _identity(key):
            continue
        changes = "; ".join(changed_settings(record["key"], key)[:8]) or "nothing recorded"
        logger.warning(f"Stage {name}: the config changed since {other} (kept), so it is redone. Changed: {changes}")
