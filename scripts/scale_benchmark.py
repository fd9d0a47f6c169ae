"""Scale benchmark: the peak memory of tokenising and feeding a large unlabeled pool (not the teacher's pass).

A synthetic file of `--num_rows` short texts (4 to 24 words drawn from the tokenizer's vocabulary) is written to a
temporary folder, then each path below tokenises every row and turns it into padded batches of `--batch_size`, each
in a fresh process whose peak resident memory (Linux VmHWM) is recorded:

  memory   the texts read into a Python list, `Dataset.from_dict`, `Dataset.map` (all in RAM: hfkd's path for domains)
  arrow    `Dataset.from_json` / `from_csv` (Arrow cache files, memory-mapped), `Dataset.map` writing a cache file
  stream   `hfkd.data.stream_texts` -> `tokenize_stream` -> `stream_batches` (`datasets` streaming, nothing on disk)

All three must yield the same rows and token ids (checked: row, token and id sums). The default, 1,000,000 rows,
takes about ten minutes on 2 CPU cores:

    python scripts/scale_benchmark.py
    python scripts/scale_benchmark.py --num_rows 20000 --output_dir /tmp/scale_benchmark

Writes scale_benchmark.json to --output_dir (default runs/scale_benchmark) and prints a table.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from datasets import Dataset
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import DataCollatorWithPadding, HfArgumentParser

from hfkd.data import stream_batches, stream_texts, tokenize_stream, tokenize_texts
from hfkd.data.reading import read_file
from hfkd.launch import exit_on_bad_input, prepare_launch_environment, setup_logging
from hfkd.models import load_tokenizer
from hfkd.run_files import environment_info, hardware_info

MODES = ("memory", "arrow", "stream")
FORMATS = ("jsonl", "csv")


@dataclass
class ScaleBenchmarkArguments:
    num_rows: int = field(default=1_000_000, metadata={"help": "Rows of the synthetic unlabeled pool."})
    file_format: str = field(default="jsonl", metadata={"help": "Format of the synthetic file: 'jsonl' or 'csv'."})
    tokenizer: str = field(default="builtin:minilm-l6", metadata={"help": "Tokenizer (a model name or folder)."})
    max_length: int = field(default=64, metadata={"help": "Truncate inputs to this many tokens."})
    batch_size: int = field(default=32, metadata={"help": "Rows per padded batch fed to a model."})
    modes: list[str] = field(
        default_factory=lambda: list(MODES), metadata={"help": f"Paths to measure, among {list(MODES)}."}
    )
    fresh_processes: bool = field(
        default=True,
        metadata={"help": "Run each path in a fresh process (its own peak memory); false: all in this one (tests)."},
    )
    work_dir: str | None = field(
        default=None, metadata={"help": "Where the synthetic file and Arrow caches go (default: a temporary folder)."}
    )
    output_dir: str = field(default="runs/scale_benchmark", metadata={"help": "Where scale_benchmark.json goes."})
    seed: int = field(default=42, metadata={"help": "Seed of the synthetic texts."})
    probe: str | None = field(default=None, metadata={"help": "Internal: run one path for its peak memory."})

    def __post_init__(self):
        if self.num_rows < 1:
            raise ValueError(f"num_rows must be at least 1; got num_rows={self.num_rows}. Set --num_rows to >= 1.")
        if self.file_format not in FORMATS:
            raise ValueError(f"file_format={self.file_format!r} is not valid; use one of {list(FORMATS)}.")
        unknown = [mode for mode in self.modes if mode not in MODES]
        if unknown or not self.modes:
            raise ValueError(f"modes={self.modes} is not valid; give one or more of {list(MODES)}.")
        if self.max_length < 1 or self.batch_size < 1:
            raise ValueError(
                f"max_length and batch_size must be at least 1; got {self.max_length} and {self.batch_size}."
            )


def make_parser() -> HfArgumentParser:
    return HfArgumentParser(ScaleBenchmarkArguments)


def synthetic_file(path: str, num_rows: int, tokenizer, seed: int, chunk: int = 100_000) -> None:
    """`num_rows` texts of 4 to 24 whole words of the tokenizer's vocabulary (short, tweet-like), as jsonl or csv."""
    words = sorted(w for w in tokenizer.get_vocab() if w.isascii() and w.isalpha() and len(w) > 2)
    rng = np.random.default_rng(seed)
    is_csv = path.endswith(".csv")
    with open(path, "w", encoding="utf-8") as f:
        if is_csv:
            f.write("id,text\n")
        for start in tqdm(range(0, num_rows, chunk), desc="Writing the synthetic pool", unit="chunk"):
            n = min(chunk, num_rows - start)
            lengths = rng.integers(4, 25, n)
            picks = rng.integers(0, len(words), int(lengths.sum()))
            ends = np.cumsum(lengths)
            for i, end in enumerate(ends):
                text = " ".join(words[j] for j in picks[end - lengths[i] : end])
                f.write(f"{start + i},{text}\n" if is_csv else json.dumps({"id": start + i, "text": text}) + "\n")


def _status_mb(*keys: str) -> dict[str, float | None]:
    """Fields of /proc/self/status in MB (None where unreadable, e.g. not on Linux). VmHWM is this process's peak
    resident memory since exec (`ru_maxrss` would also count what a forked child inherited)."""
    found: dict[str, float | None] = dict.fromkeys(keys)
    try:
        with open("/proc/self/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in found:
                    found[name] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return found


def _folder_mb(folder: str) -> float:
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files)
    return total / 2**20


def batches(mode: str, path: str, tokenizer, bench: ScaleBenchmarkArguments, cache_dir: str):
    """The padded batches of `path` along one path (see the module docstring)."""
    collate = DataCollatorWithPadding(tokenizer)

    def tokenize(batch):
        return tokenize_texts(tokenizer, batch["text"], bench.max_length)

    if mode == "stream":
        stream = tokenize_stream(stream_texts(path), tokenizer, bench.max_length)
        return stream_batches(stream, tokenizer, bench.batch_size)
    if mode == "arrow":
        table = read_file(Path(path), cache_dir=cache_dir)  # Arrow files, memory-mapped
        table = table.map(tokenize, batched=True, remove_columns=table.column_names, keep_in_memory=False)
    else:
        with open(path, encoding="utf-8", newline="") as f:
            if path.endswith(".csv"):
                texts = [row["text"] for row in csv.DictReader(f)]
            else:
                texts = [json.loads(line)["text"] for line in f]
        table = Dataset.from_dict({"text": texts})  # in memory, as hfkd builds its domains
        del texts
        table = table.map(tokenize, batched=True, remove_columns=["text"])
    return DataLoader(table, batch_size=bench.batch_size, collate_fn=collate)


def measure(mode: str, path: str, bench: ScaleBenchmarkArguments, work: str) -> dict:
    """Tokenise and batch every row of `path` along `mode` in this process: rows, tokens, id sum, seconds, memory."""
    tokenizer = load_tokenizer(bench.tokenizer)
    cache_dir = os.path.join(work, f"hf_cache_{mode}")
    start = time.perf_counter()
    rows = tokens = id_sum = 0
    for batch in tqdm(batches(mode, path, tokenizer, bench, cache_dir), desc=f"{mode}: batches", mininterval=10):
        mask = batch["attention_mask"]
        rows += len(mask)
        tokens += int(mask.sum())
        id_sum += int((batch["input_ids"] * mask).sum())
    seconds = time.perf_counter() - start
    memory = _status_mb("VmHWM", "RssAnon", "RssFile")
    return {
        "rows": rows,
        "tokens": tokens,
        "id_sum": id_sum,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds, 1),
        "peak_rss_mb": memory["VmHWM"],
        "end_rss_anon_mb": memory["RssAnon"],
        "end_rss_file_mb": memory["RssFile"],
        "disk_mb": round(_folder_mb(cache_dir), 1) if os.path.isdir(cache_dir) else 0.0,
    }


def _probe_argv(bench: ScaleBenchmarkArguments, mode: str, work: str) -> list[str]:
    argv = [sys.executable, os.path.abspath(__file__), "--probe", mode, "--work_dir", work]
    for key in ("num_rows", "file_format", "tokenizer", "max_length", "batch_size", "seed"):
        argv += [f"--{key}", str(getattr(bench, key))]
    return argv


def run_probe(bench: ScaleBenchmarkArguments) -> dict:
    """One path (or "baseline": the imports and the tokenizer only) in this fresh process; prints its figures as JSON
    on the last line of stdout."""
    if bench.probe == "baseline":
        load_tokenizer(bench.tokenizer)
        result = {"peak_rss_mb": _status_mb("VmHWM")["VmHWM"]}
    else:
        result = measure(bench.probe, pool_path(bench, bench.work_dir), bench, bench.work_dir)
    print(json.dumps(result))
    return result


def pool_path(bench: ScaleBenchmarkArguments, work: str) -> str:
    return os.path.join(work, f"pool-{bench.num_rows}.{bench.file_format}")


def main(bench: ScaleBenchmarkArguments) -> dict:
    if bench.probe:
        return run_probe(bench)
    work = bench.work_dir or tempfile.mkdtemp(prefix="hfkd-scale-")
    os.makedirs(work, exist_ok=True)
    try:
        path = pool_path(bench, work)
        synthetic_file(path, bench.num_rows, load_tokenizer(bench.tokenizer), bench.seed)
        results: dict = {"config": asdict(bench), "hardware": hardware_info(), "versions": environment_info()}
        results["date"] = time.strftime("%Y-%m-%d %H:%M %Z")
        results["file_mb"] = round(os.path.getsize(path) / 2**20, 1)
        modes = {}
        for mode in ("baseline", *bench.modes) if bench.fresh_processes else bench.modes:
            print(f"[scale_benchmark] {mode} ...", flush=True)
            if bench.fresh_processes:
                env = {**os.environ, "PYTHONUNBUFFERED": "1"}
                proc = subprocess.run(_probe_argv(bench, mode, work), stdout=subprocess.PIPE, text=True, env=env)
                if proc.returncode != 0:
                    raise RuntimeError(f"the {mode!r} probe failed (exit {proc.returncode}); its stderr is above.")
                modes[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
            else:
                modes[mode] = measure(mode, path, bench, work)
            shutil.rmtree(os.path.join(work, f"hf_cache_{mode}"), ignore_errors=True)
        results["modes"] = modes
        sums = {(modes[m]["rows"], modes[m]["tokens"], modes[m]["id_sum"]) for m in bench.modes}
        results["same_rows_and_ids"] = len(sums) == 1 and next(iter(sums))[0] == bench.num_rows
    finally:
        if bench.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    os.makedirs(bench.output_dir, exist_ok=True)
    with open(os.path.join(bench.output_dir, "scale_benchmark.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(render(results))
    if not results["same_rows_and_ids"]:
        raise RuntimeError("The paths disagree on the rows or token ids; see scale_benchmark.json.")
    return results


def render(results: dict) -> str:
    bench = results["config"]
    lines = [
        f"Scale benchmark of {results['date']} on {results['hardware']['description']}: {bench['num_rows']:,} rows "
        f"({results['file_mb']} MB of {bench['file_format']}), tokenizer `{bench['tokenizer']}`, max_length "
        f"{bench['max_length']}, batches of {bench['batch_size']}.",
        "",
        "| path | peak RSS | RSS at end: anonymous / file-backed | disk written | rows/s | rows | tokens |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode, m in results["modes"].items():
        if mode == "baseline":
            lines.append(f"| baseline (imports + tokenizer) | {_mb(m['peak_rss_mb'])} | | | | | |")
            continue
        lines.append(
            f"| {mode} | {_mb(m['peak_rss_mb'])} | {_mb(m['end_rss_anon_mb'])} / {_mb(m['end_rss_file_mb'])} | "
            f"{m['disk_mb']:.0f} MB | {m['rows_per_second']:,.0f} | {m['rows']:,} | {m['tokens']:,} |"
        )
    lines.append("")
    lines.append(f"Same rows and token ids on every path: {'yes' if results['same_rows_and_ids'] else 'NO'}.")
    return "\n".join(lines)


def _mb(value) -> str:
    return "n/a" if value is None else f"{value:,.0f} MB"


if __name__ == "__main__":
    with exit_on_bad_input():  # a bad input: one `error: ...` line and exit code 1 (HFKD_TRACEBACK=1: the traceback)
        prepare_launch_environment()
        setup_logging()
        (arguments,) = make_parser().parse_args_into_dataclasses()
        main(arguments)
