"""Benchmark: what distillation costs, what the teacher-logit cache saves, and how much faster the student is.

In one process, on the same data, student and hardware, measured in turn (a, b, c, a, b, c, ...) after warm-up steps,
several repetitions each (median and spread reported):

  (a) plain fine-tuning of the student (`transformers.Trainer`, labels only), samples/s;
  (b) on-the-fly distillation (`DistillationTrainer`, the teacher's forward pass on every step);
  (c) cached distillation (`DistillationTrainer` on precomputed teacher logits, no teacher in memory), plus the
      one-time cost of the cache and the number of epochs after which it has paid for itself;
  (d) teacher vs student inference: throughput at batch 32, latency at batch 1, parameters, size on disk, peak memory;
  (e) on-the-fly distillation with hidden-state (MSE) and attention (KL) terms, weight 1 each: what they cost;
  (f) (c) with the gradient-health callback at the default logging interval (20 steps): its overhead;
  (g) the student exported to ONNX, fp32 and dynamic INT8 (`hfkd export`'s code, run by onnxruntime on the CPU) vs the
      PyTorch fp32 teacher: throughput at batch 32, latency at batch 1, size on disk (CPU runs only; needs the
      export extra, `pip install "hfkd[export]"`, and is skipped with a note without it).

The default (embedded MiniLM-L6 teacher, 3-layer student, 1,024 airline tweets) takes a few minutes on 2 CPU cores:

    python scripts/benchmark.py
    python scripts/benchmark.py --device cuda --bf16 true        # on a GPU

Writes benchmark.json and benchmark.md to --output_dir (default runs/benchmark).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch
from transformers import DataCollatorWithPadding, HfArgumentParser, Trainer, TrainerCallback, TrainingArguments

from hfkd import DistillationArguments, DistillationTrainer
from hfkd.data.domains import load_domains, tokenize_domains
from hfkd.grad_health import add_gradient_health
from hfkd.hub.export import OnnxClassifier, export_onnx, quantize_int8, require_export_packages
from hfkd.launch import exit_on_bad_input, prepare_launch_environment, setup_logging
from hfkd.models import load_classifier, load_tokenizer
from hfkd.run_files import environment_info, hardware_info
from hfkd.students import student_from_teacher, student_tokenizer
from hfkd.teacher_logits import with_teacher_logits


@dataclass
class BenchmarkArguments:
    teacher: str = field(
        default="builtin:minilm-l6",
        metadata={"help": "Teacher model (its classification head is new if it has none: speed only)."},
    )
    student_num_layers: int = field(default=3, metadata={"help": "Layers of the student cut from the teacher."})
    dataset: str = field(default="tweets", metadata={"help": "Where the training texts come from."})
    domain: str = field(default="airline", metadata={"help": "Domain of the dataset to train on."})
    num_samples: int = field(default=1024, metadata={"help": "Training rows (the cache is computed on these)."})
    max_length: int = field(default=64, metadata={"help": "Truncate inputs to this many tokens."})
    batch_size: int = field(default=32, metadata={"help": "Training batch size (and inference throughput batch)."})
    warmup_steps: int = field(default=3, metadata={"help": "Steps run before the clock starts, in each repetition."})
    measure_steps: int = field(default=20, metadata={"help": "Steps timed in each repetition."})
    repeats: int = field(default=3, metadata={"help": "Repetitions of each training mode, interleaved."})
    latency_samples: int = field(default=64, metadata={"help": "Single examples timed for batch-1 latency."})
    device: str = field(default="cpu", metadata={"help": "'cpu' or 'cuda'."})
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision (GPUs)."})
    fp16: bool = field(default=False, metadata={"help": "fp16 mixed precision (GPUs)."})
    output_dir: str = field(default="runs/benchmark", metadata={"help": "Where benchmark.json / benchmark.md go."})
    seed: int = field(default=42, metadata={"help": "Seed of the student's initialisation and the data order."})
    probe: str | None = field(default=None, metadata={"help": "Internal: run one phase for its peak memory."})
    probe_dir: str | None = field(default=None, metadata={"help": "Internal: where the parent saved the models."})

    def __post_init__(self):
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device={self.device!r} is not valid; use 'cpu' or 'cuda'.")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' but torch sees no GPU; run with --device cpu or on a GPU machine.")
        if min(self.warmup_steps, self.measure_steps - 1, self.repeats - 1) < 0 or self.measure_steps < 1:
            raise ValueError("warmup_steps must be >= 0, measure_steps >= 1 and repeats >= 1.")


def make_parser() -> HfArgumentParser:
    return HfArgumentParser(BenchmarkArguments)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@contextmanager
def peak_memory(device: str, out: dict):
    """On a GPU, the peak of CUDA allocations above the start of the block, in MB. On the CPU, in-process figures
    would mostly show what the allocator already holds, so each phase is measured in a process of its own instead
    (see `probe_peak_rss`)."""
    if device != "cuda":
        yield
        return
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.memory_allocated()
    yield
    torch.cuda.synchronize()
    out["peak_memory_mb"] = (torch.cuda.max_memory_allocated() - start) / 2**20


MODES = ("plain", "online", "cached", "intermediate", "health")
PROBES = ("baseline", *MODES, "teacher", "student")


def probe_peak_rss(bench: BenchmarkArguments, folder: str) -> dict[str, float]:
    """Peak resident memory (MB) of a fresh process that runs only one phase, for each of `PROBES` ("baseline":
    the imports and the data alone)."""
    argv = []
    for key, value in asdict(bench).items():
        if key not in ("probe", "probe_dir"):
            argv += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    peaks = {}
    for mode in PROBES:
        cmd = [sys.executable, os.path.abspath(__file__), *argv, "--probe", mode, "--probe_dir", folder]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if proc.returncode != 0:
            raise RuntimeError(f"memory probe {mode!r} failed:\n{proc.stderr[-3000:]}")
        peaks[mode] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    return peaks


def _peak_rss_mb() -> float:
    """This process's peak RSS. Linux's VmHWM belongs to the process image since exec; `ru_maxrss` would also count
    the parent's memory that the child held between fork and exec."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux, bytes on macOS: a fallback


def run_probe(bench: BenchmarkArguments) -> dict:
    """One phase in this (fresh) process, on what the parent saved in `probe_dir`; prints the peak RSS as JSON."""
    from datasets import load_from_disk
    from transformers import AutoModelForSequenceClassification

    folder, mode = bench.probe_dir, bench.probe
    data = load_from_disk(os.path.join(folder, "cached" if mode in ("cached", "health") else "data"))
    texts = json.loads(open(os.path.join(folder, "texts.json")).read())
    if mode != "baseline":
        name = "teacher" if mode == "teacher" else "student"
        model = AutoModelForSequenceClassification.from_pretrained(os.path.join(folder, name))
        tokenizer = load_tokenizer(os.path.join(folder, name))
        if mode in ("teacher", "student"):
            inference(model, tokenizer, texts, bench)
        else:
            teacher = AutoModelForSequenceClassification.from_pretrained(os.path.join(folder, "teacher"))
            teacher = teacher if mode in ("online", "intermediate") else None
            train_once(mode, bench, model, teacher, data, data, tokenizer, os.path.join(folder, "out"))
    peak = {"peak_rss_mb": _peak_rss_mb()}
    print(json.dumps(peak))
    return peak


class StepClock(TrainerCallback):
    """Times the optimizer steps after the first `warmup` ones (from the start of one to the end of the last)."""

    def __init__(self, warmup: int, device: str):
        self.warmup, self.device, self.start, self.end = warmup, device, None, None

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:  # the first timed step starts now
            _sync(self.device)
            self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        _sync(self.device)
        self.end = time.perf_counter()


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def train_once(mode, bench, student, teacher, data, cached, tokenizer, folder) -> tuple[float, float]:
    """(samples/s over the timed steps, peak memory MB) of one repetition of a training mode."""
    common = dict(
        output_dir=folder, max_steps=bench.warmup_steps + bench.measure_steps,
        per_device_train_batch_size=bench.batch_size, learning_rate=5e-5, save_strategy="no", eval_strategy="no",
        logging_steps=20, report_to="none",
        use_cpu=bench.device == "cpu", bf16=bench.bf16, fp16=bench.fp16, seed=bench.seed, disable_tqdm=True,
    )  # fmt: skip
    clock, memory = StepClock(bench.warmup_steps, bench.device), {}
    model = copy.deepcopy(student)
    if mode == "plain":
        trainer = Trainer(
            model=model, args=TrainingArguments(**common), train_dataset=data, processing_class=tokenizer
        )
    else:
        extra = dict(hidden_weight=1.0, attention_weight=1.0) if mode == "intermediate" else {}
        cached_mode = mode in ("cached", "health")
        args = DistillationArguments(**common, teacher_logits="cache" if cached_mode else "online", **extra)
        if mode == "intermediate":  # its attention terms switch the teacher to eager attention: not the shared one
            teacher = copy.deepcopy(teacher)
        trainer = DistillationTrainer(
            model=model,
            teacher_model=None if cached_mode else teacher,
            args=args,
            train_dataset=cached if cached_mode else data,
            processing_class=tokenizer,
        )
    health = add_gradient_health(trainer) if mode == "health" else None
    trainer.add_callback(clock)
    with peak_memory(bench.device, memory):
        trainer.train()
    if health is not None:  # its own time as a share of the training time (warm-up steps included in both)
        SHARES.append(health.seconds / trainer.state.log_history[-1]["train_runtime"])
    return bench.measure_steps * bench.batch_size / (clock.end - clock.start), memory.get("peak_memory_mb")


SHARES: list[float] = []  # the gradient-health callback's share of training time, one per (f) repetition


@torch.inference_mode()
def inference(model, tokenizer, texts, bench, files: list[str] | None = None) -> dict:
    """Throughput at `batch_size`, median latency at batch 1, parameters, size on disk, peak memory. `files`: the
    files of a model that is not a PyTorch module (an ONNX file run by `OnnxClassifier`), for its size on disk."""
    device = torch.device(bench.device)
    model = model.to(device).eval()
    dtype = torch.bfloat16 if bench.bf16 else torch.float16 if bench.fp16 else None
    autocast = (
        (lambda: torch.autocast("cuda", dtype=dtype)) if dtype and bench.device == "cuda" else contextlib.nullcontext
    )
    collate = DataCollatorWithPadding(tokenizer)
    encoded = [tokenizer(t, truncation=True, max_length=bench.max_length) for t in texts]
    batches = [collate(encoded[i : i + bench.batch_size]) for i in range(0, len(encoded), bench.batch_size)]

    def run(batch):
        with autocast():
            model(**{k: v.to(device) for k, v in batch.items()})

    result: dict = {}
    with peak_memory(bench.device, result):
        for batch in batches[:2]:  # warm-up
            run(batch)
        _sync(bench.device)
        start = time.perf_counter()
        for batch in batches:
            run(batch)
        _sync(bench.device)
        result["samples_per_second_batch"] = len(encoded) / (time.perf_counter() - start)
        times = []
        for item in encoded[: bench.latency_samples]:
            single = collate([item])
            _sync(bench.device)
            start = time.perf_counter()
            run(single)
            _sync(bench.device)
            times.append(time.perf_counter() - start)
        result["latency_ms_b1"] = 1000 * statistics.median(times)
    if files:  # an exported model: its files are its size; it holds no torch parameters
        result["size_mb"] = sum(os.path.getsize(f) for f in files) / 1e6
        return result
    result["parameters"] = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        result["size_mb"] = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) / 1e6
    return result


ONNX_MODELS = ("student_onnx_fp32", "student_onnx_int8")


def exported_inference(student, tokenizer, texts, bench, folder) -> dict:
    """(g): the student exported to ONNX (fp32) and quantized to dynamic INT8 with hfkd export's functions, each run by
    onnxruntime on the CPU with torch's thread count, timed by `inference` on the same texts and batches."""
    fp32 = export_onnx(student, tokenizer, os.path.join(folder, "onnx"))
    int8, _ = quantize_int8(fp32)
    return {
        name: inference(OnnxClassifier(path, student.config), tokenizer, texts, bench, files=[path])
        for name, path in zip(ONNX_MODELS, (fp32, int8), strict=True)
    }


def main(bench: BenchmarkArguments) -> dict:
    if bench.probe:
        return run_probe(bench)
    SHARES.clear()
    torch.manual_seed(bench.seed)
    domains = load_domains(bench.dataset, [bench.domain], max_train_samples=bench.num_samples)
    labels = list(domains[bench.domain]["train"].features["label"].names)
    teacher = load_classifier(bench.teacher, label_names=labels).eval()
    tokenizer = load_tokenizer(bench.teacher)
    student = student_from_teacher(teacher, num_layers=bench.student_num_layers)
    s_tokenizer = student_tokenizer(tokenizer, student)
    tokenized = tokenize_domains(domains, s_tokenizer, max_length=bench.max_length, keep_text=True)
    train_text = tokenized[bench.domain]["train"]
    data = train_text.remove_columns("text")
    results: dict = {"config": asdict(bench), "hardware": hardware_info(), "versions": environment_info()}
    results["date"] = time.strftime("%Y-%m-%d %H:%M %Z")

    texts = domains[bench.domain]["train"]["text"][: max(bench.batch_size * 16, bench.latency_samples)]
    with tempfile.TemporaryDirectory() as folder:
        teacher_dir = os.path.join(folder, "teacher")
        teacher.save_pretrained(teacher_dir)  # the cache keys on a saved teacher's weights
        tokenizer.save_pretrained(teacher_dir)
        _sync(bench.device)
        start = time.perf_counter()
        mixed = "bf16" if bench.bf16 else "fp16" if bench.fp16 else "no"
        cached = with_teacher_logits(
            train_text, teacher_dir, labels, max_length=bench.max_length, teacher=teacher.to(bench.device),
            cache_dir=os.path.join(folder, "cache"), mixed_precision=mixed,
        )  # fmt: skip
        _sync(bench.device)
        cache_seconds = time.perf_counter() - start
        runs: dict = {mode: ([], []) for mode in MODES}
        for repeat in range(bench.repeats):
            for mode, (rates, memories) in runs.items():
                rate, memory = train_once(mode, bench, student, teacher, data, cached, s_tokenizer, folder)
                rates.append(rate)
                memories.append(memory)
                print(f"repeat {repeat + 1}/{bench.repeats} {mode:>6}: {rate:8.1f} samples/s")
        results["inference"] = {"teacher": inference(teacher, tokenizer, texts, bench)}
        results["inference"]["student"] = inference(student, s_tokenizer, texts, bench)
        results["export"] = {"measured": False}
        try:
            if bench.device != "cpu":
                raise RuntimeError(f"(g) runs on the CPU only (onnxruntime's CPU provider); device={bench.device}")
            require_export_packages("onnx", "onnxscript", "onnxruntime")
            results["inference"] |= exported_inference(student, s_tokenizer, texts, bench, folder)
            results["export"] = {"measured": True, "runtime": "onnxruntime (CPUExecutionProvider)"}
        except (ImportError, RuntimeError) as error:
            results["export"]["note"] = str(error)
            print(f"(g) not measured: {error}")
        if bench.device == "cpu":  # peak memory: one fresh process per phase
            student.save_pretrained(os.path.join(folder, "student"))
            s_tokenizer.save_pretrained(os.path.join(folder, "student"))
            data.save_to_disk(os.path.join(folder, "data"))
            cached.save_to_disk(os.path.join(folder, "cached"))
            with open(os.path.join(folder, "texts.json"), "w") as f:
                json.dump(texts, f)
            peaks = probe_peak_rss(bench, folder)
            results["memory"] = {"kind": "peak RSS of a process running only this phase, MB", **peaks}
            for mode in runs:
                runs[mode][1][:] = [peaks[mode]]
            for name in ("teacher", "student"):
                results["inference"][name]["peak_memory_mb"] = peaks[name]
    training = {m: {"samples_per_second": spread(r), "peak_memory_mb": max(mem)} for m, (r, mem) in runs.items()}
    rate = {m: training[m]["samples_per_second"]["median"] for m in training}
    saving = len(data) / rate["online"] - len(data) / rate["cached"]  # seconds per epoch
    results["training"] = training
    results["cache"] = {
        "seconds": cache_seconds,
        "rows": len(data),
        "epoch_seconds_saved": saving,
        "break_even_epochs": cache_seconds / saving if saving > 0 else None,
    }
    inf = results["inference"]
    results["ratios"] = {
        "cached_vs_plain": rate["cached"] / rate["plain"],
        "online_vs_plain": rate["online"] / rate["plain"],
        "cached_vs_online": rate["cached"] / rate["online"],
        "intermediate_vs_online": rate["intermediate"] / rate["online"],
        "grad_health_overhead": statistics.median(SHARES) if SHARES else None,
        "health_vs_cached": rate["health"] / rate["cached"],
        "student_vs_teacher_throughput": inf["student"]["samples_per_second_batch"]
        / inf["teacher"]["samples_per_second_batch"],
        "teacher_vs_student_latency_b1": inf["teacher"]["latency_ms_b1"] / inf["student"]["latency_ms_b1"],
    }
    int8, teacher = inf.get("student_onnx_int8"), inf["teacher"]  # (g); latency, size: below 1 is smaller
    results["ratios"] |= {
        "int8_student_vs_teacher_throughput": _ratio(int8, teacher, "samples_per_second_batch"),
        "int8_student_vs_teacher_latency_b1": _ratio(int8, teacher, "latency_ms_b1"),
        "int8_student_vs_teacher_size": _ratio(int8, teacher, "size_mb"),
    }
    targets = {"cached_vs_plain": (">=", 0.97), "online_vs_plain": (">=", 0.65)}
    targets |= {"student_vs_teacher_throughput": (">=", 1.9), "grad_health_overhead": ("<=", 0.03)}
    targets |= {"int8_student_vs_teacher_throughput": (">=", 5.0)}  # (g), on 2 CPU cores
    results["targets"] = {}
    for key, (op, bound) in targets.items():
        value = results["ratios"][key]
        met = value is not None and (value >= bound if op == ">=" else value <= bound)
        results["targets"][key] = {"op": op, "target": bound, "value": value, "met": met}
    os.makedirs(bench.output_dir, exist_ok=True)
    with open(os.path.join(bench.output_dir, "benchmark.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(bench.output_dir, "benchmark.md"), "w") as f:
        f.write(render(results))
    print(render(results))
    return results


def _ratio(a: dict | None, b: dict, key: str) -> float | None:
    """`a[key] / b[key]`; None when `a` was not measured."""
    return a[key] / b[key] if a else None


def memory_note(results: dict) -> str:
    memory = results.get("memory")
    if memory is None:
        return "Peak memory: CUDA allocations above the start of each phase."
    return (
        f"Peak memory: the {memory['kind']} (a process that only imports the libraries and loads the data peaks at "
        f"{memory['baseline']:.0f} MB)."
    )


def _mb(value) -> str:
    return "–" if value is None else f"{value:.0f} MB"


def render(results: dict) -> str:
    t, c, inf, r = results["training"], results["cache"], results["inference"], results["ratios"]
    cfg = results["config"]
    lines = [
        f"Benchmark of {results['date']} on {results['hardware']['description']}; teacher `{cfg['teacher']}`, "
        f"{cfg['student_num_layers']}-layer student, {c['rows']} rows of `{cfg['dataset']}/{cfg['domain']}`, batch "
        f"{cfg['batch_size']}, max_length {cfg['max_length']}, "
        f"{'bf16' if cfg['bf16'] else 'fp16' if cfg['fp16'] else 'fp32'}; {cfg['repeats']} repetitions of "
        f"{cfg['measure_steps']} timed steps after {cfg['warmup_steps']} warm-up steps.",
        "",
        "| training | samples/s (median) | min – max | vs plain | peak memory |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for mode, label in (("plain", "(a) plain fine-tuning"), ("online", "(b) on-the-fly distillation"),
                        ("cached", "(c) cached distillation"),
                        ("intermediate", "(e) on-the-fly + hidden-state and attention terms"),
                        ("health", "(f) (c) + gradient-health callback")):  # fmt: skip
        s = t[mode]["samples_per_second"]
        ratio = s["median"] / t["plain"]["samples_per_second"]["median"]
        lines.append(
            f"| {label} | {s['median']:.1f} | {s['min']:.1f} – {s['max']:.1f} | {ratio:.2f} | "
            f"{_mb(t[mode]['peak_memory_mb'])} |"
        )
    even = c["break_even_epochs"]
    lines += [
        "",
        f"Cache: {c['seconds']:.1f} s once for {c['rows']} rows; it saves {c['epoch_seconds_saved']:.1f} s per epoch "
        f"against (b), so it pays for itself after {f'{even:.2f}' if even is not None else 'never'} epochs.",
        "",
        f"Gradient health (f): the callback's own time is {100 * (r['grad_health_overhead'] or 0):.2f} % of the "
        f"training time (median over repetitions; the throughput ratio (f)/(c), {r['health_vs_cached']:.2f}, is "
        "within this machine's run-to-run noise).",
        "",
        "| inference | teacher | student | ratio |",
        "| --- | ---: | ---: | ---: |",
        f"| samples/s at batch {cfg['batch_size']} | {inf['teacher']['samples_per_second_batch']:.1f} | "
        f"{inf['student']['samples_per_second_batch']:.1f} | {r['student_vs_teacher_throughput']:.2f}× |",
        f"| latency at batch 1 (median) | {inf['teacher']['latency_ms_b1']:.2f} ms | "
        f"{inf['student']['latency_ms_b1']:.2f} ms | {r['teacher_vs_student_latency_b1']:.2f}× |",
        f"| parameters | {inf['teacher']['parameters'] / 1e6:.1f}M | {inf['student']['parameters'] / 1e6:.1f}M | "
        f"{inf['teacher']['parameters'] / inf['student']['parameters']:.2f}× |",
        f"| size on disk | {inf['teacher']['size_mb']:.1f} MB | {inf['student']['size_mb']:.1f} MB | "
        f"{inf['teacher']['size_mb'] / inf['student']['size_mb']:.2f}× |",
        f"| peak memory | {_mb(inf['teacher'].get('peak_memory_mb'))} | "
        f"{_mb(inf['student'].get('peak_memory_mb'))} | |",
        "",
        memory_note(results),
        "",
        *render_export(results),
        "| target | value | met |",
        "| --- | ---: | --- |",
    ]
    for name, target in results["targets"].items():
        value = "not measured" if target["value"] is None else f"{target['value']:.2f}"
        if name.endswith("overhead") and target["value"] is not None:
            value = f"{target['value']:.3f}"
        lines.append(f"| {name} {target['op']} {target['target']} | {value} | {'yes' if target['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


def render_export(results: dict) -> list[str]:
    """(g): the ONNX student, fp32 and INT8, against the PyTorch fp32 teacher (or why it was not measured)."""
    inf, r, cfg = results["inference"], results["ratios"], results["config"]
    if not (results.get("export") or {}).get("measured"):
        return [f"(g) ONNX export: not measured ({(results.get('export') or {}).get('note', 'no record')}).", ""]
    teacher, fp32, int8 = inf["teacher"], inf["student_onnx_fp32"], inf["student_onnx_int8"]

    def row(label, key, fmt, ratio):
        cells = [fmt(m[key]) for m in (teacher, fp32, int8)]
        return f"| {label} | {' | '.join(cells)} | {ratio:.2f}× |"

    return [
        "| (g) inference, CPU | teacher (PyTorch fp32) | student (ONNX fp32) | student (ONNX INT8) | INT8 student vs "
        "teacher |",
        "| --- | ---: | ---: | ---: | ---: |",
        row(f"samples/s at batch {cfg['batch_size']}", "samples_per_second_batch", "{:.1f}".format,
            r["int8_student_vs_teacher_throughput"]),
        row("latency at batch 1 (median)", "latency_ms_b1", "{:.2f} ms".format,
            r["int8_student_vs_teacher_latency_b1"]),
        row("size on disk", "size_mb", "{:.1f} MB".format, r["int8_student_vs_teacher_size"]),
        "",
        "(g): the student exported with `hfkd export`'s functions (`torch.onnx.export`, dynamo exporter; dynamic INT8 "
        "with onnxruntime, one scale per output channel) and run by onnxruntime's CPU provider with torch's thread "
        "count; the ratio column is INT8 / teacher (throughput: higher is better; latency and size: lower is better).",
        "",
    ]  # fmt: skip


if __name__ == "__main__":
    with exit_on_bad_input():  # a bad input: one `error: ...` line and exit code 1 (HFKD_TRACEBACK=1: the traceback)
        prepare_launch_environment()
        setup_logging()
        (arguments,) = make_parser().parse_args_into_dataclasses()
        main(arguments)
