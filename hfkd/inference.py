"""Running a classifier on raw text: batched, length-sorted prediction (sharded under several processes), and the
size of a model (parameters, layers).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedModel
from transformers.utils import logging

from .data.long_text import (
    DEFAULT_OPTIONS,
    WINDOW_ROW,
    LongTextOptions,
    average_windows,
    tokenize_texts,
    tokenize_windows,
)
from .models import forward_argument_names

logger = logging.get_logger(__name__)


@dataclass
class Predictions:
    """A model's logits on one split (in the split's row order), the gold labels, and the forward passes' time."""

    logits: np.ndarray
    labels: np.ndarray
    seconds: float


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


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
    long_text_options: LongTextOptions | None = None,
) -> Predictions:
    """Logits of `model` on an untokenised `dataset` (`text`, and `label` if any), columns in the order of
    `label_names`.

    Rows are tokenised with the model's own tokenizer (cached by `datasets`) and run sorted by length, which cuts the
    padding of a batch; the logits come back in the dataset's order. A first batch is run untimed (warm-up), so that
    `seconds` compares models fairly. With an `accelerator` the rows are sharded over its processes and gathered
    back, under its autocast; without one, this process runs every row, under `autocast_dtype` on a GPU if given.
    Rows without a `label` column get label -1.

    `long_text_options` (`DataArguments.long_text_options`; the defaults when not given): with `long_text="truncate"`
    each row is one input cut as its `truncation` says ([`tokenize_texts`]); with `"chunk"` each row is run as the
    windows of [`tokenize_windows`] and its logits are the mean of theirs ([`average_windows`]), so the whole text is
    scored. `seconds` then counts the forward passes of every window.
    """
    options = long_text_options or DEFAULT_OPTIONS
    state = PartialState()
    has_labels = "label" in dataset.column_names
    if options.chunked:

        def encode(batch, indices):
            windows = tokenize_windows(tokenizer, batch["text"], max_length, options)
            rows = windows[WINDOW_ROW]
            windows[WINDOW_ROW] = [indices[i] for i in rows]
            windows["label"] = [batch["label"][i] for i in rows] if has_labels else [-1] * len(rows)
            return windows

        tokenized = dataset.map(
            encode, batched=True, with_indices=True, remove_columns=dataset.column_names, desc=desc
        )
    else:
        tokenized = dataset.map(
            lambda batch: tokenize_texts(tokenizer, batch["text"], max_length, options),
            batched=True,
            remove_columns=["text"],
            desc=desc,
        )
        if not has_labels:
            tokenized = tokenized.add_column("label", [-1] * len(tokenized))
    order = np.argsort([len(ids) for ids in tokenized["input_ids"]], kind="stable")
    input_names = forward_argument_names(model)
    tokenized = tokenized.select(order).rename_column("label", "labels")
    kept = input_names | {"labels"} | ({WINDOW_ROW} if options.chunked else set())
    tokenized = tokenized.remove_columns([c for c in tokenized.column_names if c not in kept])
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
        inputs = {k: v.to(state.device) for k, v in batch.items() if k not in ("labels", WINDOW_ROW)}
        autocast = make_autocast()
        with torch.inference_mode(), autocast:
            return model(**inputs).logits.float().index_select(-1, columns.to(state.device))

    logits, labels, rows, seconds = [], [], [], 0.0
    for step, batch in enumerate(loader):
        if step == 0:
            forward(batch)  # warm-up: allocator, kernels, thread pools
        start = time.perf_counter()
        out = forward(batch)
        seconds += time.perf_counter() - start
        gold = batch["labels"].to(state.device)
        row = batch[WINDOW_ROW].to(state.device) if options.chunked else None
        if accelerator is not None and row is None:
            out, gold = accelerator.gather_for_metrics((out, gold))
        elif accelerator is not None:
            out, gold, row = accelerator.gather_for_metrics((out, gold, row))
        logits.append(out.cpu())
        labels.append(gold.cpu())
        if row is not None:
            rows.append(row.cpu())
    sorted_logits = torch.cat(logits).numpy()
    sorted_labels = torch.cat(labels).numpy()
    if options.chunked:  # windows in length order: each one's logits go to its text's mean
        window_rows = torch.cat(rows).numpy()
        gold = np.full(len(dataset), -1, dtype=sorted_labels.dtype)
        gold[window_rows] = sorted_labels
        return Predictions(
            logits=average_windows(sorted_logits, window_rows, len(dataset)), labels=gold, seconds=seconds
        )
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return Predictions(logits=sorted_logits[inverse], labels=sorted_labels[inverse], seconds=seconds)


def safetensors_size(folder: str | None) -> dict[str, int] | None:
    """`{"parameters", "bytes"}` of a local folder's `*.safetensors`, read from the headers (no model is loaded)."""
    from safetensors import safe_open

    if not folder or not os.path.isdir(folder):
        return None
    files = [os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.endswith(".safetensors")]
    if not files:
        return None
    parameters = 0
    for path in files:
        with safe_open(path, framework="pt") as f:
            for key in f.keys():
                count = 1
                for dim in f.get_slice(key).get_shape():
                    count *= dim
                parameters += count
    return {"parameters": parameters, "bytes": sum(os.path.getsize(p) for p in files)}
