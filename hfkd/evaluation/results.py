"""`results.json`: the one dict every cross-domain run and evaluation writes, and the figures derived from it.

Format `"hfkd-cross-domain/2"`: the models, one block per source/target split (metrics per model and domain, summary
figures, speed, stages) and the figures averaged over blocks (`overall`, with their intervals, and the top-level
`comparisons` and `best` of those figures). [`new_results`] starts one, [`add_block`] adds a block and recomputes what
depends on it, [`load_results`] reads it back (`hfkd.evaluation.outputs.write_outputs` writes it with its report and
plots). The derived figures are retention (student score / teacher score, per domain, and for a mean over domains or
blocks the ratio of the means), the in-domain and target means, and the transfer gap (in-domain mean minus target
mean).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from transformers.utils import logging

from ..run_files import environment_info, hardware_info
from .statistics import overall_uncertainty

logger = logging.get_logger(__name__)

RESULTS_FILE = "results.json"
FORMAT_PREFIX = "hfkd-cross-domain/"
SCHEMA_VERSION = 2
"""2: intervals over seeds and test rows, paired comparisons, retention of a mean as the ratio of the means."""
FORMAT = f"{FORMAT_PREFIX}{SCHEMA_VERSION}"
SCORES = ("macro_f1", "accuracy")
"""The scores that retention, means and gaps are computed for (macro-F1 first: it is the headline number)."""


def new_results(
    *,
    title: str,
    mode: str,
    dataset: str,
    label_names: Sequence[str],
    teacher: str | None,
    config: dict[str, Any],
    command: str | None,
    seeds: dict[str, Any],
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A results dict with no block yet: what was run (title, mode, dataset, labels, config, command, seeds), where and
    with what (hardware, versions) and when it started. [`add_block`] adds the evaluated blocks."""
    results: dict[str, Any] = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "title": title,
        "mode": mode,
        "dataset": dataset,
        "label_names": list(label_names),
        "teacher": teacher,
        "models": {},
        "blocks": [],
        "overall": {},
        "hardware": hardware_info(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "config": config,
        "versions": environment_info(),
        "seeds": seeds,
    }
    if data is not None:
        results["data"] = data
    return results


def add_block(
    results: dict[str, Any],
    block: dict[str, Any],
    models: dict[str, dict[str, Any]],
    wall_time_s: float,
    *,
    predictions: dict[str, tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]] | None = None,
) -> dict[str, Any]:
    """Append an evaluated block (see `hfkd.evaluation.evaluate_models`), set the model descriptions, and recompute
    what depends on the blocks: the figures averaged over them, the finishing time and the wall time so far.

    The figures averaged over blocks (`results["overall"]`) carry their `intervals`, and `results` its top-level
    `comparisons`, `best` and `overall_uncertainty` (the method), in two cases: with one block (they are the block's
    own), and with several when `predictions` (block name -> `(references, predicted ids)`, what
    `hfkd.evaluation.compare.save_predictions` keeps; every block so far) is given (see
    `hfkd.evaluation.statistics.overall_uncertainty`); retention over blocks is then the ratio of the overall means.
    Without `predictions`, several blocks get plain means and no intervals."""
    results["blocks"].append(block)
    results["models"] = models
    results["overall"] = overall_summary(results["blocks"])
    by = (block.get("chosen") or {}).get("by")
    teachers = block.get("teachers") or results.get("teacher")
    results["chosen"] = choose_student(results["overall"], teachers, by) if by else None
    add_overall_uncertainty(results, predictions)
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results["wall_time_s"] = wall_time_s
    return results


def add_overall_uncertainty(
    results: dict[str, Any],
    predictions: dict[str, tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]] | None,
) -> None:
    """Set the intervals of `results["overall"]` and the top-level `comparisons`, `best` and `overall_uncertainty`
    (see [`add_block`]); remove stale ones when they cannot be computed."""
    for key in ("comparisons", "best", "overall_uncertainty"):
        results.pop(key, None)
    blocks, overall = results["blocks"], results["overall"]
    if len(blocks) == 1:  # the overall figures are the block's: so are their intervals and comparisons
        (block,) = blocks
        for name, figures in overall.items():
            intervals = (block.get("summary") or {}).get(name, {}).get("intervals")
            if intervals is not None:
                figures["intervals"] = intervals
        for key, source in (("comparisons", "comparisons"), ("best", "best"), ("overall_uncertainty", "uncertainty")):
            if source in block:
                results[key] = block[source] | {"blocks": 1} if key == "overall_uncertainty" else block[source]
        return
    if not blocks or predictions is None:
        return
    missing = [block.get("name") for block in blocks if block.get("name") not in predictions]
    if missing:
        logger.warning(f"No predictions of block(s) {missing}: the figures over blocks have no intervals.")
        return
    num_labels = len(results.get("label_names") or []) or 1 + max(
        int(labels.max()) for references, _ in predictions.values() for labels in references.values() if labels.size
    )
    uncertainty = overall_uncertainty(
        [
            (*predictions[block["name"]], block.get("source_domains") or [], block.get("target_domains") or [])
            for block in blocks
        ],
        results.get("teacher"),
        num_labels,
    )
    teacher = overall.get(results.get("teacher")) or {}
    for name, intervals in uncertainty["summary"].items():
        figures = overall.get(name)
        if figures is None:
            continue
        figures["intervals"] = intervals
        for key in [k for k in intervals if k.startswith("retention_")]:
            # over blocks, as its interval: the ratio of the overall means, not the mean of the blocks' ratios
            mean = key.removeprefix("retention_")
            figures[key] = _ratio(figures.get(mean), teacher.get(mean))
    results["comparisons"] = uncertainty["comparisons"]
    results["best"] = uncertainty["best"]
    results["overall_uncertainty"] = uncertainty["method"]


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarize(
    metrics: dict[str, dict[str, dict[str, Any]]],
    source_domains: Sequence[str],
    target_domains: Sequence[str],
    teacher: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Derived figures per model: in-domain mean, target mean and transfer gap of each score; for students also
    retention of the teacher's score (per domain, in-domain, mean over targets) and target means of agreement, KL
    and ECE. Absent figures (no source, no target, no teacher) are `None`."""
    summary: dict[str, dict[str, Any]] = {}
    for name, cells in metrics.items():
        figures: dict[str, Any] = {}
        for key in SCORES:
            in_domain = _mean([cells[d][key] for d in source_domains]) if source_domains else None
            target = _mean([cells[d][key] for d in target_domains]) if target_domains else None
            figures[f"in_domain_{key}"] = in_domain
            figures[f"target_mean_{key}"] = target
            figures[f"transfer_gap_{key}"] = None if in_domain is None or target is None else in_domain - target
        figures["ece_target_mean"] = _mean([cells[d].get("ece") for d in target_domains]) if target_domains else None
        if teacher is not None and name != teacher:
            reference = metrics[teacher]
            for key in SCORES:
                per_domain = {d: _ratio(cells[d][key], reference[d][key]) for d in cells}
                figures[f"retention_{key}"] = per_domain
                # the ratio of the means, not the mean of per-domain ratios (which one small, hard domain dominates)
                for label, names in (("in_domain", source_domains), ("target_mean", target_domains)):
                    teacher_mean = _mean([reference[d][key] for d in names]) if names else None
                    figures[f"retention_{label}_{key}"] = _ratio(figures[f"{label}_{key}"], teacher_mean)
            for key in ("agreement", "kl"):
                figures[f"{key}_target_mean"] = _mean([cells[d].get(key) for d in target_domains])
        summary[name] = figures
    return summary


SELECTION_FIGURES = {
    "source_validation": "source_validation_macro_f1",
    "label_free": "label_free_target_mean_macro_f1",
}
"""What a student can be chosen by before any target label is read: its macro-F1 on the validation rows of the source
domains, or the label-free (ATC) estimate of its target-mean macro-F1."""


def choose_student(
    summary: dict[str, dict[str, Any]], teacher: str | Sequence[str] | None, by: str
) -> dict[str, Any] | None:
    """
    The student with the highest selection figure (see [`SELECTION_FIGURES`]) in a block's summary or the overall
    one: `{"model", "by", "figure", "value", "candidates"}`, or `None` when no student has the figure. `teacher`
    names the teacher, or the teachers (e.g. the experiment's `teacher` and `dapt_teacher`): never candidates. Every
    student stays in the tables; this only names the one a user would ship without looking at target labels.
    """
    if by not in SELECTION_FIGURES:
        raise ValueError(f"select_student_by={by!r} is not valid; set it to one of {sorted(SELECTION_FIGURES)}.")
    figure = SELECTION_FIGURES[by]
    teachers = {teacher} if isinstance(teacher, str) else set(teacher or ())
    candidates = {
        name: figures[figure]
        for name, figures in summary.items()
        if name not in teachers and isinstance(figures.get(figure), int | float)
    }
    if not candidates:
        return None
    best = max(candidates, key=lambda name: candidates[name])
    return {"model": best, "by": by, "figure": figure, "value": candidates[best], "candidates": candidates}


def overall_summary(blocks: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """The scalar summary figures of each model averaged over blocks (a block's own figures when there is one)."""
    names = list(blocks[0]["summary"]) if blocks else []
    overall: dict[str, dict[str, float | None]] = {}
    for name in names:
        keys = [k for k, v in blocks[0]["summary"][name].items() if not isinstance(v, dict)]
        overall[name] = {k: _mean([block["summary"].get(name, {}).get(k) for block in blocks]) for k in keys}
    return overall


def atomic_write(path: str, data: str | bytes) -> None:
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


def jsonable(obj: Any) -> Any:
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)  # numpy scalars/arrays; never fail at the end of a run


def load_results(path_or_dir: str) -> dict:
    """Read `results.json`, given the file or the folder holding it.

    Raises:
        `ValueError`: naming the file, when it is missing, not JSON, not a cross-domain results dict, or one of an
            older format (it says how to remake it).
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
        raise ValueError(f"{path!r} is not a valid results file: format {kind!r}, expected {FORMAT}.")
    if kind != FORMAT:
        raise ValueError(
            f"{path!r} is a results file of format {kind!r}, written by an older hfkd (no intervals over seeds and "
            f"test rows, retention as a mean of ratios); this hfkd reads {FORMAT} only, so as not to mix the two. "
            "Run the same command again: its finished stages are reused and only the evaluation is redone."
        )
    return results
