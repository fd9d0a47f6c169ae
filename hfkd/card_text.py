"""The markdown body of a student's model card (see `hfkd.hub`), from the facts `hub.make_model_card` gathers.

Every number is formatted from those facts (`hfkd.report.format_score` / `format_ratio`); a missing part is said to
be missing, never filled in.
"""

from __future__ import annotations

from typing import Any

from .report import MISSING, format_ratio, format_score

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


def _table(header: list[str], rows: list[list[Any]], numbers: bool = True) -> list[str]:
    align = ["---"] + ["---:" if numbers else "---"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]


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
    header += ["retention"] * bool(teacher in metrics) + [f"{model} accuracy", "test rows"]
    rows = []
    for domain in block.get("domains") or []:
        cell = (metrics.get(model) or {}).get(domain) or {}
        row = [f"{domain} (source)" if domain in sources else domain, format_score(cell.get("macro_f1"))]
        row += [format_score((metrics[n].get(domain) or {}).get("macro_f1")) for n in others]
        if teacher in metrics:
            t = (metrics[teacher].get(domain) or {}).get("macro_f1")
            row.append(format_ratio(cell["macro_f1"] / t) if t and cell.get("macro_f1") is not None else MISSING)
        rows.append(row + [format_score(cell.get("accuracy")), cell.get("n") or MISSING])
    intro = (
        "Test split of every domain; the source is what the model was trained on, the others it never saw labelled. "
        f"Retention = {model}'s macro-F1 / the teacher's on the same domain."
    )
    if "baseline" in others:
        intro += (
            " `baseline` is the same student (the teacher's layers and head), fine-tuned on the source labels with "
            "no teacher term."
        )
    if not block.get("target_domains"):
        intro += (
            " Only the source domain was evaluated: run `scripts/cross_domain.py` or `scripts/evaluate_models.py` for "
            "other domains, then `hfkd card` with `--results` to put them here."
        )
    return ["## Results across domains", "", intro, "", *_table(header, rows)]


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
    lines = ["## Speed and size", "", *_table(["", "student", "teacher"], rows)]
    if up:
        where = facts.get("hardware") or "the run's machine"
        lines += [f"Speed-up: test-set inference rows per second ({rate:.0f} for the student), on {where}.", ""]
    else:
        lines += ["Speed was not measured for this run (`scripts/evaluate_models.py` measures it).", ""]
    return lines


def _settings(facts: dict[str, Any]) -> list[str]:
    config, student, block = facts["config"], facts["student"], facts["block"]
    adaptive = facts["model"] == "adaptive"
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
    return ["## Distillation settings", "", *_table(["setting", "value"], rows, numbers=False)]


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
        "small test splits (see the row counts) and one seed.",
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
    parts += _results(facts) + _speed(facts) + _settings(facts) + _limitations(facts) + _produced(facts) + usage
    return "\n".join(parts).rstrip() + "\n"
