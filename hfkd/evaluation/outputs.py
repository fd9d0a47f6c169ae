"""Writing what a cross-domain run or an evaluation leaves in its folder: `results.json`, and the `report.md`,
`heatmap.png` and `retention.png` made from it."""

from __future__ import annotations

import json
import os

from .plots import COMPARISON_FILE, HEATMAP_FILE, RETENTION_FILE, plot_comparisons, plot_heatmap, plot_retention
from .report import REPORT_FILE, render_report
from .results import RESULTS_FILE, atomic_write, jsonable


def write_outputs(results: dict, output_dir: str) -> dict[str, str]:
    """Write `results.json`, `report.md`, `heatmap.png` and, when the results have them, `retention.png` (students'
    retention) and `comparison.png` (the paired comparisons) into `output_dir`; a stale optional picture is removed.
    The report and plots are made from the JSON as written.

    Returns:
        `dict[str, str]`: `{"results": path, "report": path, "heatmap": path}`, plus `"retention"` and `"comparison"`
        when written.
    """
    paths = {key: os.path.join(output_dir, name) for key, name in [("results", RESULTS_FILE), ("report", REPORT_FILE)]}
    paths["heatmap"] = os.path.join(output_dir, HEATMAP_FILE)
    text = json.dumps(results, indent=2, default=jsonable) + "\n"
    atomic_write(paths["results"], text)
    results = json.loads(text)
    atomic_write(paths["report"], render_report(results))
    plot_heatmap(results, paths["heatmap"])
    for key, name, plot in (
        ("retention", RETENTION_FILE, plot_retention),
        ("comparison", COMPARISON_FILE, plot_comparisons),
    ):
        path = os.path.join(output_dir, name)
        if plot(results, path):
            paths[key] = path
        elif os.path.exists(path):
            os.remove(path)
    return paths
