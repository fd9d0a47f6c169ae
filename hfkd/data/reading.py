"""Reading a local data file (csv, tsv, json, jsonl, parquet) with `datasets`, and saying what is wrong with one that
cannot be read: the encoding (with the byte and line), the malformed JSON line, or a truly empty file.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import logging as std_logging
from pathlib import Path

from datasets import Dataset
from transformers.utils import logging

logger = logging.get_logger(__name__)


FILE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def read_file(path: Path, cache_dir: str | None, encoding: str = "utf-8") -> Dataset:
    fmt = FILE_FORMATS[path.suffix.lower()]
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(
            f"encoding={encoding!r} is not a text encoding Python knows; set `encoding` to one such as utf-8, latin-1 "
            "or cp1252."
        ) from None
    try:
        with _without_read_error_logs():
            if fmt == "parquet":
                return Dataset.from_parquet(str(path), cache_dir=cache_dir)
            if fmt == "json":
                return Dataset.from_json(str(path), cache_dir=cache_dir, encoding=encoding)
            # keep_default_na=False: a text that reads "NA" or "null" stays text instead of becoming a missing value.
            sep = "\t" if fmt == "tsv" else ","
            return Dataset.from_csv(str(path), cache_dir=cache_dir, sep=sep, keep_default_na=False, encoding=encoding)
    except Exception as err:  # `datasets` rarely says what is wrong (e.g. "An error occurred while generating ...")
        raise ValueError(_unreadable(path, fmt, encoding, err)) from err


class _DropErrors(std_logging.Filter):
    def filter(self, record: std_logging.LogRecord) -> bool:
        return record.levelno < std_logging.ERROR


@contextlib.contextmanager
def _without_read_error_logs():
    """`datasets` logs an ERROR for a file it cannot parse, often with a misleading reason ("Invalid encoding in
    string" for a line cut off in the middle), before it raises; `_unreadable` says what is wrong instead."""
    loggers = [std_logging.getLogger(f"datasets.packaged_modules.{m}.{m}") for m in ("csv", "json", "parquet")]
    drop = _DropErrors()
    for each in loggers:
        each.addFilter(drop)
    try:
        yield
    finally:
        for each in loggers:
            each.removeFilter(drop)


def _unreadable(path: Path, fmt: str, encoding: str, err: Exception) -> str:
    """Why `datasets` could not read a file, in words, with the fix: the file's encoding, an empty file, a JSON
    syntax error (with its line), or else the innermost error `datasets` met."""
    if fmt != "parquet":
        bad = _undecodable(path, encoding)
        if bad is not None:
            offset, line, byte = bad
            with open(path, "rb") as f:
                utf16 = f.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
            if utf16:
                value, note = "utf-16", " (the file starts with a UTF-16 byte order mark)"
            elif codecs.lookup(encoding).name == "utf-8":
                value, note = "latin-1", " (or cp1252 for files from Windows tools)"
            else:
                value, note = "utf-8", ""
            return (
                f"Could not read {path}: it is not {encoding} text (byte 0x{byte:02x} at byte offset {offset}, line "
                f"{line}). Set the file's encoding, e.g. `encoding: {value}` in the YAML config or `--encoding "
                f"{value}`{note}, or save the file as UTF-8."
            )
        text = path.read_text(encoding=encoding)
        if not text.strip():
            return f"{path} is empty. An empty file makes an empty domain: add rows to it or remove it."
        if fmt == "json":
            problem = _json_problem(text)
            if problem is not None:
                return f"Could not read {path}: {problem}."
    causes = []
    while err is not None and err not in causes:
        causes.append(err)
        err = err.__cause__ or err.__context__
    if any("corresponds to no data" in str(e) for e in causes):  # a header (csv) or `[]` (json), but no rows
        return f"{path} has no rows. An empty file makes an empty domain: add rows to it or remove it."
    reason = next((f"{type(e).__name__}: {e}" for e in reversed(causes) if str(e)), type(causes[-1]).__name__)
    return f"Could not read {path} as {fmt} ({reason}). Check that it is a valid {fmt} file."


def _undecodable(path: Path, encoding: str) -> tuple[int, int, int] | None:
    """(byte offset, line number, byte) of the first byte of `path` that `encoding` cannot decode, or None."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, number = 0, 0
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                decoder.decode(line)
            except UnicodeDecodeError as err:  # err.object: the bytes the decoder held back, then this line
                return offset - (len(err.object) - len(line)) + err.start, number, err.object[err.start]
            offset += len(line)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as err:  # a multi-byte character cut off at the end of the file
        return offset - len(err.object) + err.start, number, err.object[err.start]
    return None


def _json_problem(text: str) -> str | None:
    """Where a JSON or JSON-lines text breaks: `"line N is not valid JSON (...)"`, or None when it parses."""
    try:
        json.loads(text)
        return None  # one JSON document: its syntax is fine
    except json.JSONDecodeError as whole:
        document = whole
    lines = text.split("\n")  # JSON lines end with \n only (a string may hold \u2028 and the like)
    first = next((line for line in lines if line.strip()), "")
    try:
        json.loads(first)
    except json.JSONDecodeError:  # not JSON lines: one document (e.g. a list of rows) that breaks somewhere
        return f"line {document.lineno} is not valid JSON ({document.msg}: column {document.colno}). Fix the file"
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            return (
                f"line {number} is not valid JSON ({err.msg}: column {err.colno}); a JSON lines file holds one JSON "
                "object per line. Fix or remove that line"
            )
        if not isinstance(row, dict):
            return (
                f"line {number} holds a JSON {type(row).__name__}, not an object such as "
                '{"text": ..., "label": ...}. Fix or remove that line'
            )
    return None
