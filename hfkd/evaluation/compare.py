"""Comparing the models of two finished runs on the same rows: `hfkd compare RUN_A RUN_B`.

Every cross-domain run and evaluation keeps the predicted label ids of each model, seed and domain next to its
`results.json`, in `predictions.npz` ([`save_predictions`]). Two runs whose blocks were evaluated on the same rows
(the same domains, the same labels in the same order) can then be compared model by model with the paired bootstrap
of `hfkd.evaluation.statistics`, exactly as the models inside one run are; runs evaluated on other rows are refused
with the reason, since a paired comparison of different rows means nothing.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .report import markdown_table
from .results import load_results
from .statistics import N_RESAMPLES, Bootstrap, mean_of, n_seeds_of, paired_difference

PREDICTIONS_FILE = "predictions.npz"


def save_predictions(
    output_dir: str, blocks: dict[str, tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]]
) -> str:
    """Write `predictions.npz`: per block, the label ids of every domain's evaluation rows and the `(seeds, rows)`
    predicted ids of every model. `blocks` maps a block name to `(references, predictions)`."""
    arrays = {}
    for block, (references, predictions) in blocks.items():
        for domain, ids in references.items():
            arrays[f"{block}/references/{domain}"] = np.asarray(ids, dtype=np.int32)
        for model, per_domain in predictions.items():
            for domain, ids in per_domain.items():
                arrays[f"{block}/models/{model}/{domain}"] = np.asarray(ids, dtype=np.int32)
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, PREDICTIONS_FILE)
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)  # a crash never leaves a half-written file
    return path


def load_predictions(run_dir: str) -> dict[str, tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]]:
    """What [`save_predictions`] wrote in `run_dir`; `ValueError` naming the file when it is missing."""
    path = os.path.join(run_dir, PREDICTIONS_FILE)
    if not os.path.isfile(path):
        raise ValueError(
            f"{run_dir} has no {PREDICTIONS_FILE}: it was written by an hfkd without it; run the same command again "
            "(its finished stages are reused, only the evaluation is redone)."
        )
    blocks: dict[str, tuple[dict, dict]] = {}
    with np.load(path) as data:
        for key in data.files:
            block, kind, *rest = key.split("/")
            references, predictions = blocks.setdefault(block, ({}, {}))
            if kind == "references":
                references[rest[0]] = data[key]
            else:
                predictions.setdefault(rest[0], {})[rest[1]] = data[key]
    return blocks


def compare_runs(run_a: str, run_b: str, n_resamples: int = N_RESAMPLES) -> dict[str, Any]:
    """
    Paired comparisons of the models two runs share (model `m` of run A against model `m` of run B), block by block,
    on the target mean, the in-domain mean and each domain's macro-F1.

    Raises:
        `ValueError`: with the reason, when the runs share no block or model, or a shared block was evaluated on other
            domains or rows.

    The models may have any numbers of seeds: the plan has their least common multiple `L` of seeds, a model with
    `k` seeds using seed `i % k` of the plan's `i`, so that each pair of a seed of A and a seed of B is drawn equally
    often (independent draws); the reported difference is the mean over A's seeds minus the mean over B's.
    """
    results = {run: load_results(run) for run in (run_a, run_b)}
    predictions = {run: load_predictions(run) for run in (run_a, run_b)}
    shared_blocks = [b for b in predictions[run_a] if b in predictions[run_b]]
    if not shared_blocks:
        raise ValueError(f"{run_a} and {run_b} share no block (their blocks: {list(predictions[run_a])} and "
                         f"{list(predictions[run_b])}); compare runs of the same experiment plan.")  # fmt: skip
    comparisons = []
    for block in shared_blocks:
        (refs_a, models_a), (refs_b, models_b) = predictions[run_a][block], predictions[run_b][block]
        if sorted(refs_a) != sorted(refs_b):
            raise ValueError(
                f"Block {block!r} was evaluated on other domains: {sorted(refs_a)} in {run_a}, {sorted(refs_b)} in "
                f"{run_b}; a paired comparison needs the same rows."
            )
        for domain in refs_a:
            if refs_a[domain].shape != refs_b[domain].shape or not np.array_equal(refs_a[domain], refs_b[domain]):
                raise ValueError(
                    f"Block {block!r}, domain {domain!r} was evaluated on other rows ({refs_a[domain].size} in "
                    f"{run_a}, {refs_b[domain].size} in {run_b}, or other labels): the runs' splits differ (dataset, "
                    "split_seed, max_eval_samples, deduplicate); a paired comparison needs the same rows."
                )
        shared_models = [m for m in models_a if m in models_b]
        if not shared_models:
            raise ValueError(f"Block {block!r} of {run_a} and {run_b} share no model name; nothing to compare.")
        # any numbers of seeds pair: over their least common multiple, every pair of seeds is drawn equally often
        n_seeds = n_seeds_of({m: models_a[m] for m in shared_models}, {m: models_b[m] for m in shared_models})
        info = (
            next(b for b in results[run_a]["blocks"] if b.get("name") == block) if results[run_a].get("blocks") else {}
        )
        sources = [d for d in info.get("source_domains") or [] if d in refs_a]
        targets = [d for d in info.get("target_domains") or [] if d in refs_a]
        num_labels = len(results[run_a].get("label_names") or []) or int(max(r.max() for r in refs_a.values())) + 1
        plan = Bootstrap({d: r.size for d, r in refs_a.items()}, n_seeds, n_resamples)
        for model in shared_models:
            figures = []
            for models in (models_a, models_b):
                per_domain = {d: plan.figure(d, refs_a[d], models[model][d], "macro_f1", num_labels) for d in refs_a}
                named = {f"macro_f1@{d}": f for d, f in per_domain.items()}
                if targets:
                    named["target_mean_macro_f1"] = mean_of([per_domain[d] for d in targets])
                if sources:
                    named["in_domain_macro_f1"] = mean_of([per_domain[d] for d in sources])
                figures.append(named)
            for key in figures[0]:
                c = paired_difference(figures[0][key], figures[1][key], (f"{model} (A)", f"{model} (B)", key))
                comparisons.append({"block": block, "model": model} | c.as_dict())
    return {"run_a": run_a, "run_b": run_b, "comparisons": comparisons}


def format_comparison(report: dict[str, Any]) -> str:
    """The comparisons of the mean figures as a markdown table (A = the first run, B = the second)."""
    rows = []
    for c in report["comparisons"]:
        if "@" in c["metric"]:
            continue  # per-domain ones: in the JSON
        p = "< 0.001" if c["p"] < 0.001 else f"{c['p']:.3f}"
        diff = f"{c['diff']:+.3f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]"
        rows.append([c["block"], c["model"], c["metric"].replace("_macro_f1", " macro-F1"), diff, p, c["verdict"]])
    header = ["block", "model", "figure", "A − B [95 % interval]", "p", "A vs B"]
    lines = [f"A = {report['run_a']}, B = {report['run_b']}; paired on the same rows and seeds.", ""]
    return "\n".join(lines + markdown_table(header, rows, numbers=False))
