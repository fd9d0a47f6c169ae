"""Teacher logits computed once, stored with their provenance, and reused across epochs and runs.

On-the-fly distillation runs the teacher's forward pass on every step of every epoch, although its outputs on a fixed
training set never change. [`with_teacher_logits`] computes them in one batched inference pass (inference mode,
length-sorted batches, a large batch, bf16/fp16 autocast on GPUs when training uses it) and adds them to the dataset
as the `teacher_logits` column that [`DistillationTrainer`] reads instead of calling the teacher.

The logits live in `datasets`' Arrow format on disk (memory-mapped, not held in RAM), in a folder named by a hash of
their provenance: the teacher's weights and config (or Hub commit), its tokenizer, the texts, `max_length` and the
label names. A changed teacher, tokenizer, data or setting therefore gets its own folder and is computed anew; it can
never be mistaken for an old one. `hfkd_cache.json` beside the Arrow files records that provenance; a folder whose
record or contents do not match (wrong shape, NaN/inf) is an error that names the file.

The cache is built from the raw text with the *teacher's* tokenizer, so the student may tokenise differently
(cross-tokenizer distillation). Under several processes the main process computes and writes it while the others
wait, then every process memory-maps the same files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from datasets import Dataset, Features, Sequence, Value, concatenate_datasets
from transformers import PreTrainedModel
from transformers.utils import logging

from .models import hfkd_cache_dir, load_tokenizer, model_label_names
from .stages import fingerprint_rows, model_fingerprint, stage_hash
from .trainer import TEACHER_LOGITS_COLUMN

logger = logging.get_logger(__name__)

CACHE_RECORD = "hfkd_cache.json"
CACHE_FORMAT = "hfkd-teacher-logits/1"


def default_cache_dir() -> str:
    """`$HFKD_CACHE/teacher_logits` (by default `~/.cache/huggingface/hfkd/teacher_logits`)."""
    return os.path.join(hfkd_cache_dir(), "teacher_logits")


def teacher_fingerprint(name_or_path: str, teacher: PreTrainedModel | None = None) -> str:
    """A local folder's weights and config; for a Hub id, the commit it was loaded from (when known)."""
    fingerprint = model_fingerprint(name_or_path)
    commit = getattr(getattr(teacher, "config", None), "_commit_hash", None)
    return f"{fingerprint}@{commit}" if fingerprint == name_or_path and commit else fingerprint


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of everything that decides the token ids: the full serialised fast tokenizer (else its vocabulary)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    text += f"|{type(tokenizer).__name__}|{getattr(tokenizer, 'padding_side', '')}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_provenance(
    texts: list[str], teacher_id: str, tokenizer, label_names: list[str], max_length: int
) -> dict[str, Any]:
    return {
        "format": CACHE_FORMAT,
        "teacher": teacher_id,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "data": fingerprint_rows(texts),
        "rows": len(texts),
        "max_length": max_length,
        "label_names": list(label_names),
    }


def compute_teacher_logits(
    teacher: PreTrainedModel,
    tokenizer,
    texts: list[str],
    label_names: list[str],
    *,
    max_length: int,
    batch_size: int = 256,
    mixed_precision: str = "no",
) -> np.ndarray:
    """The teacher's logits on `texts` as a `(len(texts), len(label_names))` float32 array, columns in the order of
    `label_names` (matched by name). One inference pass on this process's device, length-sorted batches."""
    from .evaluation import predict

    names = model_label_names(teacher.config)
    if sorted(names) != sorted(label_names):
        raise ValueError(
            f"The teacher predicts {names} but the data's labels are {list(label_names)}; fine-tune the teacher on "
            "these labels (scripts/finetune.py) or set class_names to the teacher's labels."
        )
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision)
    table = Dataset.from_dict({"text": list(texts)})
    out = predict(
        teacher,
        tokenizer,
        table,
        label_names=label_names,
        max_length=max_length,
        batch_size=batch_size,
        autocast_dtype=dtype,
        desc="Tokenizing for the teacher-logit cache",
    )
    return out.logits.astype(np.float32)


def load_cache(folder: str, provenance: dict[str, Any]) -> Dataset:
    """The cached logits in `folder`, memory-mapped; `ValueError` naming the file when they are not what
    `provenance` says (another teacher/data, wrong shape, NaN/inf)."""
    record_path = os.path.join(folder, CACHE_RECORD)
    fix = f"delete {folder} to recompute it"
    try:
        with open(record_path) as f:
            record = json.load(f)
        logits = Dataset.load_from_disk(folder)
    except (OSError, ValueError, json.JSONDecodeError, FileNotFoundError) as error:
        raise ValueError(f"The teacher-logit cache {record_path} is unreadable ({error}); {fix}.") from None
    changed = sorted(k for k in provenance if record.get(k) != provenance[k])
    if changed:
        raise ValueError(
            f"The teacher-logit cache {record_path} does not match this run ({', '.join(changed)} differ); {fix}."
        )
    num_labels = len(provenance["label_names"])
    if logits.column_names != [TEACHER_LOGITS_COLUMN] or logits.num_rows != provenance["rows"]:
        raise ValueError(
            f"The teacher-logit cache {folder} holds {logits.num_rows} rows of {logits.column_names}, expected "
            f"{provenance['rows']} rows of [{TEACHER_LOGITS_COLUMN!r}]; {fix}."
        )
    array = logits.with_format("numpy")[:][TEACHER_LOGITS_COLUMN]
    if array.ndim != 2 or array.shape[1] != num_labels:
        raise ValueError(
            f"The teacher-logit cache {folder} has logits of shape {array.shape}, not (N, {num_labels}); {fix}."
        )
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=1).sum())
        raise ValueError(f"The teacher-logit cache {folder} has {bad} rows with NaN or inf logits; {fix}.")
    return logits


def _write_cache(folder: str, logits: np.ndarray, provenance: dict[str, Any]) -> None:
    """Write next to `folder`, then rename: a killed run never leaves a half-written cache behind."""
    tmp = f"{folder}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    features = Features({TEACHER_LOGITS_COLUMN: Sequence(Value("float32"), length=logits.shape[1])})
    table = Dataset.from_dict({TEACHER_LOGITS_COLUMN: logits}, features=features)
    table.save_to_disk(tmp)
    with open(os.path.join(tmp, CACHE_RECORD), "w") as f:
        json.dump(provenance, f, indent=2)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def with_teacher_logits(
    dataset: Dataset,
    teacher_name_or_path: str,
    label_names: list[str],
    *,
    max_length: int,
    teacher: PreTrainedModel | None = None,
    teacher_tokenizer=None,
    cache_dir: str | None = None,
    batch_size: int = 256,
    mixed_precision: str = "no",
    text_column: str = "text",
) -> Dataset:
    """`dataset` (with a raw `text_column`) plus the `teacher_logits` column, from the cache or computed once; the
    text column is dropped. The teacher is loaded only when the logits must be computed (pass a loaded one to save
    that)."""
    if text_column not in dataset.column_names:
        raise ValueError(
            f"The teacher-logit cache needs the raw text, but the dataset has no {text_column!r} column (columns "
            f"{dataset.column_names}); tokenize with keep_text=True."
        )
    texts = dataset[text_column]
    tokenizer = teacher_tokenizer or load_tokenizer(teacher_name_or_path)
    provenance = cache_provenance(
        texts, teacher_fingerprint(teacher_name_or_path, teacher), tokenizer, label_names, max_length
    )
    folder = os.path.join(cache_dir or default_cache_dir(), stage_hash(provenance))
    state = PartialState()
    with state.main_process_first():  # the main process computes; the others then find it on disk
        if not os.path.isdir(folder):
            if teacher is None:
                from .distill import load_teacher

                teacher = load_teacher(teacher_name_or_path, label_names)
            logger.info(f"Computing the teacher's logits on {len(texts)} rows once; caching them in {folder}.")
            logits = compute_teacher_logits(
                teacher,
                tokenizer,
                texts,
                label_names,
                max_length=max_length,
                batch_size=batch_size,
                mixed_precision=mixed_precision,
            )
            _write_cache(folder, logits, provenance)
        else:
            logger.info(f"Using the cached teacher logits in {folder} ({len(texts)} rows).")
        logits = load_cache(folder, provenance)
    return concatenate_datasets([dataset.remove_columns(text_column), logits], axis=1)
