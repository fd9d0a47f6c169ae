"""Metrics as local `evaluate` modules that load offline, plus helpers for training loops.

hfkd ships three `evaluate.Metric` scripts inside the package, one folder each (`hfkd/metrics/<name>/<name>.py`):

| name | inputs | returns |
| --- | --- | --- |
| `"classification"` | class ids | `accuracy`, `macro_f1`, `n` |
| `"agreement"` | student logits vs teacher logits | `agreement`, `kl`, `n` |
| `"calibration"` | logits or probabilities, class ids | `ece`, `mce`, `n` |

Naming: `load_metric("classification")` and `load_metric("hfkd/classification")` both load the local module. Any
other string goes to `evaluate.load` unchanged, so Hub metrics keep their Hub names (`"accuracy"`, `"f1"`,
`"evaluate-metric/f1"`, `"user/metric"`) and a path to a folder or script loads your own module. There are no local
aliases for Hub names on purpose: `"f1"` from the Hub returns `{"f1": ...}` with binary averaging by default, and
code written against it must keep getting it; `"classification"` is the local replacement for `"accuracy"` and
`"f1"` (macro). To load your own folder that is called like a local metric, pass it as a path
(`"./classification"`); for a Hub repo owned by an account named `hfkd`, call `evaluate.load` directly.

Loading a local module never touches the network. `evaluate` copies the script into the modules cache
(`$HF_MODULES_CACHE`, by default `~/.cache/huggingface/modules/evaluate_modules/metrics/<name>/<sha256>/`) under a
file lock, which makes concurrent loads from several processes (`accelerate launch`) safe, and the metric instance
creates `$HF_METRICS_CACHE/<name>/default/` (by default `~/.cache/huggingface/metrics/`), where it would buffer
predictions as Arrow files; `load_metric` keeps them in memory instead (`keep_in_memory=True`) unless you ask for
distributed evaluation (`num_process > 1`). Nothing is written outside the Hugging Face cache unless you pass
`cache_dir`. A load takes a few milliseconds once `evaluate` is imported, so `load_metric` returns a fresh module
every call instead of memoising: modules are stateful (`add_batch` buffers data until `compute`), and a shared one
would mix the batches of two callers.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
from transformers.utils import logging

from ..losses import IGNORE_INDEX
from ..models import hub_offline

# `import evaluate` takes seconds (evaluate.evaluator imports transformers.pipelines and torch): import it lazily.
if TYPE_CHECKING:
    import evaluate
    from transformers import EvalPrediction

logger = logging.get_logger(__name__)

_HERE = os.path.dirname(os.path.abspath(__file__))

LOCAL_METRICS: dict[str, str] = {
    name: os.path.join(_HERE, name) for name in ("classification", "agreement", "calibration")
}
"""Local metric name -> folder holding `<name>.py`, loadable with `evaluate.load(folder)`."""

LOCAL_PREFIX = "hfkd/"
"""`load_metric(LOCAL_PREFIX + name)` always means the local module `name` (bare `name` does too)."""

_offline_lock = threading.Lock()

__all__ = [
    "IGNORE_INDEX",
    "LOCAL_METRICS",
    "LOCAL_PREFIX",
    "compute_classification_metrics",
    "load_metric",
    "local_metric_path",
    "make_compute_metrics",
]


def local_metric_path(name: str) -> str | None:
    """Returns the folder of the local metric `name` (`"classification"` or `"hfkd/classification"`), else `None`.

    Args:
        name (`str`): a metric name as given to [`load_metric`].

    Returns:
        `str | None`: the folder to pass to `evaluate.load`, or `None` when `name` is not a local metric.
    """
    if name.startswith(LOCAL_PREFIX):
        bare = name[len(LOCAL_PREFIX) :]
        if bare not in LOCAL_METRICS:
            raise ValueError(
                f"Metric {name!r} uses the local prefix {LOCAL_PREFIX!r} but {bare!r} is not a local metric; "
                f"choose one of {sorted(LOCAL_METRICS)}."
            )
        return LOCAL_METRICS[bare]
    return LOCAL_METRICS.get(name)


@contextmanager
def _evaluate_offline_mode(offline: bool):
    """Makes `evaluate` honour `HF_HUB_OFFLINE` for the duration of one load.

    evaluate 0.4.6 only reads its own `HF_EVALUATE_OFFLINE`; under `HF_HUB_OFFLINE=1` alone it still sends requests
    (a download-count HEAD and the script download), which fail only after connection timeouts on a network that
    drops packets. With its flag set it fails at once and falls back to a copy in the modules cache, if any.
    """
    import evaluate.config

    if not offline or evaluate.config.HF_EVALUATE_OFFLINE:
        yield
        return
    with _offline_lock:
        evaluate.config.HF_EVALUATE_OFFLINE = True
        try:
            yield
        finally:
            evaluate.config.HF_EVALUATE_OFFLINE = False


def _looks_like_path(name: str) -> bool:
    """Whether `name` is meant as a file system path rather than a Hub id (`"metric"` or `"owner/metric"`)."""
    return os.path.isabs(name) or name.startswith(("./", "../", "~")) or name.endswith(".py") or name.count("/") > 1


def _load_keywords() -> set[str]:
    """The keyword arguments `evaluate.load` really uses for a local module (others are silently dropped)."""
    import evaluate

    keywords = set()
    for function in (evaluate.load, evaluate.EvaluationModule.__init__):
        for parameter in inspect.signature(function).parameters.values():
            if parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
                keywords.add(parameter.name)
    return keywords - {"self", "path", "hash"}


def load_metric(name: str, **kwargs: Any) -> evaluate.EvaluationModule:
    """Loads a metric: an hfkd local module by name, else whatever `evaluate.load(name)` finds.

    Every call returns a new module (they are stateful; see the module docstring), so the same name can be loaded in
    several places and processes at once.

    Args:
        name (`str`):
            - a local metric, `"classification"`, `"agreement"` or `"calibration"`, optionally prefixed with
              `"hfkd/"`; loaded from the package folder, offline.
            - anything else, passed to `evaluate.load` unchanged: a Hub metric (`"accuracy"`,
              `"evaluate-metric/f1"`, `"user/metric"`) or a path to your own module's folder or script.
        **kwargs:
            Passed to `evaluate.load` (`config_name`, `keep_in_memory`, `cache_dir`, `experiment_id`,
            `process_id`, `num_process`, `seed`, ...). Options of the computation itself (`num_labels`,
            `temperature`, `n_bins`, ...) belong to `metric.compute(...)`. For local metrics `keep_in_memory`
            defaults to `True` (evaluate's default is `False`) unless `num_process > 1`, where evaluate needs the
            on-disk cache in a shared `cache_dir` to gather the processes' batches.

    Returns:
        `evaluate.EvaluationModule`: a fresh module; call `.compute(predictions=..., references=..., **options)`.

    Raises:
        `ValueError`: for a local metric given a keyword `evaluate.load` would silently drop (such as
            `num_labels`); or when a non-local metric cannot be found because offline mode is on or the Hub is not
            reachable (the message lists the local metrics).

    Example:

    ```python
    >>> from hfkd.metrics import load_metric
    >>> metric = load_metric("classification")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])["accuracy"]
    0.6666666666666666
    ```
    """
    import evaluate
    import requests

    if not isinstance(name, str) or not name:
        raise ValueError(f"load_metric: name must be a non-empty string, got {name!r}.")
    path = local_metric_path(name)
    if path is not None:
        unknown = sorted(set(kwargs) - _load_keywords())
        if unknown:
            raise ValueError(
                f"load_metric({name!r}) got keyword argument(s) {unknown} that evaluate.load would silently ignore. "
                f"Pass computation options to compute() instead, e.g. "
                f"load_metric({name!r}).compute(predictions=..., references=..., {unknown[0]}=...)."
            )
        if kwargs.get("num_process", 1) == 1:
            # In memory unless asked otherwise: no Arrow files under HF_METRICS_CACHE, and no 1 s wait on the
            # cache-file lock when two instances (threads, processes) share the default experiment_id.
            kwargs.setdefault("keep_in_memory", True)
        return evaluate.load(path, **kwargs)

    offline = hub_offline()
    try:
        with _evaluate_offline_mode(offline):
            return evaluate.load(name, **kwargs)
    except (FileNotFoundError, ConnectionError, TimeoutError, requests.exceptions.RequestException) as err:
        if _looks_like_path(name):  # a missing local module: evaluate's FileNotFoundError already says where
            raise
        local = ", ".join(repr(local_name) for local_name in sorted(LOCAL_METRICS))
        if offline:
            reason = (
                "offline mode is on (HF_HUB_OFFLINE or HF_EVALUATE_OFFLINE) and no copy is in the evaluate modules "
                "cache. Unset offline mode to download it"
            )
        else:
            reason = (
                f"evaluate could not get it from the Hub ({err}). Check the name (Hub metrics look like 'accuracy' "
                "or 'evaluate-metric/f1') and your connection"
            )
        raise ValueError(
            f"Metric {name!r} is neither an hfkd local metric nor a local path, so it needs the Hugging Face Hub, but "
            f"{reason}, or use a local metric that works offline: {local} ('classification' gives accuracy and "
            f"macro_f1), or a path to your own evaluate module folder."
        ) from err


def compute_classification_metrics(
    predictions: Sequence[int] | Sequence[Sequence[float]] | np.ndarray,
    references: Sequence[int] | np.ndarray,
    num_labels: int | None = None,
) -> dict[str, float]:
    """Accuracy, macro-F1 and the number of examples, from the local `classification` module, as plain numbers.

    Args:
        predictions (`Sequence[int]`, `Sequence[Sequence[float]]` or `np.ndarray`):
            class ids of shape `(n,)`, or logits/probabilities of shape `(n, num_labels)` (their argmax is used).
        references (`Sequence[int]` or `np.ndarray`): gold class ids of shape `(n,)`.
        num_labels (`int`, *optional*):
            size of the label space. When given, ids must lie in `[0, num_labels)` and macro-F1 averages over all
            `num_labels` classes, a class absent from both predictions and references counting as F1 = 0. When
            `None`, macro-F1 averages over the classes that occur (scikit-learn's default).

    Returns:
        `dict[str, float]`: `{"accuracy": float, "macro_f1": float, "n": int}`.
    """
    predictions = np.asarray(predictions)
    references = np.asarray(references).reshape(-1)
    if predictions.ndim == 2:
        predictions = predictions.argmax(axis=-1)
    elif predictions.ndim != 1:
        raise ValueError(
            f"compute_classification_metrics: predictions must be class ids (n,) or logits (n, num_labels), got "
            f"shape {predictions.shape}."
        )
    if predictions.shape[0] != references.shape[0]:
        raise ValueError(
            f"compute_classification_metrics: got {predictions.shape[0]} predictions but {references.shape[0]} "
            "references; pass one prediction per reference."
        )
    # In memory: a training loop evaluates often, and nothing needs to go through the on-disk Arrow cache.
    metric = load_metric("classification", keep_in_memory=True)
    result = metric.compute(
        predictions=predictions.astype(np.int64), references=references.astype(np.int64), num_labels=num_labels
    )
    return {"accuracy": float(result["accuracy"]), "macro_f1": float(result["macro_f1"]), "n": int(result["n"])}


def make_compute_metrics(num_labels: int | None = None) -> Callable[[EvalPrediction], dict[str, float]]:
    """Builds a `compute_metrics` function for `transformers.Trainer` (and `DistillationTrainer`).

    The function takes an `EvalPrediction`, uses the first element of `.predictions` when it is a tuple (models
    that also return hidden states or attentions), drops the rows whose label is `-100`, and returns
    [`compute_classification_metrics`]: `accuracy`, `macro_f1` and `n` (the Trainer logs them as `eval_accuracy`,
    ...). Predictions may be logits `(n, num_labels)` or class ids `(n,)` (from `preprocess_logits_for_metrics`).

    Args:
        num_labels (`int`, *optional*):
            size of the label space, see [`compute_classification_metrics`]. Pass `model.config.num_labels` to check
            label ids and to macro-average over every class (absent ones count as 0).

    Returns:
        `Callable[[EvalPrediction], dict[str, float]]`.

    Example:

    ```python
    >>> trainer = Trainer(model, args, eval_dataset=eval_ds, compute_metrics=make_compute_metrics(3))
    ```
    """

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        predictions = eval_prediction.predictions
        labels = eval_prediction.label_ids
        if isinstance(predictions, (tuple, list)):
            predictions = predictions[0]
        if isinstance(labels, (tuple, list)):
            labels = labels[0]
        if labels is None:
            raise ValueError(
                "compute_metrics: the EvalPrediction has no label_ids; give the evaluation dataset a 'labels' (or "
                "'label') column, or do not pass compute_metrics for unlabelled data."
            )
        predictions = np.asarray(predictions)
        labels = np.asarray(labels)
        if predictions.ndim == labels.ndim + 1:  # logits: (..., num_labels)
            predictions = predictions.reshape(-1, predictions.shape[-1])
        elif predictions.ndim == labels.ndim:  # class ids already
            predictions = predictions.reshape(-1)
        else:
            raise ValueError(
                f"compute_metrics: predictions of shape {predictions.shape} do not match label_ids of shape "
                f"{labels.shape}; expected logits (n, num_labels) or class ids (n,) for labels (n,)."
            )
        labels = labels.reshape(-1)
        keep = labels != IGNORE_INDEX
        if not keep.any():
            raise ValueError(
                f"compute_metrics: all {labels.size} evaluation rows have label {IGNORE_INDEX} (ignored), so there "
                "is nothing to score; evaluate on labelled data."
            )
        if not keep.all():
            logger.info(f"compute_metrics: ignoring {int((~keep).sum())} rows with label {IGNORE_INDEX}.")
        return compute_classification_metrics(predictions[keep], labels[keep], num_labels=num_labels)

    return compute_metrics
