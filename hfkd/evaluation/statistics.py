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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


@dataclass(frozen=True)
class Figure:
    """A figure as the bootstrap sees it: its value for each seed on all the rows, and its replicates."""

    per_seed: np.ndarray  # (n_seeds,)
    replicates: np.ndarray  # (n_resamples,)

    def estimate(self, confidence: float = CONFIDENCE) -> Estimate:
        tail = (1 - confidence) / 2 * 100
        low, high = np.nanpercentile(self.replicates, [tail, 100 - tail])
        return Estimate(float(np.mean(self.per_seed)), float(low), float(high), tuple(map(float, self.per_seed)))

    def __add__(self, other: Figure) -> Figure:
        return Figure(self.per_seed + other.per_seed, self.replicates + other.replicates)

    def __sub__(self, other: Figure) -> Figure:
        return Figure(self.per_seed - other.per_seed, self.replicates - other.replicates)

    def __truediv__(self, other: Figure) -> Figure:
        with np.errstate(divide="ignore", invalid="ignore"):
            return Figure(self.per_seed / other.per_seed, self.replicates / other.replicates)


def mean_of(figures: Sequence[Figure]) -> Figure:
    """The mean of several figures (e.g. a model's score over the target domains), replicate by replicate."""
    return Figure(np.mean([f.per_seed for f in figures], axis=0), np.mean([f.replicates for f in figures], axis=0))


class Bootstrap:
    """
    One resampling plan for a block: per replicate, a seed and, per domain, the rows drawn with replacement. Every
    figure computed with the same plan is paired with every other (same seeds, same rows).

    Args:
        rows (`dict[str, int]`): the number of evaluation rows of each domain.
        n_seeds (`int`): how many training seeds each model has (the same for the models compared).
        n_resamples (`int`, *optional*, defaults to 1000): bootstrap replicates.
        seed (`int`, *optional*, defaults to 0): seed of the resampling itself (results are reproducible).
    """

    def __init__(self, rows: dict[str, int], n_seeds: int, n_resamples: int = N_RESAMPLES, seed: int = 0):
        if n_seeds < 1 or n_resamples < 1:
            raise ValueError(f"Bootstrap needs n_seeds >= 1 and n_resamples >= 1; got {n_seeds} and {n_resamples}.")
        rng = np.random.default_rng(seed)
        self.n_seeds, self.n_resamples = n_seeds, n_resamples
        self.seed_of = rng.integers(n_seeds, size=n_resamples)
        self.rows_of = {domain: rng.integers(n, size=(n_resamples, n)) for domain, n in rows.items() if n > 0}

    def figure(
        self, domain: str, references: np.ndarray, predictions: np.ndarray, metric: str, num_labels: int
    ) -> Figure:
        """
        A score of one model on one domain.

        Args:
            references (`np.ndarray`): `(n,)` the label ids of the domain's evaluation rows.
            predictions (`np.ndarray`): `(seeds, n)` the predicted ids of the model trained with each seed; a model
                with fewer seeds than the plan (e.g. one given teacher) must have a number that divides it.
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
NEAREST_RELATIVE = {"distilled": "baseline", "adaptive": "distilled", "intermediate": "distilled"}
"""Besides every student against the teacher, each model of the experiment against the one it differs from by one
thing: distilled vs the no-teacher baseline, adaptive (target text) and intermediate (hidden/attention terms) vs
distilled."""


def block_uncertainty(
    references: dict[str, np.ndarray],
    predictions: dict[str, dict[str, np.ndarray]],
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
        `comparisons` (a list of
        [`Comparison.as_dict`]) and `best` (column -> the model whose mean is highest there when it is significantly
        better than the runner-up, else `None`; columns are `<score>@<domain>` and the summary figures).
    """
    n_seeds = max(arr.shape[0] for per_domain in predictions.values() for arr in per_domain.values())
    plan = Bootstrap({d: len(r) for d, r in references.items()}, n_seeds, n_resamples, seed)
    figures: dict[str, dict[str, Figure]] = {}
    for name, per_domain in predictions.items():
        figures[name] = {}
        for score in SCORES:
            for domain, ids in per_domain.items():
                figures[name][f"{score}@{domain}"] = plan.figure(domain, references[domain], ids, score, num_labels)
            for label, domains in (("in_domain", source_domains), ("target_mean", target_domains)):
                if domains:
                    figures[name][f"{label}_{score}"] = mean_of([figures[name][f"{score}@{d}"] for d in domains])
            if source_domains and target_domains:
                gap = figures[name][f"in_domain_{score}"] - figures[name][f"target_mean_{score}"]
                figures[name][f"transfer_gap_{score}"] = gap
    for name in figures:
        if teacher is not None and name != teacher:
            for score in SCORES:
                for label in ("in_domain", "target_mean"):
                    key = f"{label}_{score}"
                    if key in figures[name]:
                        figures[name][f"retention_{key}"] = figures[name][key] / figures[teacher][key]

    pairs = [(name, teacher) for name in figures if teacher is not None and name != teacher]
    pairs += [(a, b) for a, b in NEAREST_RELATIVE.items() if a in figures and b in figures]
    compared = [f"{label}_macro_f1" for label in ("target_mean", "in_domain")] + [f"macro_f1@{d}" for d in references]
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

    def as_dicts(per_model: dict[str, Figure], cells: bool) -> dict:
        out: dict[str, dict] = {}
        for key, figure in per_model.items():
            if ("@" in key) == cells:
                if cells:
                    score, domain = key.split("@")
                    out.setdefault(domain, {})[score] = figure.estimate().as_dict()
                else:
                    out[key] = figure.estimate().as_dict()
        return out

    return {
        "cells": {name: as_dicts(per_model, True) for name, per_model in figures.items()},
        "summary": {name: as_dicts(per_model, False) for name, per_model in figures.items()},
        "comparisons": comparisons,
        "best": best,
        "method": {
            "bootstrap": "two-level: a seed, then the evaluation rows of every domain with replacement",
            "n_resamples": n_resamples,
            "confidence": CONFIDENCE,
            "p_value": "paired percentile bootstrap, two-sided",
        },
    }
