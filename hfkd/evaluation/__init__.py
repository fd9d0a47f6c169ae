"""Evaluating models across domains: the model x domain matrix, the one `results.json` they all write, the report
and plots made from it, and `run_evaluation` for models you already have."""

from .matrix import evaluate_models, load_model_for_eval, score
from .outputs import write_outputs
from .plots import COMPARISON_FILE, HEATMAP_FILE, RETENTION_FILE, plot_comparisons, plot_heatmap, plot_retention
from .report import MISSING, REPORT_FILE, format_ratio, format_score, markdown_table, render_report
from .results import (
    FORMAT,
    FORMAT_PREFIX,
    RESULTS_FILE,
    SCORES,
    add_block,
    load_results,
    new_results,
    overall_summary,
    summarize,
)
from .run import EvaluationArguments, parse_model_paths, run_evaluation

__all__ = [
    "COMPARISON_FILE",
    "FORMAT",
    "FORMAT_PREFIX",
    "HEATMAP_FILE",
    "MISSING",
    "REPORT_FILE",
    "RESULTS_FILE",
    "RETENTION_FILE",
    "SCORES",
    "EvaluationArguments",
    "add_block",
    "evaluate_models",
    "format_ratio",
    "format_score",
    "load_model_for_eval",
    "load_results",
    "markdown_table",
    "new_results",
    "overall_summary",
    "parse_model_paths",
    "plot_comparisons",
    "plot_heatmap",
    "plot_retention",
    "render_report",
    "run_evaluation",
    "score",
    "summarize",
    "write_outputs",
]
