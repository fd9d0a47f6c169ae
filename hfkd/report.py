"""What a person reads after a cross-domain run: `results.json` -> `report.md`, `heatmap.png`, `retention.png`.

The input is the results dict that `hfkd.experiment` and `hfkd.evaluation.run_evaluation` build (format
`"hfkd-cross-domain/1"`): models, one block per source/target split (metrics per model and domain, summary figures,
speed, stages) and the figures averaged over blocks. Every number in `report.md` is formatted from that dict by
[`format_score`] or [`format_ratio`], never typed; a missing optional part shows as "–" instead of failing.
matplotlib is imported lazily (it is slow to import) and used through `Figure` with the Agg canvas: no pyplot state.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
from typing import Any

from transformers.utils import logging

logger = logging.get_logger(__name__)

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
HEATMAP_FILE = "heatmap.png"
RETENTION_FILE = "retention.png"
FORMAT_PREFIX = "hfkd-cross-domain/"
MISSING = "–"


def _number(x: Any) -> float | None:
    """`x` as a float; None when it is missing, NaN or not a number."""
    try:
        x = None if x is None or isinstance(x, bool) else float(x)
    except (TypeError, ValueError):
        return None
    return None if x is None or math.isnan(x) else x


def format_score(x: float | None) -> str:
    """A score, gap, KL, ECE or agreement with three decimals (`0.812`); "–" when missing or NaN."""
    x = _number(x)
    return MISSING if x is None else f"{round(x, 3) + 0.0:.3f}"  # + 0.0: no "-0.000"


def format_ratio(x: float | None) -> str:
    """A retention ratio as a percentage with one decimal (`0.973` -> `97.3%`); "–" when missing or NaN."""
    x = _number(x)
    return MISSING if x is None else f"{round(100 * x, 1) + 0.0:.1f}%"


def _duration(seconds: Any) -> str:
    s = _number(seconds)
    if s is None or s < 60:
        return MISSING if s is None else f"{s:.1f} s"
    minutes, s = divmod(round(s), 60)
    return f"{minutes} min {s} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _size(n: Any) -> str:
    n = _number(n)
    return MISSING if n is None else f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def _get(mapping: Any, *keys: str) -> Any:
    """`mapping[k1][k2]...`, or None as soon as a level is missing or not a dict."""
    for key in keys:
        mapping = mapping.get(key) if isinstance(mapping, dict) else None
    return mapping


def _model_names(results: dict, block: dict | None = None) -> list[str]:
    """Display order: the order of `results["models"]`, then any model that only the block's metrics name."""
    names = list(results.get("models") or {})
    return names + [n for n in (block or {}).get("metrics") or {} if n not in names]


def _domains(block: dict) -> tuple[list[str], list[str], list[str]]:
    sources, targets = list(block.get("source_domains") or []), list(block.get("target_domains") or [])
    return list(block.get("domains") or dict.fromkeys(sources + targets)), sources, targets


def _label(domain: str, sources: list[str]) -> str:
    return f"{domain} (source)" if domain in sources else domain


def _held_out(block: dict) -> str:
    return ", ".join(block.get("target_domains") or []) or str(block.get("name", "?"))


def _setting(block: dict) -> str:
    _, sources, targets = _domains(block)
    return f"{block.get('name', '?')}: {', '.join(sources) or MISSING} → {', '.join(targets) or MISSING}"


def _table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    # numbers right-aligned, text left-aligned
    numeric = [j > 0 and all(str(r[j]).lstrip("*")[:1] in "-0123456789–" for r in rows) for j in range(len(header))]
    return [title, "", line(header), line(["---:" if n else "---" for n in numeric]), *map(line, rows), ""]


def _rows(names: list[str], raw: list[list[Any]], fmt, best: int = 0) -> list[list[str]]:
    """Formatted rows, the highest value of each of the first `best` columns in bold (ties all bold)."""
    rows = [[name] + [fmt(v) for v in values] for name, values in zip(names, raw, strict=True)]
    for j in range(best):
        column = [v for v in (_number(values[j]) for values in raw) if v is not None]
        for row in rows if len(column) > 1 else []:
            row[j + 1] = f"**{row[j + 1]}**" if row[j + 1] == fmt(max(column)) else row[j + 1]
    return rows


def _block_section(results: dict, block: dict, h: str) -> list[str]:
    domains, sources, targets = _domains(block)
    names, teacher = _model_names(results, block), results.get("teacher")
    students = [n for n in names if teacher is not None and n != teacher]
    summary, labels, out = block.get("summary") or {}, [_label(d, sources) for d in domains], []
    # the summary columns after the domains, only where they mean something (no source: no in-domain, no gap)
    columns = [("in-domain", "in_domain")] * bool(sources) + [("target mean", "target_mean")] * bool(targets)
    gap = [("gap", "transfer_gap")] if sources and targets else []

    def matrix(title, rows, cell, extra, fmt, best=0):
        raw = [[cell(n, d) for d in domains] + [_get(summary, n, k) for _, k in extra] for n in rows]
        out.extend(_table(f"{h} {title}", ["model", *labels, *(c for c, _ in extra)], _rows(rows, raw, fmt, best)))

    for key, title in (("macro_f1", "Macro-F1"), ("accuracy", "Accuracy")):
        extra = [(c, f"{p}_{key}") for c, p in columns + gap]
        cell = lambda n, d, key=key: _get(block, "metrics", n, d, key)  # noqa: E731
        matrix(title, names, cell, extra, format_score, best=len(domains) + len(columns))  # no bold gap
    if students:
        extra = [(c, f"retention_{p}_macro_f1") for c, p in columns]
        cell = lambda n, d: _get(summary, n, "retention_macro_f1", d)  # noqa: E731
        matrix("Retention of the teacher's macro-F1", students, cell, extra, format_ratio)
    keys = [("agreement", "agreement_target_mean"), ("KL(teacher‖student)", "kl_target_mean")] * bool(teacher)
    raw = [[_get(summary, n, k) for _, k in [*keys, ("ECE", "ece_target_mean")]] for n in names]
    if any(_number(v) is not None for r in raw for v in r):
        title = f"{h} Students vs the teacher on the targets" if teacher else f"{h} Calibration on the targets"
        out += _table(title, ["model", *(c for c, _ in keys), "ECE"], _rows(names, raw, format_score))
    rows = []
    for n in names:
        info, speed = _get(results, "models", n) or {}, _get(block, "speed", n) or {}
        layers, up = info.get("num_layers", speed.get("num_layers")), _number(speed.get("speedup_vs_teacher"))
        rate = _number(speed.get("samples_per_second"))
        rows.append([n, MISSING if layers is None else layers, _size(info.get("parameters", speed.get("parameters")))])
        rows[-1] += [MISSING if rate is None else f"{rate:.1f}", MISSING if up is None else f"{up:.2f}×"]
    header = ["model", "layers", "parameters", "eval samples/s", "speed-up vs teacher"]
    out += _table(f"{h} Speed and size", header, rows)
    rows = []
    for n, stage in (block.get("stages") or {}).items():
        stage = stage if isinstance(stage, dict) else {}
        reused = "given" if stage.get("given") else {True: "yes", False: "no"}.get(stage.get("reused"), MISSING)
        path = f"`{stage['path']}`" if stage.get("path") else MISSING
        rows.append([n, reused, _duration(stage.get("wall_time_s")), path])
    return out + (_table(f"{h} Stages", ["model", "reused", "wall time", "path"], rows) if rows else [])


def _intro(results: dict) -> list[str]:
    blocks, mode, teacher = results.get("blocks") or [], results.get("mode") or "single", results.get("teacher")
    if mode == "leave_one_out":
        total = len(_domains(blocks[0])[0]) if blocks else 0
        setting = f"leave-one-out over {total} domains (each held out in turn, the others are the source)"
        setting += "" if len(blocks) >= total else f"; {len(blocks)} of {total} blocks done so far"
    elif blocks:
        domains, sources, targets = _domains(blocks[0])
        setting = f"{', '.join(sources)} → {', '.join(targets) or MISSING}" if sources else f"on {', '.join(domains)}"
    else:
        setting = "no blocks evaluated yet"
    text = f"Dataset `{results.get('dataset', MISSING)}`, mode `{mode}`: {setting}."
    if results.get("label_names"):
        text += f" Labels: {', '.join(map(str, results['label_names']))}."
    text += f" Reference teacher: `{teacher}`." if teacher else " No reference teacher: no retention or agreement."
    hardware, processes = _get(results, "hardware", "description"), _number(_get(results, "hardware", "num_processes"))
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
    legend = "In-domain = mean over the source domains, target mean = mean over the target domains, gap = in-domain − "
    legend += "target mean." + " A student's retention = its score / the teacher's on the same domain." * bool(teacher)
    return [*lines, "", legend + " Best per column in bold.", ""]


def render_report(results: dict) -> str:
    """The markdown of `report.md` for a results dict (see the module docstring); every number comes from it."""
    lines, blocks, loo = _intro(results), results.get("blocks") or [], results.get("mode") == "leave_one_out"
    if loo:
        names, teacher, overall = _model_names(results), results.get("teacher"), results.get("overall") or {}
        keys = ["in_domain_macro_f1", "target_mean_macro_f1", "transfer_gap_macro_f1"]
        header = ["model", "in-domain macro-F1", "held-out macro-F1", "gap"]
        rows = _rows(names, [[_get(overall, n, k) for k in keys] for n in names], format_score, best=2)
        if teacher:
            header.append("retention (held-out)")
            for n, row in zip(names, rows, strict=True):
                row.append(format_ratio(_get(overall, n, "retention_target_mean_macro_f1")))
        lines += _table("## Overall (mean over held-out domains)", header, rows)
        rows = [
            [_held_out(b)] + [format_score(_get(b, "summary", n, "target_mean_macro_f1")) for n in names]
            for b in blocks
        ]
        rows.append(["mean"] + [format_score(_get(overall, n, "target_mean_macro_f1")) for n in names])
        lines += _table("### Held-out macro-F1 per domain", ["held-out domain", *names], rows)
    for block in blocks:  # one block: its tables at the top level; several: a section each
        if loo or len(blocks) > 1:
            lines += [f"## Held out: {_held_out(block)}" if loo else f"## {_setting(block)}", ""]
        lines += _block_section(results, block, "###" if loo or len(blocks) > 1 else "##")
    return "\n".join(lines).rstrip() + "\n"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=150, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    _atomic_write(path, buffer.getvalue())
    return path


def _heatmap_panels(results: dict) -> list[tuple[str, list[str], list[str], list[list[float | None]]]]:
    """(title, row labels, column labels, macro-F1 matrix) per subplot."""
    blocks, names = results.get("blocks") or [], _model_names(results)
    if len(blocks) > 1 and all(len(b.get("target_domains") or []) == 1 for b in blocks):
        matrix = [[_number(_get(b, "summary", n, "target_mean_macro_f1")) for b in blocks] for n in names]
        for n, row in zip(names, matrix, strict=True):
            present = [v for v in row if v is not None]
            overall = _number(_get(results, "overall", n, "target_mean_macro_f1"))
            row.append(sum(present) / len(present) if overall is None and present else overall)
        return [("Held-out macro-F1 (leave-one-out)", names, [_held_out(b) for b in blocks] + ["mean"], matrix)]
    panels = []
    for block in blocks:
        (domains, sources, _), rows = _domains(block), _model_names(results, block)
        matrix = [[_number(_get(block, "metrics", n, d, "macro_f1")) for d in domains] for n in rows]
        title = "Macro-F1 per domain" if len(blocks) == 1 else _setting(block)
        panels.append((title, rows, [_label(d, sources) for d in domains], matrix))
    return panels


def plot_heatmap(results: dict, path: str) -> str:
    """Macro-F1 of every model (rows) on every domain (columns) as an annotated heatmap; in leave-one-out one row per
    model and one column per held-out domain plus their mean; one subplot per block otherwise. Returns `path`."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    panels = [p for p in _heatmap_panels(results) if p[1] and p[2]] or [("No results", [], [], [])]
    values = [v for p in panels for row in p[3] for v in row if v is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    norm = Normalize(low - 0.05, high + 0.05) if high - low < 1e-6 else Normalize(low, high)
    cmap, image = colormaps["viridis"].with_extremes(bad="#dddddd"), None
    width = 2.8 + 1.15 * max(len(p[2]) for p in panels)
    figure = _figure(width, sum(1.6 + 0.5 * len(p[1]) for p in panels) + 0.4)
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (title, rows, columns, matrix) in zip(axes, panels, strict=True):
        ax.set_title(title, fontsize=10)
        if not rows:
            ax.text(0.5, 0.5, "no results", ha="center", va="center")
            ax.axis("off")
            continue
        data = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
        image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, norm=norm, aspect="auto")
        for (i, j), v in np.ndenumerate(data):
            r, g, b, _ = (1.0, 1.0, 1.0, 1.0) if np.isnan(v) else cmap(norm(v))
            color = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"  # readable on any cell
            ax.text(j, i, format_score(v), ha="center", va="center", color=color, fontsize=8)
        ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
    if image is not None:
        figure.colorbar(image, ax=list(axes), label="macro-F1", shrink=0.9)
    figure.suptitle(results.get("title") or "Cross-domain results", fontsize=11)
    return _save(figure, path)


def plot_retention(results: dict, path: str) -> str | None:
    """Grouped bars of each student's retention of the teacher's macro-F1 per domain (one block) or per held-out
    domain (several blocks), dashed line at 100%. Returns `path`, or None and writes nothing when there is no teacher,
    no student or no retention figure at all."""
    blocks, teacher = results.get("blocks") or [], results.get("teacher")
    students = [n for n in _model_names(results) if teacher is not None and n != teacher]
    if len(blocks) == 1:
        (domains, sources, targets), summary = _domains(blocks[0]), blocks[0].get("summary") or {}
        labels = [_label(d, sources) for d in domains] + ["target mean"] * bool(targets)
        values = {s: [_get(summary, s, "retention_macro_f1", d) for d in domains] for s in students}
        for s in students if targets else []:
            values[s].append(_get(summary, s, "retention_target_mean_macro_f1"))
    else:
        labels = [_held_out(b) for b in blocks] + ["mean"]
        values = {s: [_get(b, "summary", s, "retention_target_mean_macro_f1") for b in blocks] for s in students}
        for s in students:
            values[s].append(_get(results, "overall", s, "retention_target_mean_macro_f1"))
    present = [v for vs in values.values() for v in map(_number, vs) if v is not None]
    if not present:
        logger.info("No teacher, student or retention figure in the results: no retention plot.")
        return None
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.ticker import PercentFormatter

    figure = _figure(max(5.0, 1.8 + len(labels) * (0.35 * len(students) + 0.5)), 4.2)
    ax, x, width = figure.subplots(), np.arange(len(labels)), 0.8 / len(students)
    for k, student in enumerate(students):
        heights = [_number(v) or 0.0 for v in values[student]]
        offsets = x + (k - (len(students) - 1) / 2) * width
        bars = ax.bar(offsets, heights, width, label=student, color=colormaps["tab10"](k % 10))
        labels_k = [format_ratio(v) if _number(v) is not None else "" for v in values[student]]
        ax.bar_label(bars, labels_k, label_type="center", rotation=90, fontsize=7, color="white")
    ax.axhline(1.0, linestyle="--", color="grey", linewidth=1, label="teacher (100%)")
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.set_ylim(0, max(1.25, max(present) * 1.2))  # room for the legend above the 100% line
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("retention of the teacher's macro-F1")
    ax.legend(fontsize=7, loc="upper center", ncols=len(students) + 1, frameon=False)
    ax.set_title(f"{results.get('title') or 'Cross-domain results'}: retention", fontsize=10)
    return _save(figure, path)


def _atomic_write(path: str, data: str | bytes) -> None:
    """Write a temporary file next to `path`, then rename it: a crash never leaves a half-written file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; these files are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _jsonable(obj: Any) -> Any:
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)  # numpy scalars/arrays; never fail at the end of a run


def write_outputs(results: dict, output_dir: str) -> dict[str, str]:
    """Write `results.json`, `report.md`, `heatmap.png` and, when there are retention figures, `retention.png` into
    `output_dir` (a stale `retention.png` is removed). The report and plots are made from the JSON as written.

    Returns:
        `dict[str, str]`: `{"results": path, "report": path, "heatmap": path}`, plus `"retention"` when written.
    """
    paths = {key: os.path.join(output_dir, name) for key, name in [("results", RESULTS_FILE), ("report", REPORT_FILE)]}
    paths["heatmap"], retention = os.path.join(output_dir, HEATMAP_FILE), os.path.join(output_dir, RETENTION_FILE)
    text = json.dumps(results, indent=2, default=_jsonable) + "\n"
    _atomic_write(paths["results"], text)
    results = json.loads(text)
    _atomic_write(paths["report"], render_report(results))
    plot_heatmap(results, paths["heatmap"])
    if plot_retention(results, retention):
        paths["retention"] = retention
    elif os.path.exists(retention):
        os.remove(retention)
    return paths


def load_results(path_or_dir: str) -> dict:
    """Read `results.json`, given the file or the folder holding it.

    Raises:
        `ValueError`: naming the file, when it is missing, not JSON, or not a cross-domain results dict.
    """
    path = os.path.join(path_or_dir, RESULTS_FILE) if os.path.isdir(path_or_dir) else path_or_dir
    if not os.path.isfile(path):
        raise ValueError(f"No results file at {path!r}: expected the {RESULTS_FILE} that a cross-domain run writes.")
    try:
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path!r} is not a valid results file: {error}") from error
    kind = results.get("format") if isinstance(results, dict) else "not a JSON object"
    if kind is not None and not str(kind).startswith(FORMAT_PREFIX):
        raise ValueError(f"{path!r} is not a valid results file: format {kind!r}, expected {FORMAT_PREFIX}<version>.")
    return results
