"""Unlabeled pools larger than memory: a local file read as a `datasets` stream, tokenised as it is read, and fed in
padded batches.

`load_domains` reads a domain whole (it de-duplicates and splits it, which needs every row); an unlabeled pool of
millions of rows needs neither. [`stream_texts`] opens csv/tsv/json/jsonl/parquet files with
`load_dataset(..., streaming=True)`: rows are parsed chunk by chunk while they are iterated, never held all at once,
and nothing is written to disk. [`tokenize_stream`] tokenises them lazily (`IterableDataset.map`, batched) exactly as
the in-memory path does ([`tokenize_texts`]), and [`stream_batches`] pads them into batches, each process of a
multi-process launch reading its own part. The tokenised stream is also a `train_dataset` that `transformers.Trainer`
and `DistillationTrainer` (with the teacher online) accept, with `max_steps` set since a stream has no length.

The other way to keep a pool out of memory is `datasets`' memory-mapped Arrow files: `Dataset.from_json` /
`from_csv` (what `load_domains` uses) convert a file once into Arrow cache files that are memory-mapped, and
`Dataset.map` writes its output to cache files too; that pays a conversion and disk space for random access and
reuse. `scripts/scale_benchmark.py` measures the peak memory of both against an in-memory `Dataset`
(docs/performance.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from accelerate import PartialState
from datasets import IterableDataset, load_dataset
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding

from ..losses import IGNORE_INDEX
from .long_text import LongTextOptions, tokenize_texts
from .reading import FILE_FORMATS

LABELS_COLUMN = "labels"


def stream_texts(
    paths: str | os.PathLike | Sequence[str | os.PathLike], *, text_column: str = "text", encoding: str = "utf-8"
) -> IterableDataset:
    """
    Local text files read lazily, as a `datasets.IterableDataset` (`load_dataset(..., streaming=True)`).

    Rows are parsed in chunks while they are iterated; none is kept after it has been consumed and nothing is written
    to disk. Several files (of one format) are several shards, which processes and DataLoader workers share out.

    Args:
        paths (`str` or `list[str]`): one file or several of the same format: `.csv`, `.tsv`, `.json`, `.jsonl`
            (one JSON object per line) or `.parquet`.
        text_column (`str`, *optional*, defaults to `"text"`): the column that holds the text; checked on the first
            row.
        encoding (`str`, *optional*, defaults to `"utf-8"`): the text files' encoding (not used for parquet).

    Returns:
        `datasets.IterableDataset`: the files' rows with all their columns, in file order.

    Raises:
        `ValueError`: for a missing file, an unsupported or mixed format, an empty file, or a missing text column.
    """
    files = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    if not files:
        raise ValueError("paths is empty; give one or more csv/tsv/json/jsonl/parquet files.")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ValueError(f"paths: no such file {missing[0]!r}; give existing csv/tsv/json/jsonl/parquet files.")
    suffixes = sorted({f.suffix.lower() for f in files})
    if len(suffixes) != 1 or suffixes[0] not in FILE_FORMATS:
        raise ValueError(
            f"paths: files of format {suffixes} cannot be streamed together; give files of one format among "
            f"{sorted(FILE_FORMATS)}."
        )
    fmt = FILE_FORMATS[suffixes[0]]
    options: dict = {}
    if fmt in ("csv", "tsv"):
        # keep_default_na=False: a text that reads "NA" or "null" stays text (as `hfkd.data.reading.read_file` does)
        options = {"sep": "\t" if fmt == "tsv" else ",", "keep_default_na": False, "encoding": encoding}
    elif fmt == "json":
        options = {"encoding": encoding}
    builder = "csv" if fmt == "tsv" else fmt
    stream = load_dataset(builder, data_files=[str(f) for f in files], split="train", streaming=True, **options)
    first = next(iter(stream.take(1)), None)
    if first is None:
        raise ValueError(f"paths: {files[0]} holds no rows; give files with at least one row.")
    if text_column not in first:
        raise ValueError(
            f"text_column={text_column!r} is not a column of {files[0]} (its columns are {list(first)}); set "
            "`text_column` to the column that holds the text."
        )
    return stream


def tokenize_stream(
    stream: IterableDataset,
    tokenizer,
    max_length: int,
    *,
    text_column: str = "text",
    long_text_options: LongTextOptions | None = None,
    keep_text: bool = False,
    batch_size: int = 1000,
) -> IterableDataset:
    """
    `stream` tokenised lazily, `batch_size` rows at a time, exactly as the in-memory path tokenises
    ([`tokenize_texts`]: truncated to `max_length`, unpadded), as an unlabeled pool: `labels` is `-100` on every row,
    so that a distillation loss gives the rows the KD term only.

    Args:
        stream (`datasets.IterableDataset`): rows with a `text_column` (see [`stream_texts`]).
        tokenizer ([`PreTrainedTokenizerBase`]): the model's tokenizer.
        max_length (`int`): the most tokens of one input, special tokens included.
        text_column (`str`, *optional*, defaults to `"text"`): the column to tokenise.
        long_text_options ([`LongTextOptions`], *optional*): which word pieces of a long text are kept.
        keep_text (`bool`, *optional*, defaults to `False`): keep the text column next to the token ids.
        batch_size (`int`, *optional*, defaults to 1000): rows tokenised per call of the tokenizer.

    Returns:
        `datasets.IterableDataset`: the tokenizer's columns (`input_ids`, `attention_mask`, ...) and `labels`; every
        other column of the file is dropped.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1; got max_length={max_length}. Set `max_length` to >= 1.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got batch_size={batch_size}. Set `batch_size` to >= 1.")

    def tokenize(batch):
        encoded = dict(tokenize_texts(tokenizer, batch[text_column], max_length, long_text_options))
        encoded[LABELS_COLUMN] = [IGNORE_INDEX] * len(batch[text_column])
        return encoded

    # the columns the tokenizer returns (a stream's own columns may be unknown before it is read, e.g. for csv)
    produced = list(tokenize_texts(tokenizer, ["a"], max_length, long_text_options))
    columns = [*produced, LABELS_COLUMN] + ([text_column] if keep_text else [])
    return stream.map(tokenize, batched=True, batch_size=batch_size).select_columns(columns)


def stream_batches(
    stream: IterableDataset,
    tokenizer,
    batch_size: int,
    *,
    num_workers: int = 0,
    pad_to_multiple_of: int | None = None,
) -> DataLoader:
    """
    Padded batches of a tokenised stream (see [`tokenize_stream`]) for a loop of one's own.

    Under several processes (`accelerate launch`) each process reads its own part (`split_dataset_by_node`): whole
    files when their number divides evenly among the processes, else every `num_processes`-th row of each file.

    Args:
        stream (`datasets.IterableDataset`): tokenised rows, without the text column.
        tokenizer ([`PreTrainedTokenizerBase`]): pads each batch to its longest row.
        batch_size (`int`): rows per batch (per process).
        num_workers (`int`, *optional*, defaults to 0): DataLoader worker processes (useful with several files).
        pad_to_multiple_of (`int`, *optional*): pad lengths to a multiple of this (e.g. 8 for tensor cores).

    Returns:
        `torch.utils.data.DataLoader`: dicts of `torch.Tensor`, as a `DataCollatorWithPadding` makes them.
    """
    state = PartialState()
    if state.num_processes > 1:
        stream = split_dataset_by_node(stream, rank=state.process_index, world_size=state.num_processes)
    collate = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)
    return DataLoader(stream, batch_size=batch_size, collate_fn=collate, num_workers=num_workers)
