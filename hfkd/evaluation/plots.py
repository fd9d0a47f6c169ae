"""The pictures of a cross-domain run: `heatmap.png` (models x domains macro-F1) and `retention.png` (students' share
of the teacher's macro-F1).

matplotlib is imported lazily (it is slow to import) and used through `Figure` with the Agg canvas: no pyplot state.
"""

from __future__ import annotations

import io

from transformers.utils import logging

from .report import (
    as_number,
    block_domains,
    block_setting,
    domain_label,
    format_ratio,
    format_score,
    held_out,
    lookup,
    model_names,
)
from .results import atomic_write

logger = logging.get_logger(__name__)

HEATMAP_FILE = "heatmap.png"
RETENTION_FILE = "retention.png"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=150, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write(path, buffer.getvalue())
    return path


def _heatmap_panels(results: dict) -> list[tuple[str, list[str], list[str], list[list[float | None]], list]]:
    """(title, row labels, column labels, macro-F1 matrix, matrix of 95 % intervals or None) per subplot."""
    blocks, names = results.get("blocks") or [], model_names(results)
    if len(blocks) > 1 and all(len(b.get("target_domains") or []) == 1 for b in blocks):
        matrix = [[as_number(lookup(b, "summary", n, "target_mean_macro_f1")) for b in blocks] for n in names]
        for n, row in zip(names, matrix, strict=True):
            present = [v for v in row if v is not None]
            overall = as_number(lookup(results, "overall", n, "target_mean_macro_f1"))
            row.append(sum(present) / len(present) if overall is None and present else overall)
        columns = [held_out(b) for b in blocks] + ["mean"]
        bounds = [
            [_bounds(lookup(b, "summary", n, "intervals", "target_mean_macro_f1")) for b in blocks]
            + [_bounds(lookup(results, "overall", n, "intervals", "target_mean_macro_f1"))]
            for n in names
        ]
        return [("Held-out macro-F1 (leave-one-out)", names, columns, matrix, bounds)]
    panels = []
    for block in blocks:
        (domains, sources, _), rows = block_domains(block), model_names(results, block)
        matrix = [[as_number(lookup(block, "metrics", n, d, "macro_f1")) for d in domains] for n in rows]
        bounds = [[_bounds(lookup(block, "metrics", n, d, "intervals", "macro_f1")) for d in domains] for n in rows]
        title = "Macro-F1 per domain" if len(blocks) == 1 else block_setting(block)
        panels.append((title, rows, [domain_label(d, sources) for d in domains], matrix, bounds))
    return panels


def _bounds(interval: dict | None) -> tuple[float, float] | None:
    low, high = as_number(lookup(interval, "ci_low")), as_number(lookup(interval, "ci_high"))
    return None if low is None or high is None else (low, high)


def plot_heatmap(results: dict, path: str) -> str:
    """Macro-F1 of every model (rows) on every domain (columns) as an annotated heatmap, each mean with its 95 %
    interval; in leave-one-out one row per model and one column per held-out domain plus their mean; one subplot per
    block otherwise. Returns `path`."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    panels = [p for p in _heatmap_panels(results) if p[1] and p[2]] or [("No results", [], [], [], [])]
    values = [v for p in panels for row in p[3] for v in row if v is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    norm = Normalize(low - 0.05, high + 0.05) if high - low < 1e-6 else Normalize(low, high)
    cmap, image = colormaps["viridis"].with_extremes(bad="#dddddd"), None
    width = 2.8 + 1.15 * max(len(p[2]) for p in panels)
    figure = _figure(width, sum(1.6 + 0.6 * len(p[1]) for p in panels) + 0.4)
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (title, rows, columns, matrix, bounds) in zip(axes, panels, strict=True):
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
            interval = bounds[i][j] if bounds else None  # the 95 % interval under the mean
            text = format_score(v) + (f"\n[{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=7 if interval else 8)
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
    students = [n for n in model_names(results) if teacher is not None and n != teacher]
    if len(blocks) == 1:
        (domains, sources, targets), summary = block_domains(blocks[0]), blocks[0].get("summary") or {}
        labels = [domain_label(d, sources) for d in domains] + ["target mean"] * bool(targets)
        values = {s: [lookup(summary, s, "retention_macro_f1", d) for d in domains] for s in students}
        for s in students if targets else []:
            values[s].append(lookup(summary, s, "retention_target_mean_macro_f1"))
    else:
        labels = [held_out(b) for b in blocks] + ["mean"]
        values = {s: [lookup(b, "summary", s, "retention_target_mean_macro_f1") for b in blocks] for s in students}
        for s in students:
            values[s].append(lookup(results, "overall", s, "retention_target_mean_macro_f1"))
    present = [v for vs in values.values() for v in map(as_number, vs) if v is not None]
    if not present:
        logger.info("No teacher, student or retention figure in the results: no retention plot.")
        return None
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.ticker import PercentFormatter

    figure = _figure(max(5.0, 1.8 + len(labels) * (0.35 * len(students) + 0.5)), 4.2)
    ax, x, width = figure.subplots(), np.arange(len(labels)), 0.8 / len(students)
    for k, student in enumerate(students):
        heights = [as_number(v) or 0.0 for v in values[student]]
        offsets = x + (k - (len(students) - 1) / 2) * width
        bars = ax.bar(offsets, heights, width, label=student, color=colormaps["tab10"](k % 10))
        labels_k = [format_ratio(v) if as_number(v) is not None else "" for v in values[student]]
        ax.bar_label(bars, labels_k, label_type="center", rotation=90, fontsize=7, color="white")
    ax.axhline(1.0, linestyle="--", color="grey", linewidth=1, label="teacher (100%)")
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.set_ylim(0, max(1.25, max(present) * 1.2))  # room for the legend above the 100% line
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("retention of the teacher's macro-F1")
    ax.legend(fontsize=7, loc="upper center", ncols=len(students) + 1, frameon=False)
    ax.set_title(f"{results.get('title') or 'Cross-domain results'}: retention", fontsize=10)
    return _save(figure, path)


COMPARISON_FILE = "comparison.png"
VERDICT_COLORS = {"better": "#1a7f37", "worse": "#cf222e", "no significant difference": "#57606a"}


def plot_comparisons(results: dict, path: str) -> str | None:
    """A forest plot of the paired comparisons of the mean figures (target-mean and in-domain macro-F1) of each block
    and, with several blocks, of their means over blocks ("overall"): each difference with its 95 % interval, coloured
    by the verdict, against the line of no difference. Returns `path`, or `None` when the results hold no
    comparison."""
    rows, blocks = [], results.get("blocks") or []
    # several blocks: each block's comparisons, then those of the figures over all blocks (one block: they are its)
    for block in blocks + [{"name": "overall", "comparisons": results.get("comparisons")}] * (len(blocks) > 1):
        prefix = f"{block.get('name')}: " if len(blocks) > 1 else ""
        for c in block.get("comparisons") or []:
            if c.get("metric") in ("target_mean_macro_f1", "in_domain_macro_f1"):
                figure = "target mean" if c["metric"].startswith("target") else "in-domain"
                rows.append((f"{prefix}{c['a']} − {c['b']} ({figure})", c))
    if not rows:
        return None
    figure = _figure(7.5, 1.0 + 0.32 * len(rows))
    ax = figure.subplots()
    for i, (_, c) in enumerate(reversed(rows)):
        color = VERDICT_COLORS.get(c["verdict"], "#57606a")
        error = [[c["diff"] - c["ci_low"]], [c["ci_high"] - c["diff"]]]
        ax.errorbar(c["diff"], i, xerr=error, fmt="o", color=color, capsize=3, markersize=4)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [label for label, _ in reversed(rows)], fontsize=8)
    ax.set_xlabel("difference of macro-F1 (95 % interval)", fontsize=9)
    title = "Paired comparisons on the same rows and seeds"
    title += "\ngreen: better, red: worse, grey: no significant difference"
    ax.set_title(title, fontsize=9)
    return _save(figure, path)
