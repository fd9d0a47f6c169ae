"""Content hashes that name what hfkd caches, and the settings that count: rows of data, model folders, JSON keys.

Shared by the experiment's stage folders (`hfkd.experiment.stages`), the teacher-logit cache
(`hfkd.teacher_logits`) and the output-folder checks (`hfkd.run_files`): equal inputs give equal names on every
machine, any change gives a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from accelerate import PartialState
from datasets import DatasetDict

from .models import resolve_model_name_or_path
from .parser import config_to_dict

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

# Fields added after stage keys were first written, left out of a key while they hold these defaults: a config that
# does not use them keeps the key (and reuses the stages and runs) it had before they existed.
_NEW_FIELD_DEFAULTS = {
    "student_hidden_size": None,
    "student_intermediate_size": None,
    "student_vocabulary": "full",
}


def training_key(*configs: Any) -> dict[str, Any]:
    """The settings of some argument dataclasses that change a trained model (see `_NOT_IN_KEY`)."""
    return training_settings(config_to_dict(*configs)) | {"num_processes": PartialState().num_processes}


def training_settings(flat: dict[str, Any]) -> dict[str, Any]:
    """The entries of a flat config that change what is trained (not where it goes, how often it logs, ...).

    Fields added later (`_NEW_FIELD_DEFAULTS`) count only when they differ from their default."""
    return {
        k: v
        for k, v in flat.items()
        if k not in _NOT_IN_KEY
        and not k.startswith(_NOT_IN_KEY_PREFIXES)
        and not (k in _NEW_FIELD_DEFAULTS and v == _NEW_FIELD_DEFAULTS[k])
    }


def changed_settings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`["key: old -> new", ...]` for the nested keys whose values differ."""
    return _changed_keys(old, new)


def _changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return changed


def domain_fingerprints(domains: dict[str, DatasetDict]) -> dict[str, str]:
    """Per domain, a hash of its rows (all splits): a stage keyed by it is redone when the data changes."""
    return {
        name: fingerprint_rows(*(table[column] for table in splits.values() for column in ("text", "label")))
        for name, splits in domains.items()
    }


def model_fingerprint(name_or_path: str) -> str:
    """A hash of a local model folder's weights and config (a retrained teacher in the same folder changes it), or
    the name itself for a Hub id (pin a revision there to make it exact)."""
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


def content_hash(key: dict[str, Any]) -> str:
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
