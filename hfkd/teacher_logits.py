"""Teacher logits computed once, stored with their provenance, and reused across epochs and runs.

On-the-fly distillation runs the teacher's forward pass on every step of every epoch, although its outputs on a fixed
training set never change. [`with_teacher_logits`] computes them in one batched inference pass (inference mode,
length-sorted batches, a large batch, bf16/fp16 autocast on GPUs when training uses it) and adds them to the dataset
as the `teacher_logits` column that [`DistillationTrainer`] reads instead of calling the teacher.

The logits live in `datasets`' Arrow format on disk (memory-mapped, not held in RAM), in a folder named by a hash of
their provenance: the teacher's weights and config (or Hub commit), its tokenizer, the texts, `max_length`, the label
names, the autocast dtype of the forward pass and, when they are not the defaults, the long-text options (see
`hfkd.data.long_text`). A changed teacher, tokenizer, data or setting therefore gets its own
folder and is computed anew; it can never be mistaken for an old one. `hfkd_cache.json` beside the Arrow files records
that provenance; a folder whose record or contents do not match (wrong shape, NaN/inf) is an error that names the file.

The cache is built from the raw text with the *teacher's* tokenizer, so the student may tokenise differently
(cross-tokenizer distillation). With `long_text="chunk"` the teacher scores the whole text (its logits averaged over
windows of `max_length` tokens) while the student is trained on its one truncated input: the soft targets then carry
what the truncation cut off.

Under several processes (`accelerate launch`, DDP, DeepSpeed) every process computes the logits of its own contiguous
shard of the rows (`PartialState.split_between_processes`), so each row is computed exactly once and no process
idles; the shards are gathered in process order (`accelerate.utils.gather_object`, no shared disk needed) and the main
process writes the one cache folder. The folder, its key and its contents do not depend on the number of processes:
a cache written by one process is reused by eight and the other way round. On several nodes without a shared disk,
the first process of every other node writes the same folder to its own disk from the gathered logits.

Separate runs that need the same folder at the same time take turns on a file lock (`.locks/<hash>.lock` in the
cache directory, held by a run's main process): one computes, the others wait and then use its files. A folder appears
at once (written beside it, then renamed), so a killed run never leaves a partial cache that a later one could take
for a whole one, and it is never deleted by another run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from datasets import Dataset, Features, Sequence, Value, concatenate_datasets
from filelock import FileLock, Timeout
from transformers import PreTrainedModel
from transformers.utils import logging

from .data.long_text import DEFAULT_OPTIONS, LongTextOptions
from .fingerprints import content_hash, fingerprint_rows, model_fingerprint
from .inference import predict
from .models import hfkd_cache_dir, load_teacher, load_tokenizer, model_label_names

logger = logging.get_logger(__name__)

TEACHER_LOGITS_COLUMN = "teacher_logits"
"""The dataset column that holds the teacher's logits, which `DistillationTrainer` reads instead of running it."""
CACHE_RECORD = "hfkd_cache.json"
CACHE_FORMAT = "hfkd-teacher-logits/2"  # 2: tokenizer fingerprint without call state; autocast dtype; Hub commit
LOCK_DIR = ".locks"


def default_cache_dir() -> str:
    """`$HFKD_CACHE/teacher_logits` (by default `~/.cache/huggingface/hfkd/teacher_logits`)."""
    return os.path.join(hfkd_cache_dir(), "teacher_logits")


def hub_commit(repo_id: str) -> str | None:
    """
    The commit `from_pretrained(repo_id)` would load now, without downloading the weights.

    It resolves `config.json` as `from_pretrained` does: online, where `main` points on the Hub (fetching that small
    file if it changed); offline (`HF_HUB_OFFLINE=1`) or when the Hub cannot be reached, the commit the Hub cache's
    `refs/main` names. It needs no loaded model, so a loaded and a not yet loaded teacher share the cache.

    Args:
        repo_id (`str`): a Hub model id.

    Returns:
        `str | None`: the 40-hex commit, or `None` when it cannot be resolved (a warning says so).
    """
    from transformers.utils.hub import cached_file, extract_commit_hash

    try:
        resolved = cached_file(repo_id, "config.json")
    except (OSError, ValueError) as error:
        logger.warning(
            f"Could not resolve the Hub commit of {repo_id!r} ({error}); its teacher-logit cache is keyed by the name "
            "alone (a new commit under that name would reuse it); a local folder makes it exact."
        )
        return None
    return extract_commit_hash(resolved, None)


def teacher_fingerprint(name_or_path: str, teacher: PreTrainedModel | None = None) -> str:
    """A local folder's weights and config; for a Hub id, `<id>@<commit>`: the commit `teacher` was loaded from when
    its config says so, else the one `main` resolves to now (see [`hub_commit`]), loaded or not."""
    fingerprint = model_fingerprint(name_or_path)
    if fingerprint != name_or_path:  # a local folder: hashed
        return fingerprint
    # transformers 5 no longer keeps `_commit_hash` on a loaded config, so a loaded teacher needs the lookup too
    commit = getattr(getattr(teacher, "config", None), "_commit_hash", None) or hub_commit(name_or_path)
    return f"{fingerprint}@{commit}" if commit else fingerprint


def tokenizer_fingerprint(tokenizer) -> str:
    """
    A hash of everything that decides the token ids: the full serialised fast tokenizer (else its vocabulary), its
    class and its padding and truncation sides.

    The backend's `truncation` and `padding` entries are left out: they hold whatever the *last call* asked for
    (`transformers` sets them on every call), so a tokenizer that has already tokenised the student's data would
    otherwise key another cache than a fresh one. The cache's own call sets them anew (its `max_length` is in the
    key). The tokenizer itself is not changed.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        serialised = json.loads(backend.to_str())
        serialised.pop("truncation", None)
        serialised.pop("padding", None)
        text = json.dumps(serialised, sort_keys=True)
    else:
        text = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    # the sides live on the Python object and are applied to the backend on each call
    text += f"|{type(tokenizer).__name__}|{getattr(tokenizer, 'padding_side', '')}"
    text += f"|{getattr(tokenizer, 'truncation_side', '')}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def autocast_dtype(mixed_precision: str | None, device: torch.device | str | None = None) -> torch.dtype | None:
    """
    The dtype the teacher's forward pass autocasts to: bf16/fp16 with that `mixed_precision` on a CUDA device, none
    (fp32) otherwise, as in [`hfkd.evaluation.predict`].

    Args:
        mixed_precision (`str`, *optional*): `"no"`, `"fp16"` or `"bf16"` (`None` is `"no"`).
        device (`torch.device` or `str`, *optional*): where the pass runs; by default this process's device.
    """
    device = torch.device(device) if device is not None else PartialState().device
    if device.type != "cuda":  # predict() autocasts on CUDA only
        return None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision or "no")


def cache_provenance(
    texts: list[str],
    teacher_id: str,
    tokenizer,
    label_names: list[str],
    max_length: int,
    autocast: torch.dtype | None = None,
    long_text_options: LongTextOptions | None = None,
) -> dict[str, Any]:
    """
    What the cached logits depend on; its hash names the cache folder and `hfkd_cache.json` records it.

    Args:
        texts (`list[str]`): the raw texts, in order.
        teacher_id (`str`): see [`teacher_fingerprint`].
        tokenizer: the teacher's tokenizer (see [`tokenizer_fingerprint`]).
        label_names (`list[str]`): the logit columns, in order.
        max_length (`int`): the teacher's truncation length.
        autocast (`torch.dtype`, *optional*): the autocast dtype actually used (see [`autocast_dtype`]); `None` for
            fp32. Half-precision logits differ from fp32 ones, so neither is reused for the other.
        long_text_options ([`LongTextOptions`], *optional*): how long texts were fed to the teacher; recorded (as
            `long_text`) only when that is not the default (the first `max_length` tokens), so the key of a cache
            made before these options is unchanged.
    """
    provenance = {
        "format": CACHE_FORMAT,
        "teacher": teacher_id,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "data": fingerprint_rows(texts),
        "rows": len(texts),
        "max_length": max_length,
        "label_names": list(label_names),
        "autocast": str(autocast).removeprefix("torch.") if autocast is not None else "no",
    }
    long_text = (long_text_options or DEFAULT_OPTIONS).prediction_key()
    if long_text:
        provenance["long_text"] = long_text
    return provenance


def compute_teacher_logits(
    teacher: PreTrainedModel,
    tokenizer,
    texts: list[str],
    label_names: list[str],
    *,
    max_length: int,
    batch_size: int = 256,
    mixed_precision: str = "no",
    long_text_options: LongTextOptions | None = None,
) -> np.ndarray:
    """The teacher's logits on `texts` as a `(len(texts), len(label_names))` float32 array, columns in the order of
    `label_names` (matched by name). One inference pass on this process's device, length-sorted batches; long texts
    truncated or averaged over windows as `long_text_options` says (see [`hfkd.inference.predict`])."""
    names = model_label_names(teacher.config)
    if sorted(names) != sorted(label_names):
        raise ValueError(
            f"The teacher predicts {names} but the data's labels are {list(label_names)}; fine-tune the teacher on "
            "these labels (scripts/finetune.py) or set class_names to the teacher's labels."
        )
    dtype = autocast_dtype(mixed_precision)
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
        long_text_options=long_text_options,
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


def _write_cache(folder: str, logits: np.ndarray, provenance: dict[str, Any]) -> bool:
    """Write into a hidden temporary folder beside `folder`, then rename it: a killed run never leaves a half-written
    cache behind, and no reader ever sees one. When `folder` exists already (another run got there first: the same
    provenance, so the same logits) it is kept and ours dropped. Returns whether ours was written."""
    parent = os.path.dirname(folder) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.tmp-", dir=parent)
    try:
        features = Features({TEACHER_LOGITS_COLUMN: Sequence(Value("float32"), length=logits.shape[1])})
        table = Dataset.from_dict({TEACHER_LOGITS_COLUMN: logits}, features=features)
        table.save_to_disk(tmp)
        with open(os.path.join(tmp, CACHE_RECORD), "w") as f:
            json.dump(provenance, f, indent=2)
        try:
            os.rename(tmp, folder)  # fails on an existing non-empty folder: never replace another run's files
        except OSError:
            if not os.path.isdir(folder):
                raise
            logger.info(f"Another run wrote the teacher-logit cache {folder} meanwhile; using it.")
            return False
        return True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after a successful rename


def _lock(folder: str) -> FileLock:
    """Take the file lock of the cache `folder` (waiting, with a log line, while another run holds it)."""
    lock_dir = os.path.join(os.path.dirname(folder) or ".", LOCK_DIR)
    os.makedirs(lock_dir, exist_ok=True)
    lock = FileLock(os.path.join(lock_dir, f"{os.path.basename(folder)}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info(f"Another run is computing the teacher logits for {folder}; waiting for it.")
        lock.acquire()
    return lock


def _everywhere(flag: bool) -> bool:
    """Whether `flag` holds on every process (a collective call: every process must make it)."""
    state = PartialState()
    return all(gather_object([flag])) if state.num_processes > 1 else flag


def _fill_cache(
    folder: str, provenance: dict[str, Any], texts: list[str], compute: Callable[[list[str]], np.ndarray]
) -> None:
    """Compute and write the cache `folder` unless it exists; a collective call under several processes.

    The main process holds a file lock per folder meanwhile, so that runs needing the same logits at the same time
    compute them once: the others wait, then find the folder (checked again under the lock) and use it. Each process
    runs `compute` on its own contiguous shard of `texts` (`PartialState.split_between_processes`: each row exactly
    once); the shards are gathered in process order and the main process writes them as one folder with
    [`_write_cache`]. The first process of every other node then writes it too where its disk lacks it (nodes
    without a shared disk)."""
    state = PartialState()
    lock = _lock(folder) if state.is_main_process else None
    try:
        state.wait_for_everyone()  # every process looks only once the main one holds the lock
        if _everywhere(os.path.isdir(folder)):
            if state.is_main_process:
                logger.info(f"Another run computed the teacher logits in {folder} meanwhile; using them.")
            return
        with state.split_between_processes(texts) as shard:
            if shard:
                mine = compute(shard)
            else:  # fewer rows than processes
                mine = np.empty((0, len(provenance["label_names"])), dtype=np.float32)
        shards = gather_object([mine]) if state.num_processes > 1 else [mine]
        logits = np.concatenate(shards).astype(np.float32, copy=False)
        if len(logits) != len(texts):  # split_between_processes and gather_object keep every row, in order
            raise RuntimeError(f"The teacher-logit shards hold {len(logits)} rows for {len(texts)} texts.")
        if state.is_main_process:
            _write_cache(folder, logits, provenance)
    finally:
        if lock is not None:
            lock.release()
    if state.num_processes > 1:
        state.wait_for_everyone()
        if state.is_local_main_process and not state.is_main_process and not os.path.isdir(folder):
            _write_cache(folder, logits, provenance)  # another node's own disk
        state.wait_for_everyone()


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
    long_text_options: LongTextOptions | None = None,
) -> Dataset:
    """`dataset` (with a raw `text_column`) plus the `teacher_logits` column, from the cache or computed once; the
    text column is dropped. The teacher is loaded only when the logits must be computed (pass a loaded one to save
    that). `long_text_options` (`DataArguments.long_text_options`) say how the teacher reads long texts: truncated,
    or whole (`long_text="chunk"`: its logits averaged over windows); they are part of the cache key.

    Under several processes every process must call it (it synchronises them): each computes the logits of its own
    shard of the rows, and every process gets the whole column (see the module docstring)."""
    if text_column not in dataset.column_names:
        raise ValueError(
            f"The teacher-logit cache needs the raw text, but the dataset has no {text_column!r} column (columns "
            f"{dataset.column_names}); tokenize with keep_text=True."
        )
    texts = list(dataset[text_column])  # a plain list: split between processes by position
    tokenizer = teacher_tokenizer or load_tokenizer(teacher_name_or_path)
    provenance = cache_provenance(
        texts,
        teacher_fingerprint(teacher_name_or_path, teacher),
        tokenizer,
        label_names,
        max_length,
        autocast=autocast_dtype(mixed_precision),
        long_text_options=long_text_options,
    )
    folder = os.path.join(cache_dir or default_cache_dir(), content_hash(provenance))

    state = PartialState()

    def compute(shard: list[str]) -> np.ndarray:
        nonlocal teacher
        if teacher is None:
            teacher = load_teacher(teacher_name_or_path, label_names)
        if state.is_main_process:
            where = f" over {state.num_processes} processes" if state.num_processes > 1 else ""
            logger.info(f"Computing the teacher's logits on {len(texts)} rows once{where}; caching them in {folder}.")
        return compute_teacher_logits(
            teacher,
            tokenizer,
            shard,
            label_names,
            max_length=max_length,
            batch_size=batch_size,
            mixed_precision=mixed_precision,
            long_text_options=long_text_options,
        )

    if _everywhere(os.path.isdir(folder)):
        if state.is_main_process:
            logger.info(f"Using the cached teacher logits in {folder} ({len(texts)} rows).")
    else:
        _fill_cache(folder, provenance, texts, compute)
    logits = load_cache(folder, provenance)
    return concatenate_datasets([dataset.remove_columns(text_column), logits], axis=1)
