"""Model cards for students: the metadata (`huggingface_hub.ModelCardData`, a `model-index` with every evaluated
domain) and the markdown body (the cross-domain table, speed and size, distillation settings, limitations under
domain shift, how it was produced).

Every number comes from the run's files (`results.json` of an experiment or evaluation, else the folder's
`metrics.json`) and is formatted by `hfkd.evaluation.report`; a missing part is said to be missing, never filled in.
"""

from __future__ import annotations

import json
import os
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers.utils import logging

from ..evaluation.report import MISSING, format_ratio, format_score, markdown_table, with_interval
from ..fingerprints import model_fingerprint
from ..inference import safetensors_size

logger = logging.get_logger(__name__)


CARD_FILE = "README.md"


# An ONNX export of the student (`hfkd export`, see hfkd/hub/export.py): its folder inside the student's, optimum's
# file names, hfkd's report of how the files were made and how they scored, and the name of the PyTorch model they
# are checked against. The card shows the report; a push uploads the folder.
EXPORT_DIR = "onnx"
ONNX_FILE = "model.onnx"
INT8_FILE = "model_quantized.onnx"
EXPORT_REPORT = "export_report.json"
EXPORT_TABLE = "export_report.md"
REFERENCE = "pytorch-fp32"


# builtin models -> (the Hub model they are a copy of, its license)
BUILTIN_ORIGINS = {"builtin:minilm-l6": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0")}


def read_json(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return {}


def base_model_of(name_or_path: str | None, _depth: int = 0) -> str | None:
    """The Hub id a model comes from: itself for a Hub id, the original of a builtin, and for a local folder written
    by hfkd the model it was fine-tuned from (read from its `hfkd_run.json` or `hfkd_stage.json`); else None."""
    if not name_or_path or _depth > 4:
        return None
    if name_or_path in BUILTIN_ORIGINS:
        return BUILTIN_ORIGINS[name_or_path][0]
    if name_or_path.startswith("builtin:"):
        return None  # generated test models have no Hub original
    if not os.path.isdir(name_or_path):
        return name_or_path
    run = read_json(os.path.join(name_or_path, "hfkd_run.json")).get("config", {})
    stage = read_json(os.path.join(name_or_path, "hfkd_stage.json")).get("key", {})
    origin = run.get("teacher_model_name_or_path") or run.get("model_name_or_path") or stage.get("model")
    return base_model_of(origin, _depth + 1)


def find_block(results: dict[str, Any], folder: str, model: str | None = None) -> tuple[dict[str, Any], str]:
    """The results block and model name that `folder` is (by stage path or model path), or `model` in the only
    block. Raises `ValueError` naming what is there when nothing matches."""
    same = os.path.realpath(folder)
    for block in results.get("blocks") or []:
        for name, stage in (block.get("stages") or {}).items():
            for run in stage.get("seeds") or [stage]:  # the model trained with each seed
                if run.get("path") and os.path.realpath(run["path"]) == same and name in block.get("metrics", {}):
                    return block, name
        for name, info in (results.get("models") or {}).items():
            path = info.get("path")
            if path and os.path.isdir(path) and os.path.realpath(path) == same and name in block.get("metrics", {}):
                return block, name
    blocks = results.get("blocks") or []
    if model and len(blocks) == 1 and model in blocks[0].get("metrics", {}):
        return blocks[0], model
    names = sorted({n for b in blocks for n in b.get("metrics", {})})
    raise ValueError(
        f"The results do not describe the model in {folder!r}; name it with --model (one of {names}) or pass the "
        "results of the run that made it."
    )


def _run_block(folder: str) -> tuple[dict[str, Any], str]:
    """A one-domain-column block from a `scripts/distill.py` folder: the student's and the teacher's source test
    scores from their `metrics.json`."""
    run = read_json(os.path.join(folder, "hfkd_run.json"))
    domain = "+".join(run.get("source_domains") or ["source"])
    cells = {}
    teacher = run.get("config", {}).get("teacher_model_name_or_path")
    for name, path in (("student", folder), ("teacher", teacher)):
        metrics = read_json(os.path.join(path, "metrics.json")) if path and os.path.isdir(path) else {}
        if "test_accuracy" in metrics:
            n = metrics.get("test_n")
            cells[name] = {
                domain: {"accuracy": metrics["test_accuracy"], "macro_f1": metrics["test_macro_f1"], "n": n}
            }
    block = {"domains": [domain], "source_domains": [domain], "target_domains": [], "metrics": cells, "speed": {}}
    return block, "student"


def _size(folder: str | None, block: dict[str, Any], model: str | None) -> dict[str, int] | None:
    """`{"parameters", "bytes"}` of a model: read from its weights when the folder has them, else as the run's
    results recorded them (a card remade from `results.json` alone)."""
    size = safetensors_size(folder)
    speed = (block.get("speed") or {}).get(model) or {}
    if size is None and speed.get("parameters") and speed.get("weights_bytes"):
        size = {"parameters": speed["parameters"], "bytes": speed["weights_bytes"]}
    return size


def eval_results(block: dict[str, Any], model: str, dataset: str) -> list[EvalResult]:
    """`model-index` entries: accuracy and macro-F1 of `model` on each domain, on the split(s) it was scored on."""
    entries = []
    for domain in block.get("domains") or []:
        cell = (block.get("metrics", {}).get(model) or {}).get(domain)
        if not cell:
            continue
        common = dict(
            task_type="text-classification",
            task_name="Text Classification",
            dataset_type=dataset,
            dataset_name=f"{dataset} ({domain})",
            dataset_config=domain,
            dataset_split="+".join(scored_splits(block, domain)),
        )
        entries.append(
            EvalResult(**common, metric_type="accuracy", metric_name="Accuracy", metric_value=cell["accuracy"])
        )
        entries.append(
            EvalResult(
                **common,
                metric_type="f1",
                metric_name="Macro-F1",
                metric_value=cell["macro_f1"],
                metric_args={"average": "macro"},
            )
        )
    return entries


def scored_splits(block: dict[str, Any], domain: str) -> list[str]:
    """The splits a block scored `domain` on (`["test"]` for results written before targets got more rows)."""
    return ((block.get("evaluation_rows") or {}).get("domains") or {}).get(domain, {}).get("splits") or ["test"]


def make_model_card(
    folder: str, results: dict[str, Any] | None = None, model: str | None = None, repo_id: str | None = None
) -> ModelCard:
    """The card of the student in `folder`, from `results` (an experiment's or evaluation's `results.json`) when given,
    else from the folder's own run files. `repo_id` names the model in the card (default: the folder's name)."""
    if results is not None:
        block, model = find_block(results, folder, model)
        config = dict(results.get("config") or {})
        teacher = results.get("teacher")
        teacher_path = (block.get("stages", {}).get(teacher) or {}).get("path") if teacher else None
        command = results.get("command")
        dataset = str(results.get("dataset") or config.get("dataset") or "custom")
    else:
        block, model = _run_block(folder)
        run = read_json(os.path.join(folder, "hfkd_run.json"))
        config, command, teacher = dict(run.get("config") or {}), run.get("command"), "teacher"
        teacher_path = config.get("teacher_model_name_or_path")
        dataset = str(config.get("dataset") or "custom")
    student_config = read_json(os.path.join(folder, "config.json"))
    origin = (student_config.get("hfkd_student") or {}).get("teacher") or teacher_path
    base = base_model_of(teacher_path) or base_model_of(config.get("model_name_or_path")) or base_model_of(origin)
    license_ = next((lic for hub_id, lic in BUILTIN_ORIGINS.values() if hub_id == base), None)
    name = repo_id or os.path.basename(os.path.abspath(folder))
    facts = {
        "name": name,
        "repo_id": repo_id,
        "model": model,
        "teacher": teacher,
        "base_model": base,
        "dataset": dataset,
        "block": block,
        "config": config,
        "command": command,
        "labels": list((student_config.get("id2label") or {}).values()),
        "student": student_config.get("hfkd_student") or {},
        "size": {"student": _size(folder, block, model), "teacher": _size(teacher_path, block, teacher)},
        "folder": folder,
        "from_results": results is not None,
        "hardware": ((results or {}).get("hardware") or {}).get("description"),
        "versions": (results or {}).get("versions")
        or read_json(os.path.join(folder, "hfkd_run.json")).get("versions"),
        "export": read_json(os.path.join(folder, EXPORT_DIR, EXPORT_REPORT)),
    }
    data = ModelCardData(
        model_name=name,
        base_model=base,
        datasets=[dataset] if "/" in dataset and not os.path.exists(dataset) else None,  # Hub dataset ids only
        eval_results=eval_results(block, model, dataset) or None,
        library_name="transformers",
        pipeline_tag="text-classification",
        license=license_,
        tags=["hfkd", "knowledge-distillation", "text-classification", "domain-shift"],
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{card_body(facts)}")


def write_model_card(
    folder: str, results: dict[str, Any] | None = None, model: str | None = None, repo_id: str | None = None
) -> str:
    """Write the card (see [`make_model_card`]) to `<folder>/README.md`; returns its path."""
    path = os.path.join(folder, CARD_FILE)
    make_model_card(folder, results, model, repo_id).save(path)
    return path


# the settings shown under "How it was produced", in this order, when the config has them
CONFIG_KEYS = (
    "dataset", "source_domains", "target_domains", "mode", "model_name_or_path", "teacher_model_name_or_path",
    "student_num_layers", "student_layer_ids", "student_architecture", "temperature", "alpha", "distillation_loss",
    "unlabeled_ratio", "target_domain_weights", "max_length", "max_train_samples", "num_train_epochs", "learning_rate",
    "per_device_train_batch_size", "gradient_accumulation_steps", "warmup_steps", "weight_decay", "seed",
)  # fmt: skip


TEACHER_OUTPUTS = {
    "online": "online: the teacher's forward pass on every training step",
    "cache": "cached: computed once before training, keyed by the teacher's weights, tokenizer and the data",
    "auto": "cached: computed once before training, keyed by the teacher's weights, tokenizer and the data",
}


def _mb(size: dict | None) -> str:
    return MISSING if not size else f"{size['bytes'] / 1e6:.1f} MB"


def _millions(size: dict | None) -> str:
    return MISSING if not size else f"{size['parameters'] / 1e6:.1f}M"


def student_vs_teacher(facts: dict[str, Any]) -> dict[str, Any]:
    """Source and target means of macro-F1 for the student and the teacher, and the worst target domain."""
    block, model, teacher = facts["block"], facts["model"], facts["teacher"]
    metrics = block.get("metrics") or {}

    def mean(name: str, domains: list[str]) -> float | None:
        values = [(metrics.get(name) or {}).get(d, {}).get("macro_f1") for d in domains]
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    sources, targets = block.get("source_domains") or [], block.get("target_domains") or []
    cells = metrics.get(model) or {}
    worst = min(targets, key=lambda d: cells.get(d, {}).get("macro_f1", 1.0)) if targets and cells else None
    return {
        "source": mean(model, sources),
        "target": mean(model, targets),
        "teacher_source": mean(teacher, sources) if teacher else None,
        "teacher_target": mean(teacher, targets) if teacher else None,
        "worst": worst,
        "worst_f1": cells.get(worst, {}).get("macro_f1") if worst else None,
    }


def _results(facts: dict[str, Any]) -> list[str]:
    block, model, teacher = facts["block"], facts["model"], facts["teacher"]
    metrics, sources = block.get("metrics") or {}, set(block.get("source_domains") or [])
    others = [n for n in (teacher, "baseline") if n and n != model and n in metrics]
    header = ["domain", f"{model} macro-F1", *(f"{n} macro-F1" for n in others)]
    header += ["retention"] * bool(teacher in metrics) + [f"{model} accuracy", "rows"]
    rows = []
    for domain in block.get("domains") or []:
        cell = (metrics.get(model) or {}).get(domain) or {}
        score = with_interval(cell.get("macro_f1"), (cell.get("intervals") or {}).get("macro_f1"))
        row = [f"{domain} (source)" if domain in sources else domain, score]
        row += [format_score((metrics[n].get(domain) or {}).get("macro_f1")) for n in others]
        if teacher in metrics:
            t = (metrics[teacher].get(domain) or {}).get("macro_f1")
            row.append(format_ratio(cell["macro_f1"] / t) if t and cell.get("macro_f1") is not None else MISSING)
        rows.append(row + [format_score(cell.get("accuracy")), cell.get("n") or MISSING])
    splits = {d: "+".join(scored_splits(block, d)) for d in block.get("domains") or []}
    target_splits = sorted({splits[d] for d in block.get("target_domains") or []})
    where = "Test split of every domain"
    if target_splits and target_splits != ["test"]:
        where = f"The source's test split, every other domain's {' and '.join(target_splits)} rows"
    intro = (
        f"{where}; the source is what the model was trained on, the others it never saw labelled. "
        f"Retention = {model}'s macro-F1 / the teacher's on the same domain."
    )
    if any("intervals" in (c or {}) for c in (metrics.get(model) or {}).values()):
        intro += " In brackets: the 95 % interval over the rows (and training seeds, when there were several)."
    verdicts = [
        c
        for c in block.get("comparisons") or []
        if c.get("a") == model and c.get("metric") == "target_mean_macro_f1" and c.get("b") in others
    ]
    for c in verdicts:
        words = {"better": "better than", "worse": "worse than"}.get(c["verdict"], "not significantly different from")
        intro += (
            f" On the target mean, {model} is {words} `{c['b']}` ({c['diff']:+.3f} macro-F1, 95 % interval "
            f"[{c['ci_low']:+.2f}, {c['ci_high']:+.2f}], paired bootstrap p = {c['p']:.3f})."
        )
    if "baseline" in others:
        intro += (
            " `baseline` is the same student (the teacher's layers and head), fine-tuned on the source labels with "
            "no teacher term."
        )
    estimated = (block.get("summary") or {}).get(model, {}).get("label_free")
    if estimated:
        intro += (
            f" Without target labels, hfkd's confidence-based estimate (ATC) of {model}'s target-mean macro-F1 is "
            f"{format_score(estimated['target_mean_macro_f1'])}; on these targets it was off by "
            f"{format_score(estimated['mean_abs_error_macro_f1'])} on average, a guide to how far to trust it on "
            "text that has no labels."
        )
    if not block.get("target_domains"):
        intro += (
            " Only the source domain was evaluated: run `scripts/cross_domain.py` or `scripts/evaluate_models.py` for "
            "other domains, then `hfkd card` with `--results` to put them here."
        )
    return ["## Results across domains", "", intro, "", *markdown_table(header, rows, numbers=True)]


def _speed(facts: dict[str, Any]) -> list[str]:
    speed, model = facts["block"].get("speed") or {}, facts["model"]
    size, student = facts["size"], facts["student"]
    up = (speed.get(model) or {}).get("speedup_vs_teacher")
    rate = (speed.get(model) or {}).get("samples_per_second")
    rows = [
        ["encoder layers", len(student.get("layer_ids") or []) or MISSING, student.get("num_teacher_layers", MISSING)],
        ["parameters", _millions(size["student"]), _millions(size["teacher"])],
        ["weights on disk", _mb(size["student"]), _mb(size["teacher"])],
        ["inference speed-up (measured)", f"{up:.2f}×" if up else MISSING, "1.00×" if up else MISSING],
    ]
    lines = ["## Speed and size", "", *markdown_table(["", "student", "teacher"], rows, numbers=True)]
    if up:
        where = facts.get("hardware") or "the run's machine"
        lines += [f"Speed-up: test-set inference rows per second ({rate:.0f} for the student), on {where}.", ""]
    else:
        lines += ["Speed was not measured for this run (`scripts/evaluate_models.py` measures it).", ""]
    return lines


def export_tables(report: dict[str, Any]) -> list[str]:
    """The lines that show an export report (`hfkd export`): the gate's verdict, the per-domain table (each file's
    macro-F1, agreement with the PyTorch model and paired macro-F1 difference with its 95 % interval) and speed and
    size. Shared by `export_report.md`, the command's output and the card."""
    gate, files = report.get("gate") or {}, list(report.get("files") or {})
    if not gate or not report.get("domains"):
        return [f"The exported files ({', '.join(files) or 'none'}) were not checked yet (run `hfkd export`).", ""]
    failures = gate.get("failures") or []
    verdict = "**passed**" if gate.get("passed") else f"**failed** ({len(failures)} failure(s), marked ✗)"
    lines = [
        f"Gate: every exported file against the PyTorch fp32 model on every domain, agreement of their predictions "
        f">= {gate['min_agreement']} and the upper bound of the paired 95 % bootstrap interval of the macro-F1 "
        f"difference >= -{gate['max_macro_f1_drop']}: {verdict}.",
        "",
    ]
    header = ["domain", "rows", "PyTorch fp32 macro-F1"]
    for name in files:
        header += [f"{name} macro-F1", f"{name} agreement", f"{name} Δ macro-F1 [95 %]"]
    rows = []
    for domain, row in report["domains"].items():
        cells = [f"{domain} (source)" if row.get("source") else domain, row["n"]]
        cells.append(format_score(row[REFERENCE]["macro_f1"]))
        for name in files:
            cell = row.get(name) or {}
            diff = cell.get("macro_f1_diff") or {}
            interval = f"{diff['diff']:+.3f} [{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}]" if diff else MISSING
            failed = cell.get("failed") or []  # a figure off its bound is marked
            agreement = format_score(cell.get("agreement")) + " ✗" * ("agreement" in failed)
            interval += " ✗" * ("macro_f1_diff_ci_high" in failed)
            cells += [format_score(cell.get("macro_f1")), agreement, interval]
        rows.append(cells)
    lines += markdown_table(header, rows, numbers=True)
    speed = report.get("speed") or {}
    reference = report.get("reference") or {}
    size = [["PyTorch (model.safetensors)", "fp32", _mb_of(reference.get("bytes")), *_rate(speed.get(REFERENCE))]]
    for name in files:
        info = report["files"][name]
        size.append([name, info.get("precision", MISSING), _mb_of(info.get("bytes")), *_rate(speed.get(name))])
    lines += markdown_table(["file", "precision", "size on disk", "rows/s", "vs PyTorch fp32"], size, numbers=True)
    first, machine = speed.get(REFERENCE) or {}, report.get("hardware") or "the machine of the check"
    lines += [
        f"Speed: rows per second of the forward passes over the gate's {first.get('rows', MISSING)} rows (batch "
        f"{first.get('batch_size', MISSING)}, sorted by length), on {machine}; checked "
        f"{report.get('checked', MISSING)}.",
        "",
    ]
    return lines


def _mb_of(size: int | None) -> str:
    return MISSING if not size else f"{size / 1e6:.1f} MB"


def _rate(speed: dict[str, Any] | None) -> list[str]:
    speed = speed or {}
    rate, up = speed.get("samples_per_second"), speed.get("speedup_vs_reference")
    return [f"{rate:.0f}" if rate else MISSING, f"{up:.2f}×" if up else MISSING]


def _export(facts: dict[str, Any]) -> list[str]:
    """The ONNX export in `onnx/` (`hfkd export`), when there is one: how its files were made and how they score."""
    report = facts.get("export") or {}
    if not report.get("files"):
        return []
    files = report["files"]
    made = []
    for name, info in files.items():
        if info.get("precision") == "int8":
            quantization = info.get("quantization") or {}
            per = "one scale per output channel" if quantization.get("per_channel") else "one scale per tensor"
            kept = quantization.get("fp32_modules")
            made.append(
                f"`{EXPORT_DIR}/{name}` (dynamic INT8 with onnxruntime: int8 weights, {per}, activations quantized "
                f"on the fly{f'; kept in fp32: {kept}' if kept else ''})"
            )
        else:
            opset = f", opset {info['opset']}" if info.get("opset") else ""
            made.append(f"`{EXPORT_DIR}/{name}` (fp32, `torch.onnx.export` with the dynamo exporter{opset})")
    lines = [
        "## ONNX export",
        "",
        f"`{EXPORT_DIR}/` holds this model for onnxruntime, in optimum's layout (config and tokenizer beside the "
        f"files), made with `hfkd export`: {' and '.join(made)}. They were checked against the PyTorch model on the "
        "rows of the table above.",
        "",
    ]
    fingerprint = report.get("student_fingerprint")
    if fingerprint and os.path.isdir(facts["folder"]) and fingerprint != model_fingerprint(facts["folder"]):
        lines += [
            "**These files were exported from other weights than this folder's**: export again "
            f"(`hfkd export {facts['folder']}`) before using them.",
            "",
        ]
    lines += export_tables(report)
    where = facts["repo_id"] or facts["folder"]
    failed = {f["file"] for f in (report.get("gate") or {}).get("failures") or []}
    name = INT8_FILE if INT8_FILE in files and INT8_FILE not in failed else ONNX_FILE  # the smallest file that passed
    load = (
        [f'path = hf_hub_download("{where}", "{EXPORT_DIR}/{name}")']
        if facts["repo_id"]
        else [f'path = "{os.path.join(where, EXPORT_DIR, name)}"']
    )
    lines += ["```python", "import onnxruntime", "from transformers import AutoTokenizer"]
    lines += ["from huggingface_hub import hf_hub_download"] * bool(facts["repo_id"]) + ["", *load]
    tokenizer = f'"{where}", subfolder="{EXPORT_DIR}"' if facts["repo_id"] else f'"{os.path.join(where, EXPORT_DIR)}"'
    lines += [
        f"tokenizer = AutoTokenizer.from_pretrained({tokenizer})",
        "session = onnxruntime.InferenceSession(path)",
        'inputs = tokenizer(["two hours on the tarmac, again"], return_tensors="np")',
        "logits = session.run(None, {i.name: inputs[i.name] for i in session.get_inputs()})[0]",
        "```",
        "",
    ]
    return lines


def _settings(facts: dict[str, Any]) -> list[str]:
    config, student, block = facts["config"], facts["student"], facts["block"]
    adaptive = facts["model"] in ("adaptive", "self_trained")
    ids = student.get("layer_ids")
    layers = (
        f"{ids} of {student.get('num_teacher_layers', '?')} ({student.get('architecture', 'same')})"
        if ids
        else MISSING
    )
    if facts["model"] == "intermediate":
        weights = {
            "hidden": config.get("intermediate_hidden_weight"),
            "attention": config.get("intermediate_attention_weight"),
        }
    else:
        weights = {k: config.get(f"{k}_weight") for k in ("hidden", "attention", "embedding")}
    kinds = {"hidden": config.get("hidden_loss"), "attention": config.get("attention_loss"), "embedding": "mse"}
    terms = ", ".join(f"{k} ({kinds[k]}) × {w}" for k, w in weights.items() if w)
    if terms:
        terms += f"; layer map {config.get('layer_map', 'auto')}"
    unlabeled = "none"
    if adaptive:
        unlabeled = (
            f"{', '.join(block.get('target_domains') or [])}; {config.get('unlabeled_ratio')} rows per source row"
        )
        if config.get("target_domain_weights"):
            unlabeled += f", weights {config['target_domain_weights']}"
    if facts["model"] == "self_trained":
        unlabeled += (
            f"; the teacher's most confident {config.get('self_training_fraction')} of each predicted class there as "
            f"hard labels, {config.get('self_training_rounds')} round(s)"
        )
    rows = [
        ["teacher", f"`{facts['base_model'] or MISSING}` fine-tuned on the source domain(s)"],
        ["temperature", config.get("temperature", MISSING)],
        ["alpha (weight of the distillation term)", config.get("alpha", MISSING)],
        ["distillation loss", config.get("distillation_loss", MISSING)],
        ["layers kept", layers],
        ["source domains", ", ".join(block.get("source_domains") or []) or MISSING],
        [
            "teacher outputs",
            TEACHER_OUTPUTS.get(config.get("teacher_logits", "online"), MISSING)
            if not terms
            else TEACHER_OUTPUTS["online"] + " (the intermediate terms need its hidden states)",
        ],
        ["intermediate-layer terms", terms or "none (logits only)"],
        ["unlabeled target text", unlabeled],
    ]
    if facts["model"] == "baseline":  # no teacher took part: only what the student is
        rows = [
            rows[4],
            rows[5],
            [
                "teacher",
                "no teacher term: the teacher's layers and head, fine-tuned on the source labels (the baseline)",
            ],
        ]
    return ["## Distillation settings", "", *markdown_table(["setting", "value"], rows, numbers=False)]


def _limitations(facts: dict[str, Any]) -> list[str]:
    s, labels = student_vs_teacher(facts), ", ".join(facts["labels"]) or "its labels"
    block = facts["block"]
    sources = ", ".join(block.get("source_domains") or []) or "its training data"
    lines = [
        "## Intended use and limitations",
        "",
        f"- Intended for: classifying short English text into {labels}, on text like its source domain ({sources}).",
    ]
    if s["target"] is not None:
        lines.append(
            f"- Under domain shift it loses accuracy: macro-F1 {format_score(s['source'])} on the source, "
            f"{format_score(s['target'])} on average over {len(block['target_domains'])} other domain(s) (teacher: "
            f"{format_score(s['teacher_source'])} and {format_score(s['teacher_target'])}); weakest on "
            f"{s['worst']} ({format_score(s['worst_f1'])})."
        )
    else:
        lines.append("- It was not evaluated outside its training domain: expect lower scores on other kinds of text.")
    lines += [
        "- Evaluate it on a labelled sample of your own text before relying on it; the scores above come from "
        "a few hundred rows per domain (see the row counts) and, unless the intervals say otherwise, one seed.",
        "- It inherits the biases of its teacher and of the training data.",
        "",
    ]
    return lines


def _produced(facts: dict[str, Any]) -> list[str]:
    config, versions = facts["config"], facts.get("versions") or {}

    def value(v: Any) -> str:
        return f"[{', '.join(map(str, v))}]" if isinstance(v, list) else str(v)

    shown = [f"{k}: {value(config[k])}" for k in CONFIG_KEYS if config.get(k) not in (None, [], "")]
    lines = ["## How it was produced", ""]
    if facts.get("command"):
        lines += ["```bash", facts["command"], "```", ""]
    where = "`results.json` of the experiment" if facts.get("from_results") else "`hfkd_run.json` in the run's folder"
    lines += [f"Main settings (the full config is in the {where}):", "", "```yaml", *shown, "```", ""]
    if versions:
        lines += [", ".join(f"{k} {versions[k]}" for k in ("hfkd", "transformers", "torch") if k in versions), ""]
    return lines


def card_body(facts: dict[str, Any]) -> str:
    student = facts["student"]
    k, n = len(student.get("layer_ids") or []), student.get("num_teacher_layers")
    what = f"a {k}-layer student of a {n}-layer teacher" if k and n else "a student"
    how = "knowledge distillation: the teacher's temperature-scaled soft targets mixed with the labels"
    if facts["model"] == "adaptive":
        how += ", on the source data plus the unlabeled text of the target domains"
    elif facts["model"] == "multi_teacher":
        how += ", from one teacher per source domain, their soft targets combined per row"
    elif facts["model"] == "self_trained":
        how += (
            ", on the source data plus the unlabeled text of the target domains, where the teacher's most confident "
            "predictions also serve as hard labels (self-training)"
        )
    elif facts["model"] == "baseline":
        how = "fine-tuning the teacher's layers and head on the labels, with no teacher term (the baseline)"
    intro = (
        f"{what.capitalize()} (`{facts['base_model'] or 'the teacher'}` fine-tuned on `{facts['dataset']}`), made "
        f"with hfkd by {how}."
    )
    usage = ["## Usage", "", "```python", "from transformers import pipeline", ""]
    usage += [f'classifier = pipeline("text-classification", model="{facts["repo_id"] or facts["folder"]}")']
    usage += ['classifier("two hours on the tarmac, again")', "```", ""]
    parts = [f"# {facts['name']}", "", intro, ""]
    parts += _results(facts) + _speed(facts) + _export(facts) + _settings(facts) + _limitations(facts)
    parts += _produced(facts) + usage
    return "\n".join(parts).rstrip() + "\n"
