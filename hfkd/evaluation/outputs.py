"""Writing what a cross-domain run or an evaluation leaves in its folder: `results.json`, and the `report.md`,
`heatmap.png` and `retention.png` made from it."""

from __future__ import annotations

import json
import os

from .plots import HEATMAP_FILE, RETENTION_FILE, plot_heatmap, plot_retention
from .report import REPORT_FILE, render_report
from .results import RESULTS_FILE, atomic_write, jsonable


def write_outputs(results: dict, output_dir: str) -> dict[str, str]:
    """Write `results.json`, `report.md`, `heatmap.png` and, when there are retention figures, `retention.png` into
    `output_dir` (a stale `retention.png` is removed). The report and plots are made from the JSON as written.

    Returns:
        `dict[str, str]`: `{"results": path, "report": path, "heatmap": path}`, plus `"retention"` when written.
    """
    paths = {key: os.path.join(output_dir, name) for key, name in [("results", RESULTS_FILE), ("report", REPORT_FILE)]}
    paths["heatmap"], retention = os.path.join(output_dir, HEATMAP_FILE), os.path.join(output_dir, RETENTION_FILE)
    text = json.dumps(results, indent=2, default=jsonable) + "\n"
    atomic_write(paths["results"], text)
    results = json.loads(text)
    atomic_write(paths["report"], render_report(results))
    plot_heatmap(results, paths["heatmap"])
    if plot_retention(results, retention):
        paths["retention"] = retention
    elif os.path.exists(retention):
        os.remove(retention)
    return paths
