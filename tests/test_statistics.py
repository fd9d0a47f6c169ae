"""Intervals over seeds and test rows, and paired comparisons (hfkd.evaluation.statistics)."""

import json

import numpy as np
import pytest

from hfkd.evaluation.statistics import (
    Bootstrap,
    accuracy_rows,
    macro_f1_rows,
    mean_of,
    paired_difference,
)
from hfkd.metrics import compute_classification_metrics


def test_vectorised_scores_equal_the_metric_modules():
    rng = np.random.default_rng(0)
    for k, n in ((3, 40), (2, 7), (4, 300)):
        references, predictions = rng.integers(k, size=(5, n)), rng.integers(k, size=(5, n))
        predictions[0] = references[0]
        accuracies, f1s = accuracy_rows(references, predictions, k), macro_f1_rows(references, predictions, k)
        for r, p, acc, f1 in zip(references, predictions, accuracies, f1s, strict=True):
            expected = compute_classification_metrics(p.tolist(), r.tolist(), num_labels=k)
            assert acc == pytest.approx(expected["accuracy"]) and f1 == pytest.approx(expected["macro_f1"])


def test_bootstrap_interval_of_accuracy_matches_the_analytic_standard_error():
    # one seed, 400 rows of which 300 correct: the interval is the normal one, p +- 1.96 sqrt(p (1 - p) / n)
    n, correct = 400, 300
    references = np.zeros(n, dtype=int)
    predictions = np.where(np.arange(n) < correct, 0, 1)[None, :]
    plan = Bootstrap({"d": n}, n_seeds=1, n_resamples=4000, seed=1)
    estimate = plan.figure("d", references, predictions, "accuracy", 2).estimate()
    p = correct / n
    half_width = 1.96 * np.sqrt(p * (1 - p) / n)
    assert estimate.mean == p and estimate.per_seed == (p,)
    assert estimate.ci_low == pytest.approx(p - half_width, abs=0.006)
    assert estimate.ci_high == pytest.approx(p + half_width, abs=0.006)


def test_seed_variance_widens_the_interval():
    # three seeds whose models differ a lot: the interval spans the seeds, not only the sampling of one seed's rows
    n = 500
    references = np.zeros(n, dtype=int)
    predictions = np.stack([np.where(np.arange(n) < c, 0, 1) for c in (300, 350, 400)])
    plan = Bootstrap({"d": n}, n_seeds=3, seed=0)
    estimate = plan.figure("d", references, predictions, "accuracy", 2).estimate()
    one_seed = Bootstrap({"d": n}, n_seeds=1, seed=0).figure("d", references, predictions[1:2], "accuracy", 2)
    assert estimate.mean == pytest.approx(0.7) and estimate.per_seed == pytest.approx((0.6, 0.7, 0.8))
    assert estimate.ci_low < 0.6 < 0.8 < estimate.ci_high
    assert (estimate.ci_high - estimate.ci_low) > 3 * (one_seed.estimate().ci_high - one_seed.estimate().ci_low)


def test_derived_figures_are_computed_replicate_by_replicate():
    rng = np.random.default_rng(3)
    plan = Bootstrap({"a": 200, "b": 100}, n_seeds=2, seed=0)
    refs = {d: rng.integers(3, size=n) for d, n in (("a", 200), ("b", 100))}
    teacher = {d: plan.figure(d, r, np.stack([r, r]), "macro_f1", 3) for d, r in refs.items()}  # always right
    noisy = {
        d: np.stack([np.where(rng.random(r.size) < 0.8, r, (r + 1) % 3) for _ in range(2)]) for d, r in refs.items()
    }
    student = {d: plan.figure(d, refs[d], noisy[d], "macro_f1", 3) for d in refs}
    retention = mean_of(list(student.values())) / mean_of(list(teacher.values()))
    assert np.allclose(teacher["a"].replicates, 1.0) and np.allclose(
        retention.per_seed, mean_of(list(student.values())).per_seed
    )
    estimate = retention.estimate()
    assert 0.6 < estimate.ci_low < estimate.mean < estimate.ci_high < 0.95


def test_paired_comparison_finds_a_real_difference_and_says_so():
    n = 300
    rng = np.random.default_rng(7)
    references = rng.integers(2, size=n)
    good = np.where(rng.random((1, n)) < 0.85, references, 1 - references)
    bad = np.where(rng.random((1, n)) < 0.70, references, 1 - references)
    plan = Bootstrap({"d": n}, n_seeds=1, seed=0)
    a, b = plan.figure("d", references, good, "accuracy", 2), plan.figure("d", references, bad, "accuracy", 2)
    comparison = paired_difference(a, b, ("good", "bad", "accuracy"))
    assert comparison.diff > 0.1 and comparison.ci_low > 0 and comparison.p < 0.01 and comparison.verdict == "better"
    assert paired_difference(b, a, ("bad", "good", "accuracy")).verdict == "worse"
    same = paired_difference(a, a, ("good", "good", "accuracy"))
    assert same.diff == 0 and same.p == 1.0 and same.verdict == "no significant difference"


def test_paired_test_false_positive_rate_of_equally_good_models():
    # 500 seeded simulations of two equally good models (80 % accuracy, independent errors) on the same 300 rows: at
    # the 5 % level the test calls a difference in about 5 % of them.
    n, sims, significant = 300, 500, 0
    rng = np.random.default_rng(2026)
    references = rng.integers(3, size=n)
    for i in range(sims):
        a = np.where(rng.random((1, n)) < 0.8, references, (references + 1) % 3)
        b = np.where(rng.random((1, n)) < 0.8, references, (references + 2) % 3)
        plan = Bootstrap({"d": n}, n_seeds=1, n_resamples=500, seed=i)
        fa, fb = plan.figure("d", references, a, "accuracy", 3), plan.figure("d", references, b, "accuracy", 3)
        significant += paired_difference(fa, fb, ("a", "b", "accuracy")).p < 0.05
    assert 0.02 <= significant / sims <= 0.08


def test_shapes_are_checked():
    plan = Bootstrap({"d": 5}, n_seeds=2)
    with pytest.raises(ValueError, match=r"shape \(1, 4\).*rows = 5"):
        plan.figure("d", np.zeros(5, dtype=int), np.zeros((1, 4), dtype=int), "accuracy", 2)
    with pytest.raises(ValueError, match="seeds dividing 2"):
        Bootstrap({"d": 5}, n_seeds=2).figure("d", np.zeros(5, dtype=int), np.zeros((3, 5), dtype=int), "accuracy", 2)


def test_seed_counts_that_do_not_divide_each_other_pair_over_their_lcm():
    # three one-row domains: resampling rows changes nothing, so a replicate's value names the seeds it drew.
    # A's seed j is right on j of the 3 domains (mean j/3); B's seed j on all of them or none (mean 0 or 1)
    domains = ("d0", "d1", "d2")
    references = np.zeros(1, dtype=int)
    a_ids = {d: np.array([[0 if k < j else 1] for j in range(3)]) for k, d in enumerate(domains)}
    b_ids = {d: np.array([[1], [0]]) for d in domains}
    plan = Bootstrap(dict.fromkeys(domains, 1), n_seeds=6, n_resamples=6000, seed=0)
    a = mean_of([plan.figure(d, references, a_ids[d], "accuracy", 2) for d in domains])
    b = mean_of([plan.figure(d, references, b_ids[d], "accuracy", 2) for d in domains])
    assert a.estimate().per_seed == pytest.approx((0, 1 / 3, 2 / 3)) and b.estimate().per_seed == (0, 1)  # real seeds
    difference = a - b
    assert difference.estimate().mean == pytest.approx(1 / 3 - 1 / 2)  # the mean over A's seeds minus B's
    assert paired_difference(a, b, ("a", "b", "accuracy")).diff == pytest.approx(1 / 3 - 1 / 2)
    # every (seed of A, seed of B) pair is drawn about equally often: 6 distinct differences, ~1000 times each
    values, counts = np.unique(np.round(difference.replicates * 3).astype(int), return_counts=True)
    assert values.tolist() == [-3, -2, -1, 0, 1, 2] and all(850 < c < 1150 for c in counts)
    # sums, ratios and means of figures of 3 and 2 seeds keep the means
    assert (a + b).estimate().mean == pytest.approx(1 / 3 + 1 / 2)
    assert mean_of([a, b]).estimate().mean == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_compare_runs_pairs_3_seeds_with_2(tmp_path):
    from hfkd.evaluation.compare import compare_runs, save_predictions
    from hfkd.evaluation.results import FORMAT, RESULTS_FILE

    rng = np.random.default_rng(0)
    references = {d: rng.integers(3, size=n) for d, n in (("src", 80), ("tgt", 60))}

    def noisy(refs, accuracy, seeds):
        return np.where(rng.random((seeds, refs.size)) < accuracy, refs, (refs + 1) % 3)

    runs = {}
    for run, seeds, accuracy in (("a", 3, 0.9), ("b", 2, 0.6)):
        folder = tmp_path / run
        ids = {"m": {d: noisy(r, accuracy, seeds) for d, r in references.items()}}
        save_predictions(str(folder), {"blk": (references, ids)})
        block = {"name": "blk", "source_domains": ["src"], "target_domains": ["tgt"]}
        info = {"format": FORMAT, "label_names": ["x", "y", "z"], "blocks": [block]}
        (folder / RESULTS_FILE).write_text(json.dumps(info))
        runs[run] = ids["m"]
    report = compare_runs(str(tmp_path / "a"), str(tmp_path / "b"), n_resamples=500)
    found = {c["metric"]: c for c in report["comparisons"]}
    target = references["tgt"]
    f1 = {run: macro_f1_rows(np.broadcast_to(target, ids["tgt"].shape), ids["tgt"], 3) for run, ids in runs.items()}
    assert len(f1["a"]) == 3 and len(f1["b"]) == 2
    assert found["target_mean_macro_f1"]["diff"] == pytest.approx(f1["a"].mean() - f1["b"].mean())
    assert found["macro_f1@tgt"]["diff"] == pytest.approx(f1["a"].mean() - f1["b"].mean())
    assert found["target_mean_macro_f1"]["verdict"] == "better" and found["in_domain_macro_f1"]["verdict"] == "better"
