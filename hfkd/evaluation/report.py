"""What a person reads after a cross-domain run: `results.json` -> `report.md`, and the formatting every table of
hfkd shares (scores, ratios, markdown tables).

Every number in `report.md` is formatted from the results dict by [`format_score`] or [`format_ratio`], never typed;
a missing optional part shows as "–" instead of failing.
"""

from __future__ import annotations

import math
from typing import Any

from .results import RESULTS_FILE

REPORT_FILE = "report.md"
MISSING = "–"


def as_number(x: Any) -> float | None:
    """`x` as a float; None when it is missing, NaN or not a number."""
    try:
        x = None if x is None or isinstance(x, bool) else float(x)
    except (TypeError, ValueError):
        return None
    return None if x is None or math.isnan(x) else x


def format_score(x: float | None) -> str:
    """A score, gap, KL, ECE or agreement with three decimals (`0.812`); "–" when missing or NaN."""
    x = as_number(x)
    return MISSING if x is None else f"{round(x, 3) + 0.0:.3f}"  # + 0.0: no "-0.000"


def format_ratio(x: float | None) -> str:
    """A retention ratio as a percentage with one decimal (`0.973` -> `97.3%`); "–" when missing or NaN."""
    x = as_number(x)
    return MISSING if x is None else f"{round(100 * x, 1) + 0.0:.1f}%"


def _duration(seconds: Any) -> str:
    s = as_number(seconds)
    if s is None or s < 60:
        return MISSING if s is None else f"{s:.1f} s"
    minutes, s = divmod(round(s), 60)
    return f"{minutes} min {s} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _size(n: Any) -> str:
    n = as_number(n)
    return MISSING if n is None else f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def _megabytes(n: Any) -> str:
    """A size in bytes as megabytes (10^6 bytes) with one decimal; "–" when missing."""
    n = as_number(n)
    return MISSING if n is None else f"{n / 1e6:.1f} MB"


def lookup(mapping: Any, *keys: str) -> Any:
    """`mapping[k1][k2]...`, or None as soon as a level is missing or not a dict."""
    for key in keys:
        mapping = mapping.get(key) if isinstance(mapping, dict) else None
    return mapping


def model_names(results: dict, block: dict | None = None) -> list[str]:
    """Display order: the order of `results["models"]`, then any model that only the block's metrics name."""
    names = list(results.get("models") or {})
    return names + [n for n in (block or {}).get("metrics") or {} if n not in names]


def block_domains(block: dict) -> tuple[list[str], list[str], list[str]]:
    sources, targets = list(block.get("source_domains") or []), list(block.get("target_domains") or [])
    return list(block.get("domains") or dict.fromkeys(sources + targets)), sources, targets


def domain_label(domain: str, sources: list[str]) -> str:
    return f"{domain} (source)" if domain in sources else domain


def held_out(block: dict) -> str:
    return ", ".join(block.get("target_domains") or []) or str(block.get("name", "?"))


def block_setting(block: dict) -> str:
    _, sources, targets = block_domains(block)
    return f"{block.get('name', '?')}: {', '.join(sources) or MISSING} → {', '.join(targets) or MISSING}"


def markdown_table(header: list[str], rows: list[list[Any]], numbers: bool | None = None) -> list[str]:
    """The lines of a markdown table (and a blank line after it); `|` and newlines in cells are escaped.

    Args:
        numbers (`bool`, *optional*): right-align every column but the first (`True`), none (`False`), or, by default,
            each column whose cells all read as numbers.
    """

    def line(cells: list[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    if numbers is None:
        numeric = [
            j > 0 and all(str(r[j]).lstrip("*")[:1] in "-0123456789–" for r in rows) for j in range(len(header))
        ]
    else:
        numeric = [j > 0 and numbers for j in range(len(header))]
    return [line(header), line(["---:" if n else "---" for n in numeric]), *map(line, rows), ""]


def _table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    return [title, "", *markdown_table(header, rows)]


def _rows(names: list[str], raw: list[list[Any]], fmt, best: int = 0) -> list[list[str]]:
    """Formatted rows, the highest value of each of the first `best` columns in bold (ties all bold)."""
    rows = [[name] + [fmt(v) for v in values] for name, values in zip(names, raw, strict=True)]
    for j in range(best):
        column = [v for v in (as_number(values[j]) for values in raw) if v is not None]
        for row in rows if len(column) > 1 else []:
            row[j + 1] = f"**{row[j + 1]}**" if row[j + 1] == fmt(max(column)) else row[j + 1]
    return rows


def with_interval(value: Any, interval: dict | None, fmt=None) -> str:
    """`0.742 [0.70, 0.78]`: a figure and its 95 % interval (just the figure when there is none)."""
    fmt = fmt or format_score
    low, high = as_number(lookup(interval, "ci_low")), as_number(lookup(interval, "ci_high"))
    if as_number(value) is None or low is None or high is None:
        return fmt(value)
    if fmt is format_ratio:
        return f"{fmt(value)} [{low:.0%}, {high:.0%}]"
    return f"{fmt(value)} [{low:.2f}, {high:.2f}]"


FIGURE_NAMES = {"target_mean_macro_f1": "target-mean macro-F1", "in_domain_macro_f1": "in-domain macro-F1"}


def _scored_rows(results: dict) -> str:
    """A sentence on the rows each kind of domain was scored on (empty for results written before it was recorded)."""
    sources, targets = set(), set()
    for block in results.get("blocks") or []:
        for domain, info in (lookup(block, "evaluation_rows", "domains") or {}).items():
            splits = " and ".join(info.get("splits") or [])
            if domain in (block.get("source_domains") or []):
                cap = info.get("capped_at")
                sources.add(f"{splits} split" + (f" (at most {cap} rows)" if cap else ""))
            else:
                cap = info.get("capped_at")
                targets.add(f"{splits} rows" + (f" (at most {cap})" if cap else ""))
    if not sources and not targets:
        return ""
    text = f" A source domain is scored on its {', '.join(sorted(sources))}" if sources else ""
    if targets:
        text += ", a target" if text else " A target"
        text += f" on all its {', '.join(sorted(targets))} (its labels are never trained or selected on)"
    return text + "."


def _comparisons(block: dict, h: str, title: str = "Paired comparisons (same rows and seeds)") -> list[str]:
    """The paired comparisons of the mean figures, in words (of a block, or of the figures over blocks: `results`)."""
    rows = []
    for c in block.get("comparisons") or []:
        if c.get("metric") not in FIGURE_NAMES:
            continue  # the per-domain ones are in results.json
        diff = f"{c['diff']:+.3f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]"
        p = "< 0.001" if c["p"] < 0.001 else f"{c['p']:.3f}"
        verdict = {"better": f"**{c['a']} better**", "worse": f"**{c['a']} worse**"}.get(c["verdict"], c["verdict"])
        rows.append([f"{c['a']} vs {c['b']}", FIGURE_NAMES[c["metric"]], diff, p, verdict])
    if not rows:
        return []
    return _table(f"{h} {title}", ["models", "figure", "difference [95 % interval]", "p", "verdict"], rows)


def _label_free(block: dict, names: list[str], targets: list[str], h: str) -> list[str]:
    """Macro-F1 on each target estimated without its labels (ATC), next to the measured one, and the mean error."""
    rows = []
    for n in names:
        if lookup(block, "summary", n, "label_free") is None:
            continue
        row = [n]
        for d in targets:
            estimate = lookup(block, "metrics", n, d, "label_free", "macro_f1")
            row.append(f"{format_score(estimate)} ({format_score(lookup(block, 'metrics', n, d, 'macro_f1'))})")
        errors = lookup(block, "summary", n, "label_free") or {}
        row += [
            format_score(errors.get("mean_abs_error_macro_f1")),
            format_score(errors.get("mean_abs_error_accuracy")),
        ]
        rows.append(row)
    if not rows:
        return []
    title = f"{h} Label-free estimates of target macro-F1 (measured in brackets)"
    intro = [
        "Estimated from the model's confidence alone, calibrated on the source validation split (average thresholded "
        "confidence, Garg et al., ICLR 2022; see `hfkd.evaluation.label_free`): what a domain without labels would "
        "get. The error columns say how far to trust it: the mean absolute error over these targets.",
        "",
    ]
    header = ["model", *targets, "mean abs. error (macro-F1)", "mean abs. error (accuracy)"]
    return [title, "", *intro, *markdown_table(header, rows)]


def _block_section(results: dict, block: dict, h: str) -> list[str]:
    domains, sources, targets = block_domains(block)
    names, teacher = model_names(results, block), results.get("teacher")
    students = [n for n in names if teacher is not None and n != teacher]
    summary, labels, out = block.get("summary") or {}, [domain_label(d, sources) for d in domains], []
    # the summary columns after the domains, only where they mean something (no source: no in-domain, no gap)
    columns = [("in-domain", "in_domain")] * bool(sources) + [("target mean", "target_mean")] * bool(targets)
    gap = [("gap", "transfer_gap")] if sources and targets else []
    best = block.get("best")

    def cell_text(value, interval, fmt, bold: bool) -> str:
        text = with_interval(value, interval, fmt)
        return f"**{text}**" if bold else text

    for key, title in (("macro_f1", "Macro-F1"), ("accuracy", "Accuracy")):
        extra = [(c, f"{p}_{key}") for c, p in columns + gap]
        rows = []
        for n in names:
            row = [n]
            for d in domains:
                value, interval = lookup(block, "metrics", n, d, key), lookup(block, "metrics", n, d, "intervals", key)
                row.append(cell_text(value, interval, format_score, lookup(best, f"{key}@{d}") == n))
            for _, k in extra:
                value, interval = lookup(summary, n, k), lookup(summary, n, "intervals", k)
                row.append(cell_text(value, interval, format_score, lookup(best, k) == n))
            rows.append(row)
        out.extend(_table(f"{h} {title}", ["model", *labels, *(c for c, _ in extra)], rows))
    if students:
        extra = [(c, f"retention_{p}_macro_f1") for c, p in columns]
        rows = []
        for n in students:
            row = [n, *(format_ratio(lookup(summary, n, "retention_macro_f1", d)) for d in domains)]
            row += [
                with_interval(lookup(summary, n, k), lookup(summary, n, "intervals", k), format_ratio)
                for _, k in extra
            ]
            rows.append(row)
        title = f"{h} Retention of the teacher's macro-F1"
        out.extend(_table(title, ["model", *labels, *(c for c, _ in extra)], rows))
    out += _comparisons(block, h)
    out += _label_free(block, names, targets, h)
    keys = [("agreement", "agreement_target_mean"), ("KL(teacher‖student)", "kl_target_mean")] * bool(teacher)
    raw = [[lookup(summary, n, k) for _, k in [*keys, ("ECE", "ece_target_mean")]] for n in names]
    if any(as_number(v) is not None for r in raw for v in r):
        title = f"{h} Students vs the teacher on the targets" if teacher else f"{h} Calibration on the targets"
        out += _table(title, ["model", *(c for c, _ in keys), "ECE"], _rows(names, raw, format_score))
    rows = []
    for n in names:
        info, speed = lookup(results, "models", n) or {}, lookup(block, "speed", n) or {}
        layers, up = info.get("num_layers", speed.get("num_layers")), as_number(speed.get("speedup_vs_teacher"))
        rate = as_number(speed.get("samples_per_second"))
        rows.append([n, MISSING if layers is None else layers, _size(info.get("parameters", speed.get("parameters")))])
        rows[-1] += [_megabytes(speed.get("weights_bytes"))]
        rows[-1] += [MISSING if rate is None else f"{rate:.1f}", MISSING if up is None else f"{up:.2f}×"]
    header = ["model", "layers", "parameters", "weights on disk", "eval samples/s", "speed-up vs teacher"]
    out += _table(f"{h} Speed and size", header, rows)
    rows = []
    for n, stage in (block.get("stages") or {}).items():
        stage = stage if isinstance(stage, dict) else {}
        for run in stage.get("seeds") or [stage]:  # one row per training seed when there were several
            reused = "given" if run.get("given") else {True: "yes", False: "no"}.get(run.get("reused"), MISSING)
            path = f"`{run['path']}`" if run.get("path") else MISSING
            name = f"{n} (seed {run['seed']})" if stage.get("seeds") else n
            rows.append([name, reused, _duration(run.get("wall_time_s")), path])
    return out + (_table(f"{h} Stages", ["model", "reused", "wall time", "path"], rows) if rows else [])


def _intro(results: dict) -> list[str]:
    blocks, mode, teacher = results.get("blocks") or [], results.get("mode") or "single", results.get("teacher")
    if mode == "leave_one_out":
        total = len(block_domains(blocks[0])[0]) if blocks else 0
        setting = f"leave-one-out over {total} domains (each held out in turn, the others are the source)"
        setting += "" if len(blocks) >= total else f"; {len(blocks)} of {total} blocks done so far"
    elif blocks:
        domains, sources, targets = block_domains(blocks[0])
        setting = f"{', '.join(sources)} → {', '.join(targets) or MISSING}" if sources else f"on {', '.join(domains)}"
    else:
        setting = "no blocks evaluated yet"
    text = f"Dataset `{results.get('dataset', MISSING)}`, mode `{mode}`: {setting}."
    if results.get("label_names"):
        text += f" Labels: {', '.join(map(str, results['label_names']))}."
    text += f" Reference teacher: `{teacher}`." if teacher else " No reference teacher: no retention or agreement."
    hardware = lookup(results, "hardware", "description")
    processes = as_number(lookup(results, "hardware", "num_processes"))
    hardware = f"{hardware or MISSING}, {int(processes)} processes" if processes and processes > 1 else hardware
    text += f" Finished {results.get('finished', MISSING)} on {hardware or MISSING}, "
    text += f"wall time {_duration(results.get('wall_time_s'))}."
    text += f" Command: `{results['command']}`." if results.get("command") else ""
    text += f" Every number below is generated from `{RESULTS_FILE}`; none is typed by hand."
    lines = [f"# {results.get('title') or 'Cross-domain results'}", "", text, ""]
    for name, info in (results.get("models") or {}).items():
        info = info if isinstance(info, dict) else {}
        layers = f"{info['num_layers']} layers, " if info.get("num_layers") is not None else ""
        what = f"{info.get('role', 'model')}, {layers}{_size(info.get('parameters'))} parameters"
        lines.append(f"- **{name}** ({what})" + (f": {info['description']}" if info.get("description") else ""))
    small = lookup(results, "data", "small_classes") or []
    if small:
        listed = ", ".join(f"{domain} {label!r} ({n})" for domain, label, n in small)
        lines += [
            f"Few evaluation rows of a class (its F1 and that domain's macro-F1 swing on single predictions): "
            f"{listed}.",
            "",
        ]
    legend = "In-domain = mean over the source domains, target mean = mean over the target domains, gap = in-domain − "
    legend += "target mean."
    legend += _scored_rows(results)
    if teacher:
        legend += " A student's retention = its score / the teacher's on the same domain (for the means: the ratio of"
        legend += " the means)."
    seeds = {
        len(lookup(block, "metrics", n, d, "intervals", "macro_f1", "per_seed") or [])
        for block in results.get("blocks") or []
        for n in lookup(block, "metrics") or {}
        for d in lookup(block, "metrics", n) or {}
    } - {0}
    if seeds:
        n_seeds = max(seeds)
        over = "the evaluation rows" + (f" and the {n_seeds} training seeds (mean over seeds)" if n_seeds > 1 else "")
        legend += (
            f" In brackets: the 95 % interval over {over}, by bootstrap (see `hfkd.evaluation.statistics`). A model is"
            " in bold only where it is best and significantly better than the runner-up (paired bootstrap, p < 0.05)."
        )
        if n_seeds == 1:
            legend += " One training seed: the intervals leave out the variance between seeds."
    else:
        legend += " Best per column in bold."
    return [*lines, "", legend, ""]


def _overall_section(results: dict, blocks: list[dict]) -> list[str]:
    """Leave-one-out: the figures averaged over the held-out domains with their intervals, bold where
    `results["best"]` found a significant best, their paired comparisons, and the held-out figure of each block."""
    names, teacher, overall = model_names(results), results.get("teacher"), results.get("overall") or {}
    best = results.get("best") or {}

    def cell(n: str, key: str, fmt=format_score, bold: bool = False) -> str:
        text = with_interval(lookup(overall, n, key), lookup(overall, n, "intervals", key), fmt)
        return f"**{text}**" if bold and best.get(key) == n else text

    header = ["model", "in-domain macro-F1", "held-out macro-F1", "gap"]
    rows = [
        [n, cell(n, "in_domain_macro_f1", bold=True), cell(n, "target_mean_macro_f1", bold=True)]
        + [cell(n, "transfer_gap_macro_f1")]
        for n in names
    ]
    if teacher:
        header.append("retention (held-out)")
        for n, row in zip(names, rows, strict=True):
            row.append(cell(n, "retention_target_mean_macro_f1", format_ratio))
    lines = _table("## Overall (mean over held-out domains)", header, rows)
    if len(blocks) > 1:  # with one block, its comparisons are in its own section
        title = "Paired comparisons over all held-out domains (same rows and seeds)"
        lines += _comparisons(results, "###", title)
    rows = [
        [held_out(b)] + [format_score(lookup(b, "summary", n, "target_mean_macro_f1")) for n in names] for b in blocks
    ]
    rows.append(["mean"] + [cell(n, "target_mean_macro_f1") for n in names])
    return lines + _table("### Held-out macro-F1 per domain", ["held-out domain", *names], rows)


CHOSEN_BY = {
    "source_validation": "its macro-F1 on the source domains' validation rows",
    "label_free": "the label-free (ATC) estimate of its target-mean macro-F1",
}


def chosen_section(results: dict) -> list[str]:
    """The student a user would ship, named before any target label was read (`results["chosen"]`), and how it then
    fared against the teacher on the targets (the paired comparison, with its interval)."""
    chosen = results.get("chosen")
    if not chosen:
        return []
    others = ", ".join(
        f"{name} {format_score(value)}" for name, value in chosen["candidates"].items() if name != chosen["model"]
    )
    text = (
        f"Chosen before reading any target label, by {CHOSEN_BY.get(chosen['by'], chosen['by'])}: "
        f"**{chosen['model']}** ({format_score(chosen['value'])}" + (f"; {others}" if others else "") + ")."
    )
    teacher = results.get("teacher")
    for c in results.get("comparisons") or []:
        if (c.get("a"), c.get("b"), c.get("metric")) == (chosen["model"], teacher, "target_mean_macro_f1"):
            words = {"better": "better than", "worse": "worse than"}.get(
                c["verdict"], "not significantly different from"
            )
            text += (
                f" On the targets it is {words} the teacher: {c['diff']:+.3f} target-mean macro-F1, 95 % interval "
                f"[{c['ci_low']:+.2f}, {c['ci_high']:+.2f}], p = {c['p']:.3f}."
            )
    return ["## Chosen student", "", text, ""]


def render_report(results: dict) -> str:
    """The markdown of `report.md` for a results dict (see the module docstring); every number comes from it."""
    lines, blocks, loo = _intro(results), results.get("blocks") or [], results.get("mode") == "leave_one_out"
    lines += chosen_section(results)
    if loo:
        lines += _overall_section(results, blocks)
    for block in blocks:  # one block: its tables at the top level; several: a section each
        if loo or len(blocks) > 1:
            lines += [f"## Held out: {held_out(block)}" if loo else f"## {block_setting(block)}", ""]
        lines += _block_section(results, block, "###" if loo or len(blocks) > 1 else "##")
    return "\n".join(lines).rstrip() + "\n"
