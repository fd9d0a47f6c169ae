"""How sure a cross-domain figure is: intervals over training seeds and test rows, and paired comparisons.

A model's score on a domain varies with two things the user does not control: the training seed (initialisation,
data order) and which rows happened to land in the test split. Both are resampled together, following the advice of
Bouthillier et al., "Accounting for Variance in Machine Learning Benchmarks" (MLSys 2021), with a two-level
bootstrap (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13):

- each replicate draws one of the seeds at random, then the rows of every domain with replacement, and computes the
  figure (a score, a mean over domains, a gap, a ratio) on those rows for that seed;
- the interval is the 2.5-97.5 % percentile range of the replicates; the point estimate is the mean over seeds of the
  figure on all the rows.

With one seed this is the ordinary bootstrap over test rows. One [`Bootstrap`] plan is shared by every model of a
block, so the replicates of two models use the same seeds and rows: their difference is a *paired* bootstrap, whose
p-value ([`paired_difference`]) is the two-sided percentile-bootstrap one (Efron & Tibshirani 1993, ch. 16; the paired
bootstrap of NLP system comparisons, Koehn 2004), consistent with the interval: p < 0.05 when the 95 % interval of the
difference leaves out 0 (up to the resolution of the replicates). Everything is vectorised with numpy: 1,000
replicates of a 300-row domain take milliseconds.

Models with different numbers of seeds (a given teacher has one; two runs compared by `hfkd compare` may have 3 and 2)
share a plan over the least common multiple `L` of their counts: a model with `k` seeds uses seed `i % k` of the plan's
`i`, so (Chinese remainder theorem) every pair of their seeds is drawn equally often, as independent draws would be.

The figures averaged over the blocks of a run ([`overall_uncertainty`]: the mean over held-out domains of a
leave-one-out run) are bootstrapped over all blocks at once: a replicate draws one seed index shared by every block
(seed `s` of every block is one run of the experiment), then the rows of every *row set* with replacement, a row set
being a domain's evaluation rows; where two blocks evaluate a domain on the same rows they share its row set, hence its
resample (their scores are correlated, as they are), and other row sets are drawn independently. Each block's figures
are computed from that draw, the overall figure is their mean over blocks replicate by replicate, and overall retention
is the ratio of the overall means.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 1000


def accuracy_rows(references: np.ndarray, predictions: np.ndarray, num_labels: int) -> np.ndarray:
    """Accuracy of each row of `predictions` (shape `(..., n)`) against `references` of the same shape."""
    return (references == predictions).mean(axis=-1)


def macro_f1_rows(references: np.ndarray, predictions: np.ndarray, num_labels: int) -> np.ndarray:
    """Macro-F1 of each row of `predictions` (shape `(..., n)`), averaged over all `num_labels` classes, a class with
    no row and no prediction counting as 0: the definition of the matrix's `macro_f1` (`hfkd.metrics`' classification
    module with `num_labels`)."""
    shape = references.shape[:-1]
    k = num_labels
    flat_ref, flat_pred = references.reshape(-1, references.shape[-1]), predictions.reshape(-1, predictions.shape[-1])
    offsets = np.arange(flat_ref.shape[0])[:, None] * k * k
    confusion = np.bincount((offsets + flat_ref * k + flat_pred).ravel(), minlength=flat_ref.shape[0] * k * k)
    confusion = confusion.reshape(-1, k, k).astype(float)
    true_positive = np.diagonal(confusion, axis1=1, axis2=2)
    support, predicted = confusion.sum(axis=2), confusion.sum(axis=1)
    denominator = support + predicted
    f1 = np.divide(2 * true_positive, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    return f1.mean(axis=1).reshape(shape)


METRICS: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "accuracy": accuracy_rows,
    "macro_f1": macro_f1_rows,
}
"""Scores computed on many resampled row sets at once: `f(references, predictions, num_labels) -> scores`."""


@dataclass(frozen=True)
class Estimate:
    """A figure over seeds and test rows: the point estimate, its interval and the figure of each seed."""

    mean: float
    ci_low: float
    ci_high: float
    per_seed: tuple[float, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "mean": self.mean,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n_seeds": len(self.per_seed),
            "per_seed": list(self.per_seed),
        }


def _tiled(*per_seed: np.ndarray) -> list[np.ndarray]:
    """Per-seed arrays of different lengths repeated to the least common multiple of their lengths: entry `i` holds
    seed `i % k` of an array of `k` seeds, as in a [`Bootstrap`] plan; the mean of each array is unchanged."""
    length = math.lcm(*(a.shape[0] for a in per_seed))
    return [np.tile(a, length // a.shape[0]) for a in per_seed]


@dataclass(frozen=True)
class Figure:
    """A figure as the bootstrap sees it: its value for each seed on all the rows, and its replicates.

    Sums, differences, ratios and [`mean_of`] of figures with different numbers of seeds `k` pair seed `i % k` of
    each, over the least common multiple of the counts (the pairing of a [`Bootstrap`] plan).
    """

    per_seed: np.ndarray  # (n_seeds,)
    replicates: np.ndarray  # (n_resamples,)

    def estimate(self, confidence: float = CONFIDENCE) -> Estimate:
        tail = (1 - confidence) / 2 * 100
        low, high = np.nanpercentile(self.replicates, [tail, 100 - tail])
        return Estimate(float(np.mean(self.per_seed)), float(low), float(high), tuple(map(float, self.per_seed)))

    def __add__(self, other: Figure) -> Figure:
        a, b = _tiled(self.per_seed, other.per_seed)
        return Figure(a + b, self.replicates + other.replicates)

    def __sub__(self, other: Figure) -> Figure:
        a, b = _tiled(self.per_seed, other.per_seed)
        return Figure(a - b, self.replicates - other.replicates)

    def __truediv__(self, other: Figure) -> Figure:
        a, b = _tiled(self.per_seed, other.per_seed)
        with np.errstate(divide="ignore", invalid="ignore"):
            return Figure(a / b, self.replicates / other.replicates)


def mean_of(figures: Sequence[Figure]) -> Figure:
    """The mean of several figures (e.g. a model's score over the target domains), replicate by replicate."""
    per_seed = _tiled(*(f.per_seed for f in figures))
    return Figure(np.mean(per_seed, axis=0), np.mean([f.replicates for f in figures], axis=0))


class Bootstrap:
    """
    One resampling plan: per replicate, a seed index and, per row set, the rows drawn with replacement. Every figure
    computed with the same plan is paired with every other (same seeds, same rows).

    Args:
        rows (`dict[Hashable, int]`): the number of rows of each row set: in a block, a domain's evaluation rows, keyed
            by the domain; over several blocks, any key (see [`overall_uncertainty`]). Row sets are drawn in this
            order, so the same sizes in the same order (and the same `n_seeds`, `n_resamples`, `seed`) give the same
            draws whatever the keys.
        n_seeds (`int`): a multiple of every compared model's number of seeds (their least common multiple); a model
            with `k` seeds uses seed `i % k` of the plan's seed index `i`.
        n_resamples (`int`, *optional*, defaults to 1000): bootstrap replicates.
        seed (`int`, *optional*, defaults to 0): seed of the resampling itself (results are reproducible).
    """

    def __init__(self, rows: dict[Hashable, int], n_seeds: int, n_resamples: int = N_RESAMPLES, seed: int = 0):
        if n_seeds < 1 or n_resamples < 1:
            raise ValueError(f"Bootstrap needs n_seeds >= 1 and n_resamples >= 1; got {n_seeds} and {n_resamples}.")
        rng = np.random.default_rng(seed)
        self.n_seeds, self.n_resamples = n_seeds, n_resamples
        self.seed_of = rng.integers(n_seeds, size=n_resamples)
        self.rows_of = {key: rng.integers(n, size=(n_resamples, n)) for key, n in rows.items() if n > 0}

    def figure(
        self, domain: Hashable, references: np.ndarray, predictions: np.ndarray, metric: str, num_labels: int
    ) -> Figure:
        """
        A score of one model on one domain.

        Args:
            domain (`Hashable`): the key of the domain's row set in the plan (in a block: the domain's name).
            references (`np.ndarray`): `(n,)` the label ids of the domain's evaluation rows.
            predictions (`np.ndarray`): `(seeds, n)` the predicted ids of the model trained with each seed; a model
                with fewer seeds than the plan (e.g. one given teacher) must have a number that divides it; it uses
                seed `i % seeds` of the plan's seed index `i`.
            metric (`str`): a key of [`METRICS`].
        """
        references, predictions = np.asarray(references), np.atleast_2d(np.asarray(predictions))
        seeds = predictions.shape[0]
        if predictions.shape[1:] != references.shape or self.n_seeds % seeds:
            raise ValueError(
                f"predictions of {domain!r} have shape {predictions.shape}; expected (seeds, rows) with rows = "
                f"{references.shape[0]} and seeds dividing {self.n_seeds}."
            )
        score = METRICS[metric]
        per_seed = score(np.broadcast_to(references, predictions.shape), predictions, num_labels)
        rows = self.rows_of[domain]
        # a model with fewer seeds (a given teacher: one) is paired with every seed of the others
        replicates = score(references[rows], predictions[(self.seed_of % seeds)[:, None], rows], num_labels)
        return Figure(np.asarray(per_seed, dtype=float), np.asarray(replicates, dtype=float))


@dataclass(frozen=True)
class Comparison:
    """A paired difference `a - b` of one figure, its interval and its two-sided p-value."""

    a: str
    b: str
    figure: str
    diff: float
    ci_low: float
    ci_high: float
    p: float

    @property
    def verdict(self) -> str:
        """`"better"`, `"worse"` (a than b, at the 5 % level) or `"no significant difference"`."""
        if self.p < 1 - CONFIDENCE and self.diff > 0:
            return "better"
        if self.p < 1 - CONFIDENCE and self.diff < 0:
            return "worse"
        return "no significant difference"

    def as_dict(self) -> dict[str, object]:
        return {
            "a": self.a,
            "b": self.b,
            "metric": self.figure,
            "diff": self.diff,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p": self.p,
            "verdict": self.verdict,
        }


def paired_difference(a: Figure, b: Figure, names: tuple[str, str, str], confidence: float = CONFIDENCE) -> Comparison:
    """
    The difference `a - b` of two figures computed with the same [`Bootstrap`] plan (same seeds, same rows).

    The p-value is the two-sided percentile-bootstrap one, `2 (1 + #{d* on the other side of 0 than d}) / (1 + B)`
    (capped at 1; never 0): it is below 0.05 when the 95 % percentile interval leaves out 0 (up to the resolution of
    the replicates), so the verdict and the interval agree.

    Args:
        names (`tuple[str, str, str]`): the names of a, of b and of the figure, for the record.
    """
    difference = a - b
    estimate = difference.estimate(confidence)
    replicates = difference.replicates[~np.isnan(difference.replicates)]
    below, above = int(np.count_nonzero(replicates <= 0)), int(np.count_nonzero(replicates >= 0))
    p = 2 * (1 + min(below, above)) / (1 + replicates.size)
    return Comparison(*names, estimate.mean, estimate.ci_low, estimate.ci_high, min(p, 1.0))


SCORES = ("macro_f1", "accuracy")
NEAREST_RELATIVE = {
    "distilled": "baseline",
    "adaptive": "distilled",
    "self_trained": "adaptive",
    "intermediate": "distilled",
    "multi_teacher": "distilled",
    "augmented": "distilled",
    "adaptive_augmented": "adaptive",
    "dapt_student": "adaptive",
}
"""Besides every student against the teacher, each model of the experiment against the one it differs from by one
thing: distilled vs the no-teacher baseline, adaptive (target text) and intermediate (hidden/attention terms) vs
distilled, self_trained (hard pseudo-labels on the target text) vs adaptive, multi_teacher (one teacher per source
domain) and augmented (augmented source text) vs distilled, adaptive_augmented (augmented source and target text)
vs adaptive, dapt_student (the adaptive student of the adapted
teacher) vs adaptive."""

EXPORTED_SUFFIX = "-int8"
"""The name of an experiment's exported INT8 variant of a student is the student's plus this; each is compared with
its PyTorch student."""

COMPARED = ("target_mean_macro_f1", "in_domain_macro_f1")
"""The mean figures every comparison is made on (a block's comparisons add each domain's macro-F1)."""
Predicted = dict[str, dict[str, np.ndarray]]
"""Per model and domain, the `(n_seeds, n)` predicted ids."""


def n_seeds_of(*predictions: Predicted) -> int:
    """The seeds of a plan for these models: the least common multiple of their numbers of seeds."""
    return math.lcm(*(ids.shape[0] for per_model in predictions for d in per_model.values() for ids in d.values()))


def block_figures(
    plan: Bootstrap,
    references: dict[str, np.ndarray],
    predictions: Predicted,
    source_domains: Sequence[str],
    target_domains: Sequence[str],
    num_labels: int,
    row_sets: dict[str, Hashable] | None = None,
) -> dict[str, dict[str, Figure]]:
    """
    Every model's figures on one block, drawn with `plan`: `<score>@<domain>`, `in_domain_<score>`,
    `target_mean_<score>` and `transfer_gap_<score>` (the ones the block's domains allow); no retention (see
    [`add_retention`]).

    Args:
        row_sets (`dict[str, Hashable]`, *optional*): the plan's row-set key of each domain (by default the domain).
    """
    row_sets = row_sets or {}
    figures: dict[str, dict[str, Figure]] = {}
    for name, per_domain in predictions.items():
        figures[name] = {}
        for score in SCORES:
            for domain, ids in per_domain.items():
                key = row_sets.get(domain, domain)
                figures[name][f"{score}@{domain}"] = plan.figure(key, references[domain], ids, score, num_labels)
            for label, domains in (("in_domain", source_domains), ("target_mean", target_domains)):
                if domains:
                    figures[name][f"{label}_{score}"] = mean_of([figures[name][f"{score}@{d}"] for d in domains])
            if source_domains and target_domains:
                gap = figures[name][f"in_domain_{score}"] - figures[name][f"target_mean_{score}"]
                figures[name][f"transfer_gap_{score}"] = gap
    return figures


def add_retention(figures: dict[str, dict[str, Figure]], teacher: str | None) -> None:
    """Add each student's `retention_<mean figure>`: its mean figure / the teacher's, replicate by replicate (the
    ratio of the means)."""
    for name in figures:
        if teacher is not None and name != teacher and teacher in figures:
            for score in SCORES:
                for label in ("in_domain", "target_mean"):
                    key = f"{label}_{score}"
                    if key in figures[name] and key in figures[teacher]:
                        figures[name][f"retention_{key}"] = figures[name][key] / figures[teacher][key]


def compare_models(
    figures: dict[str, dict[str, Figure]], teacher: str | None, compared: Sequence[str]
) -> tuple[list[dict[str, object]], dict[str, str | None]]:
    """
    The paired comparisons of `compared` figures (every student vs the teacher, and the [`NEAREST_RELATIVE`] pairs)
    as [`Comparison.as_dict`]s, and the significant best of every column (each figure but retention and gap: the
    model with the highest mean when it is significantly better than the runner-up, else `None`).
    """
    pairs = [(name, teacher) for name in figures if teacher is not None and name != teacher and teacher in figures]
    pairs += [(a, b) for a, b in NEAREST_RELATIVE.items() if a in figures and b in figures]
    pairs += [(a, a.removesuffix(EXPORTED_SUFFIX)) for a in figures if a.endswith(EXPORTED_SUFFIX)]
    pairs = [(a, b) for a, b in dict.fromkeys(pairs) if b in figures]
    comparisons = [
        paired_difference(figures[a][key], figures[b][key], (a, b, key)).as_dict()
        for a, b in pairs
        for key in compared
        if key in figures[a] and key in figures[b]
    ]
    best = {}
    columns = {
        key for per_model in figures.values() for key in per_model if not key.startswith(("retention", "transfer"))
    }
    for key in sorted(columns):
        ranked = sorted((f[key].per_seed.mean(), name) for name, f in figures.items() if key in f)
        if len(ranked) < 2:
            continue
        (_, second), (_, first) = ranked[-2], ranked[-1]
        comparison = paired_difference(figures[first][key], figures[second][key], (first, second, key))
        best[key] = first if comparison.verdict == "better" else None
    return comparisons, best


def _estimates(per_model: dict[str, Figure], cells: bool) -> dict:
    """[`Estimate.as_dict`] of the cells (`<score>@<domain>`, as domain -> score) or of the other figures."""
    out: dict[str, dict] = {}
    for key, figure in per_model.items():
        if ("@" in key) == cells:
            if cells:
                score, domain = key.split("@")
                out.setdefault(domain, {})[score] = figure.estimate().as_dict()
            else:
                out[key] = figure.estimate().as_dict()
    return out


def _method(bootstrap: str, n_resamples: int) -> dict[str, object]:
    return {
        "bootstrap": bootstrap,
        "n_resamples": n_resamples,
        "confidence": CONFIDENCE,
        "p_value": "paired percentile bootstrap, two-sided",
    }


def block_uncertainty(
    references: dict[str, np.ndarray],
    predictions: Predicted,
    source_domains: Sequence[str],
    target_domains: Sequence[str],
    teacher: str | None,
    num_labels: int,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> dict[str, object]:
    """
    Intervals, paired comparisons and significant bests of one block, from the predicted ids of every model.

    Args:
        references (`dict[str, np.ndarray]`): per domain, the `(n,)` label ids of its evaluation rows.
        predictions (`dict[str, dict[str, np.ndarray]]`): per model and domain, the `(n_seeds, n)` predicted ids.

    Returns:
        `dict`: `cells` (model -> domain -> score -> [`Estimate.as_dict`]), `summary` (model -> figure -> estimate:
        `in_domain_<score>`, `target_mean_<score>`, `transfer_gap_<score>`, and for students
        `retention_in_domain_<score>` and `retention_target_mean_<score>`, retention being the ratio of the means),
        `comparisons` (a list of [`Comparison.as_dict`]), `best` (column -> the model whose mean is highest there when
        it is significantly better than the runner-up, else `None`; columns are `<score>@<domain>` and the summary
        figures) and `method`.
    """
    plan = Bootstrap({d: len(r) for d, r in references.items()}, n_seeds_of(predictions), n_resamples, seed)
    figures = block_figures(plan, references, predictions, source_domains, target_domains, num_labels)
    add_retention(figures, teacher)
    comparisons, best = compare_models(figures, teacher, [*COMPARED, *(f"macro_f1@{d}" for d in references)])
    return {
        "cells": {name: _estimates(per_model, True) for name, per_model in figures.items()},
        "summary": {name: _estimates(per_model, False) for name, per_model in figures.items()},
        "comparisons": comparisons,
        "best": best,
        "method": _method("two-level: a seed, then the evaluation rows of every domain with replacement", n_resamples),
    }


def row_sets(references: Sequence[dict[str, np.ndarray]]) -> list[dict[str, tuple[str, int]]]:
    """
    The row set of every domain of every block: `(domain, i)`, the `i`-th distinct set of evaluation rows of that
    domain, in order of appearance. Two blocks that evaluate a domain on the same rows (the same number of rows and
    the same labels: the splits are deterministic) share its row set.
    """
    seen: dict[str, list[np.ndarray]] = {}
    keys = []
    for per_domain in references:
        keys.append({})
        for domain, labels in per_domain.items():
            labels, known = np.asarray(labels), seen.setdefault(domain, [])
            index = next((i for i, r in enumerate(known) if np.array_equal(r, labels)), None)
            if index is None:
                index = len(known)
                known.append(labels)
            keys[-1][domain] = (domain, index)
    return keys


def overall_uncertainty(
    blocks: Sequence[tuple[dict[str, np.ndarray], Predicted, Sequence[str], Sequence[str]]],
    teacher: str | None,
    num_labels: int,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> dict[str, object]:
    """
    Intervals, paired comparisons and significant bests of the figures averaged over blocks (e.g. over the held-out
    domains of a leave-one-out run), bootstrapped over all the blocks at once (see the module docstring): one seed
    index shared by every block, one resample per row set ([`row_sets`]), each block's figures from that draw, their
    mean over blocks, and retention as the ratio of the overall means.

    Args:
        blocks: per block, `(references, predictions, source_domains, target_domains)` as [`block_uncertainty`] takes
            them.

    Returns:
        `dict`: `summary` (model -> figure -> [`Estimate.as_dict`]: `in_domain_<score>`, `target_mean_<score>`,
        `transfer_gap_<score>`, the mean over the blocks that have it, and for students `retention_in_domain_<score>`
        and `retention_target_mean_<score>`), `comparisons` (on [`COMPARED`]), `best` (per summary column but
        retention and gap) and `method`. Only models present in every block are counted.
    """
    keys = row_sets([references for references, *_ in blocks])
    rows = {key: len(blocks[b][0][d]) for b, per_domain in enumerate(keys) for d, key in per_domain.items()}
    plan = Bootstrap(rows, n_seeds_of(*(predictions for _, predictions, *_ in blocks)), n_resamples, seed)
    per_block = [
        block_figures(plan, references, predictions, sources, targets, num_labels, keys[b])
        for b, (references, predictions, sources, targets) in enumerate(blocks)
    ]
    names = [name for name in per_block[0] if all(name in figures for figures in per_block)]
    overall: dict[str, dict[str, Figure]] = {}
    for name in names:
        overall[name] = {}
        for key in dict.fromkeys(k for figures in per_block for k in figures[name] if "@" not in k):
            overall[name][key] = mean_of([figures[name][key] for figures in per_block if key in figures[name]])
    add_retention(overall, teacher)
    comparisons, best = compare_models(overall, teacher, COMPARED)
    bootstrap = (
        "over all blocks at once: per replicate one seed index shared by every block, then the rows of every row set "
        "(a domain's evaluation rows; the same rows in two blocks are one row set) with replacement; each block's "
        "figures from that draw, the overall figure their mean over blocks, retention the ratio of the overall means"
    )
    return {
        "summary": {name: _estimates(per_model, False) for name, per_model in overall.items()},
        "comparisons": comparisons,
        "best": best,
        "method": _method(bootstrap, n_resamples) | {"blocks": len(blocks), "row_sets": len(rows)},
    }
