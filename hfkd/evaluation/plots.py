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


def _heatmap_panels(results: dict) -> list[tuple[str, list[str], list[str], list[list[float | None]]]]:
    """(title, row labels, column labels, macro-F1 matrix) per subplot."""
    blocks, names = results.get("blocks") or [], model_names(results)
    if len(blocks) > 1 and all(len(b.get("target_domains") or []) == 1 for b in blocks):
        matrix = [[as_number(lookup(b, "summary", n, "target_mean_macro_f1")) for b in blocks] for n in names]
        for n, row in zip(names, matrix, strict=True):
            present = [v for v in row if v is not None]
            overall = as_number(lookup(results, "overall", n, "target_mean_macro_f1"))
            row.append(sum(present) / len(present) if overall is None and present else overall)
        return [("Held-out macro-F1 (leave-one-out)", names, [held_out(b) for b in blocks] + ["mean"], matrix)]
    panels = []
    for block in blocks:
        (domains, sources, _), rows = block_domains(block), model_names(results, block)
        matrix = [[as_number(lookup(block, "metrics", n, d, "macro_f1")) for d in domains] for n in rows]
        title = "Macro-F1 per domain" if len(blocks) == 1 else block_setting(block)
        panels.append((title, rows, [domain_label(d, sources) for d in domains], matrix))
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
