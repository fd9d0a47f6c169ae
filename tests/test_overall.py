"""The figures averaged over blocks, with their intervals and comparisons (overall_uncertainty, add_block)."""

from __future__ import annotations

import numpy as np
import pytest

from hfkd.evaluation.plots import plot_comparisons
from hfkd.evaluation.report import render_report, with_interval
from hfkd.evaluation.results import add_block, summarize
from hfkd.evaluation.statistics import (
    accuracy_rows,
    block_uncertainty,
    macro_f1_rows,
    overall_uncertainty,
    row_sets,
)

K = 3
MODELS = {"teacher": {"role": "teacher"}, "baseline": {"role": "student"}, "distilled": {"role": "student"}}


def noisy(rng, references, accuracy, seeds=1):
    """`(seeds, n)` predicted ids, right with probability `accuracy` (else the next label)."""
    return np.where(rng.random((seeds, references.size)) < accuracy, references, (references + 1) % K)


def make_block(name, sources, targets, references, ids, teacher="teacher"):
    """A block as `evaluate_models` returns it, from label ids and predicted ids only (no model)."""
    metrics = {
        model: {
            d: {
                "macro_f1": float(macro_f1_rows(np.broadcast_to(references[d], p.shape), p, K).mean()),
                "accuracy": float(accuracy_rows(np.broadcast_to(references[d], p.shape), p, K).mean()),
                "n": references[d].size,
            }
            for d, p in per_domain.items()
        }
        for model, per_domain in ids.items()
    }
    uncertainty = block_uncertainty(references, ids, sources, targets, teacher, K)
    summary = summarize(metrics, sources, targets, teacher)
    for model, intervals in uncertainty["summary"].items():
        summary[model]["intervals"] = intervals
    return {
        "name": name,
        "source_domains": sources,
        "target_domains": targets,
        "domains": sources + targets,
        "metrics": metrics,
        "summary": summary,
        "comparisons": uncertainty["comparisons"],
        "best": uncertainty["best"],
        "uncertainty": uncertainty["method"],
    }


def new_results(teacher="teacher"):
    return {"mode": "leave_one_out", "label_names": ["a", "b", "c"], "teacher": teacher, "blocks": [], "overall": {}}


def width(estimate):
    return estimate["ci_high"] - estimate["ci_low"]


@pytest.fixture
def two_blocks():
    """Leave-one-out over x and y; each domain is evaluated on other rows as a target than as a source. Teacher and
    students are much weaker on y, so retention as a ratio of the means differs from the mean of the ratios."""
    rng = np.random.default_rng(0)
    blocks, predictions = [], {}
    accuracy = {"x": {"teacher": 0.95, "distilled": 0.85, "baseline": 0.7}, "y": {"teacher": 0.6, "distilled": 0.4,
                "baseline": 0.25}}  # fmt: skip
    for target, source in (("x", "y"), ("y", "x")):
        references = {source: rng.integers(K, size=150), target: rng.integers(K, size=200)}
        ids = {
            model: {d: noisy(rng, r, accuracy[d][model], seeds=2) for d, r in references.items()}
            for model in ("teacher", "baseline", "distilled")
        }
        blocks.append(make_block(f"holdout-{target}", [source], [target], references, ids))
        predictions[f"holdout-{target}"] = (references, ids)
    return blocks, predictions


def test_overall_figures_carry_intervals_and_comparisons(two_blocks, tmp_path):
    blocks, predictions = two_blocks
    results = new_results()
    add_block(results, blocks[0], MODELS, 1.0, predictions=predictions)
    # one block: the overall figures are the block's, and so are their intervals, comparisons and best
    assert results["comparisons"] == blocks[0]["comparisons"] and results["best"] == blocks[0]["best"]
    assert results["overall"]["distilled"]["intervals"] == blocks[0]["summary"]["distilled"]["intervals"]
    add_block(results, blocks[1], MODELS, 2.0, predictions=predictions)
    overall = results["overall"]
    block_means = [b["summary"]["distilled"]["target_mean_macro_f1"] for b in blocks]
    assert overall["distilled"]["target_mean_macro_f1"] == pytest.approx(np.mean(block_means))
    target = overall["distilled"]["intervals"]["target_mean_macro_f1"]
    assert target["mean"] == pytest.approx(np.mean(block_means)) and target["n_seeds"] == 2
    assert target["ci_low"] < target["mean"] < target["ci_high"]
    # retention over blocks: the ratio of the overall means (here far from the mean of the blocks' ratios)
    ratio = overall["distilled"]["target_mean_macro_f1"] / overall["teacher"]["target_mean_macro_f1"]
    mean_of_ratios = np.mean([b["summary"]["distilled"]["retention_target_mean_macro_f1"] for b in blocks])
    assert overall["distilled"]["retention_target_mean_macro_f1"] == pytest.approx(ratio)
    assert abs(ratio - mean_of_ratios) > 0.02
    retention = overall["distilled"]["intervals"]["retention_target_mean_macro_f1"]
    assert retention["ci_low"] < ratio < retention["ci_high"]
    # the comparisons of the overall figures: the same pairs as a block's, on the two mean figures
    found = {(c["a"], c["b"], c["metric"]): c for c in results["comparisons"]}
    assert set(found) == {
        (a, b, m)
        for a, b in (("distilled", "teacher"), ("baseline", "teacher"), ("distilled", "baseline"))
        for m in ("target_mean_macro_f1", "in_domain_macro_f1")
    }
    better = found[("distilled", "baseline", "target_mean_macro_f1")]
    assert better["verdict"] == "better" and better["p"] < 0.05 and better["ci_low"] > 0
    assert better["diff"] == pytest.approx(
        overall["distilled"]["target_mean_macro_f1"] - overall["baseline"]["target_mean_macro_f1"]
    )
    assert found[("baseline", "teacher", "in_domain_macro_f1")]["verdict"] == "worse"
    assert results["best"]["target_mean_macro_f1"] == "teacher"
    assert results["overall_uncertainty"]["blocks"] == 2 and results["overall_uncertainty"]["row_sets"] == 4
    # the report: the overall table with intervals, the significant best in bold, the comparisons in words
    markdown = render_report(results)
    section = markdown[markdown.index("## Overall") : markdown.index("## Held out:")]
    assert f"[{target['ci_low']:.2f}, {target['ci_high']:.2f}]" in section
    teacher = overall["teacher"]
    held_out = with_interval(teacher["target_mean_macro_f1"], teacher["intervals"]["target_mean_macro_f1"])
    in_domain = with_interval(teacher["in_domain_macro_f1"], teacher["intervals"]["in_domain_macro_f1"])
    bold = "**" if results["best"]["in_domain_macro_f1"] == "teacher" else ""
    assert f"| teacher | {bold}{in_domain}{bold} | **{held_out}** |" in section
    assert "### Paired comparisons over all held-out domains" in section
    assert "**distilled better**" in section and "**baseline worse**" in section
    assert plot_comparisons(results, str(tmp_path / "c.png")) == str(tmp_path / "c.png")  # the overall rows too


def test_without_predictions_several_blocks_have_plain_means(two_blocks):
    blocks, predictions = two_blocks
    results = new_results()
    for block in blocks:
        add_block(results, block, MODELS, 1.0)
    assert "intervals" not in results["overall"]["distilled"] and "comparisons" not in results  # the old behaviour
    mean_of_ratios = np.mean([b["summary"]["distilled"]["retention_target_mean_macro_f1"] for b in blocks])
    assert results["overall"]["distilled"]["retention_target_mean_macro_f1"] == pytest.approx(mean_of_ratios)
    markdown = render_report(results)
    assert "Paired comparisons over all" not in markdown and "**" not in markdown.split("## Overall")[1].split("##")[0]


def test_independent_blocks_narrow_the_interval_by_about_sqrt_2():
    rng = np.random.default_rng(1)
    blocks = []
    for domain in ("x", "y"):  # one target each, other rows, the same accuracy
        references = {domain: rng.integers(K, size=400)}
        blocks.append((references, {"m": {domain: noisy(rng, references[domain], 0.8)}}, [], [domain]))
    overall = overall_uncertainty(blocks, None, K, n_resamples=2000)["summary"]["m"]["target_mean_accuracy"]
    for references, ids, sources, targets in blocks:
        alone = block_uncertainty(references, ids, sources, targets, None, K, n_resamples=2000)
        ratio = width(alone["summary"]["m"]["target_mean_accuracy"]) / width(overall)
        assert 1.2 < ratio < 1.65  # sqrt(2) = 1.41


def test_the_same_rows_in_two_blocks_are_resampled_together():
    rng = np.random.default_rng(2)
    references = {"x": rng.integers(K, size=120), "y": rng.integers(K, size=90)}
    ids = {m: {d: noisy(rng, r, a, seeds=3) for d, r in references.items()} for m, a in (("t", 0.9), ("s", 0.7))}
    alone = block_uncertainty(references, ids, ["x"], ["y"], "t", K)
    # the same rows and predictions twice: the mean over the blocks is the block, interval and all
    twice = overall_uncertainty([(references, ids, ["x"], ["y"])] * 2, "t", K)
    for model in ids:
        for key in ("target_mean_macro_f1", "in_domain_accuracy", "transfer_gap_macro_f1"):
            assert twice["summary"][model][key] == alone["summary"][model][key]
    retention = "retention_target_mean_macro_f1"
    assert twice["summary"]["s"][retention] == alone["summary"]["s"][retention]
    assert twice["method"]["row_sets"] == 2
    # the same domain on other rows (another size, or other labels) is another row set, drawn independently
    other = {"x": references["x"], "y": rng.integers(K, size=90)}
    assert row_sets([references, other, {"y": references["y"][:50]}]) == [
        {"x": ("x", 0), "y": ("y", 0)},
        {"x": ("x", 0), "y": ("y", 1)},
        {"y": ("y", 2)},
    ]
    other_ids = {m: {"x": ids[m]["x"], "y": noisy(rng, other["y"], a, seeds=3)} for m, a in (("t", 0.9), ("s", 0.7))}
    independent = overall_uncertainty([(references, ids, ["x"], ["y"]), (other, other_ids, ["x"], ["y"])], "t", K)
    # x is shared (as wide as alone), y is not (narrower than alone)
    in_domain = independent["summary"]["s"]["in_domain_macro_f1"]
    assert in_domain == alone["summary"]["s"]["in_domain_macro_f1"]
    assert width(independent["summary"]["s"]["target_mean_macro_f1"]) < 0.9 * width(
        alone["summary"]["s"]["target_mean_macro_f1"]
    )
