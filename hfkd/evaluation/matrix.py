"""Many models on many domains: the cross-domain matrix.

For every (model, domain) the test split is run once; the local `evaluate` modules in `hfkd.metrics` turn the logits
into accuracy, macro-F1 and calibration (ECE), and, for students, agreement and KL with the teacher's logits on the
same rows. The derived figures (retention, in-domain and target means, transfer gap) are `hfkd.evaluation.results`'.

Under several processes (`accelerate launch`) each domain's rows are sharded and gathered back in order
(`gather_for_metrics`); every process returns the same numbers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from accelerate import Accelerator
from datasets import DatasetDict
from transformers import AutoConfig, PreTrainedModel
from transformers.utils import logging

from ..data.long_text import LongTextOptions
from ..inference import Predictions, count_parameters, predict, safetensors_size
from ..metrics import load_metric
from ..models import (
    labels_are_generic,
    load_classifier,
    load_tokenizer,
    model_label_names,
    num_layers,
    resolve_model_name_or_path,
)
from .label_free import atc_estimate, atc_threshold
from .results import choose_student, summarize
from .statistics import block_uncertainty

logger = logging.get_logger(__name__)


def _weights_bytes(entry: Any) -> int | None:
    """The size on disk of a model folder's `*.safetensors` (a `builtin:` name resolved to its folder), or of the file
    a loaded model runs from (an exported ONNX file: its `path`); None for other objects and Hub ids."""
    if not isinstance(entry, str):
        path = getattr(entry[0], "path", None) if isinstance(entry, tuple) else None
        return os.path.getsize(path) if isinstance(path, str) and os.path.isfile(path) else None
    try:
        folder = resolve_model_name_or_path(entry)
    except ValueError:
        return None
    return (safetensors_size(folder) or {}).get("bytes")


def load_model_for_eval(name_or_path: str, label_names: Sequence[str]) -> tuple[PreTrainedModel, Any]:
    """A saved classifier and its tokenizer; its labels must be the data's (by name; generic LABEL_i by position)."""
    config = AutoConfig.from_pretrained(resolve_model_name_or_path(name_or_path))
    if not any(a.endswith("ForSequenceClassification") for a in config.architectures or []):
        raise ValueError(
            f"Model {name_or_path!r} has no trained classification head (architectures {config.architectures}); "
            "evaluate fine-tuned classifiers, e.g. the output_dir of scripts/finetune.py or scripts/distill.py."
        )
    names = model_label_names(config)
    if labels_are_generic(config) and len(names) != len(label_names):
        raise ValueError(
            f"Model {name_or_path!r} has {len(names)} generic labels but the data has {len(label_names)} "
            f"({list(label_names)}); evaluate a model fine-tuned on this label space."
        )
    if not labels_are_generic(config) and sorted(names) != sorted(label_names):
        raise ValueError(
            f"Model {name_or_path!r} predicts {names} but the data's labels are {list(label_names)}; evaluate it on "
            "data with the same label names (set class_names), or pass a model trained on these labels."
        )
    # In the data's label order: a trained head reordered by name, generic LABEL_i taken as the data's i-th label.
    model = load_classifier(name_or_path, label_names=label_names)
    return model, load_tokenizer(name_or_path)


def score(
    predictions: Predictions,
    num_labels: int,
    teacher: Predictions | None = None,
    extra_metrics: Sequence[str] | None = None,
    return_predictions: bool = False,
) -> dict[str, Any] | tuple[dict[str, Any], tuple[dict, dict]]:
    """The numbers of one (model, domain) cell: accuracy, macro_f1, n, ece; agreement and kl against a teacher."""
    ids = predictions.logits.argmax(-1)
    cell = dict(
        load_metric("classification").compute(predictions=ids, references=predictions.labels, num_labels=num_labels)
    )
    calibration = load_metric("calibration").compute(predictions=predictions.logits, references=predictions.labels)
    cell["ece"] = calibration["ece"]
    if teacher is not None:
        agreement = load_metric("agreement").compute(predictions=predictions.logits, references=teacher.logits)
        cell["agreement"], cell["kl"] = agreement["agreement"], agreement["kl"]
    extra = {}
    for name in extra_metrics or []:
        extra[name] = load_metric(name).compute(predictions=ids, references=predictions.labels)
    if extra:
        cell["extra"] = extra
    return cell


def mean_cell(cells: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The cell of a model trained with several seeds: the mean over seeds of every number (`n` and anything else
    that is not a number, e.g. `extra` metrics, from the first seed)."""
    mean = dict(cells[0])
    for key in cells[0]:
        numbers = [c.get(key) for c in cells]
        if key != "n" and all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
            mean[key] = float(np.mean(numbers))
    return mean


def _source_validation(model, tokenizer, domains, source_domains, run: dict) -> tuple[float | None, float | None]:
    """A model on the validation rows of its source domains: its ATC confidence threshold and its macro-F1 (what a
    student is chosen by before any target label is read); `(None, None)` without them."""
    sources = [d for d in domains if d in set(source_domains) and "validation" in domains[d]]
    if not sources:
        return None, None
    found = [predict(model, tokenizer, domains[d]["validation"], desc="Tokenizing for ATC", **run) for d in sources]
    logits, labels = np.concatenate([p.logits for p in found]), np.concatenate([p.labels for p in found])
    scores = load_metric("classification").compute(
        predictions=logits.argmax(-1), references=labels, num_labels=len(run["label_names"])
    )
    return atc_threshold(logits, labels), float(scores["macro_f1"])


def evaluate_models(
    models: dict[str, str | tuple[PreTrainedModel, Any]],
    domains: dict[str, DatasetDict],
    *,
    teacher: str | None = None,
    source_domains: Sequence[str] = (),
    split: str = "test",
    max_length: int = 128,
    batch_size: int = 64,
    accelerator: Accelerator | None = None,
    extra_metrics: Sequence[str] | None = None,
    return_predictions: bool = False,
    select_by: str = "source_validation",
    long_text_options: LongTextOptions | None = None,
    other_teachers: Sequence[str] = (),
) -> dict[str, Any] | tuple[dict[str, Any], tuple[dict, dict]]:
    """Evaluate every model on the `split` of every domain; return one results block (see `hfkd.evaluation.results`).

    Args:
        models: name -> a saved folder / Hub id, a loaded `(model, tokenizer)`, or a list of folders (the model trained
            with each seed: every figure becomes the mean over them, with intervals over seeds and rows); loaded one at
            a time, in order.
        domains: as returned by `load_domains` (untokenised), with one shared label space.
        teacher: the name of the reference model among `models` (evaluated first); students are the others.
        source_domains: the domains the models were trained on (in-domain); the others are targets.
        select_by: how the block's `chosen` student is picked before any target label is read (see
            [`choose_student`]): `"source_validation"` (macro-F1 on the sources' validation rows) or `"label_free"`
            (the ATC estimate of the target-mean macro-F1).
        long_text_options: how a text longer than `max_length` is read (`DataArguments.long_text_options`; with
            `long_text="chunk"` every model is scored on whole texts, its logits averaged over windows).
        other_teachers: more models among `models` that are teachers, not students (e.g. an adapted teacher):
            evaluated and compared like the others, never the `chosen` student.

    Returns:
        A dict with `source_domains`, `target_domains`, `domains`, `metrics` (model -> domain -> numbers, with their
        `intervals`), `summary` (derived figures, see [`summarize`], with their `intervals`), `comparisons`, `best`
        and `speed` (inference rows/s over all domains, parameters, layers). With `return_predictions`, also
        `(references, predictions)`: per domain the label ids, per model and domain the `(seeds, rows)` predicted ids
        (what `hfkd.evaluation.compare.save_predictions` keeps).
    """
    if teacher is not None and teacher not in models:
        raise ValueError(f"teacher={teacher!r} is not one of the models {list(models)}; name one of them.")
    unknown = [name for name in other_teachers if name not in models]
    if unknown:
        raise ValueError(f"other_teachers={unknown!r} are not among the models {list(models)}; name models.")
    teachers = ([teacher] if teacher else []) + [name for name in other_teachers if name != teacher]
    label_names = list(next(iter(domains.values()))[split].features["label"].names)
    order = ([teacher] if teacher else []) + [name for name in models if name != teacher]
    metrics: dict[str, dict[str, Any]] = {}
    speed: dict[str, dict[str, Any]] = {}
    teacher_predictions: dict[str, Predictions] = {}
    source_validation: dict[str, float] = {}
    references: dict[str, np.ndarray] = {}
    ids: dict[str, dict[str, np.ndarray]] = {}
    for name in order:
        entries = models[name] if isinstance(models[name], list) else [models[name]]  # one per training seed
        rows, seconds, cells, ids[name] = 0, 0.0, {domain: [] for domain in domains}, {}
        estimates: dict[str, list[dict[str, float]]] = {}
        validation: list[float] = []
        for seed_index, entry in enumerate(entries):
            model, tokenizer = load_model_for_eval(entry, label_names) if isinstance(entry, str) else entry
            run = dict(
                label_names=label_names,
                max_length=max_length,
                batch_size=batch_size,
                accelerator=accelerator,
                long_text_options=long_text_options,
            )
            threshold, validation_f1 = _source_validation(model, tokenizer, domains, source_domains, run)
            if validation_f1 is not None:
                validation.append(validation_f1)
            for domain, splits in domains.items():
                predictions = predict(
                    model,
                    tokenizer,
                    splits[split],
                    label_names=label_names,
                    max_length=max_length,
                    batch_size=batch_size,
                    accelerator=accelerator,
                    long_text_options=long_text_options,
                )
                rows, seconds = rows + len(predictions.labels), seconds + predictions.seconds
                references[domain] = np.asarray(predictions.labels)
                ids[name].setdefault(domain, []).append(np.asarray(predictions.logits.argmax(-1)))
                if name == teacher:
                    teacher_predictions.setdefault(domain, []).append(predictions)
                # a student of seed s is compared with the teacher of seed s (with the one teacher, if it was given)
                reference = None
                if name != teacher and domain in teacher_predictions:
                    reference = teacher_predictions[domain][seed_index % len(teacher_predictions[domain])]
                cells[domain].append(score(predictions, len(label_names), reference, extra_metrics))
                if threshold is not None and domain not in source_domains:  # estimated as if it had no labels
                    estimates.setdefault(domain, []).append(atc_estimate(predictions.logits, threshold))
            if seed_index == 0:
                speed[name] = {
                    "parameters": count_parameters(model) or None,  # None: not a torch model (an ONNX file)
                    "num_layers": num_layers(model),
                    # a card made later from results.json alone (no weights at hand) can still say how big it is
                    "weights_bytes": _weights_bytes(entry),
                }
            if isinstance(entry, str):
                del model  # loaded here: free it before the next one
        metrics[name] = {domain: mean_cell(per_seed) for domain, per_seed in cells.items()}
        if validation:
            source_validation[name] = float(np.mean(validation))
        for domain, per_seed in estimates.items():
            metrics[name][domain]["label_free"] = mean_cell(per_seed)
        ids[name] = {domain: np.stack(per_seed) for domain, per_seed in ids[name].items()}  # (seeds, rows)
        for domain, cell in metrics[name].items():
            logger.info(
                f"{name} on {domain}: macro_f1={cell['macro_f1']:.4f} accuracy={cell['accuracy']:.4f} "
                f"(n={cell['n']}, {len(entries)} seed(s))"
            )
        speed[name] = {
            "samples_per_second": rows / seconds if seconds > 0 else None,
            "rows": rows,
            "eval_seconds": seconds,
        } | speed[name]
    if teacher is not None and speed[teacher]["samples_per_second"]:
        for entry in speed.values():
            rate = entry["samples_per_second"]
            entry["speedup_vs_teacher"] = rate / speed[teacher]["samples_per_second"] if rate else None
    metrics = {name: metrics[name] for name in models}  # back to the caller's order
    speed = {name: speed[name] for name in models}
    sources = [d for d in domains if d in set(source_domains)]
    targets = [d for d in domains if d not in set(source_domains)]
    uncertainty = block_uncertainty(references, ids, sources, targets, teacher, len(label_names))
    for name, cells in uncertainty["cells"].items():
        for domain, intervals in cells.items():
            metrics[name][domain]["intervals"] = intervals
    summary = summarize(metrics, sources, targets, teacher)
    for name, cells in metrics.items():
        measured = [d for d in targets if "label_free" in cells[d]]
        if measured:  # how far the label-free estimate was from the measured figure, over the target domains
            summary[name]["label_free"] = {
                f"{key}_{score_name}": float(np.mean([f(cells[d], score_name) for d in measured]))
                for key, f in (("target_mean", lambda c, s: c["label_free"][s]),
                               ("mean_abs_error", lambda c, s: abs(c["label_free"][s] - c[s])))
                for score_name in ("accuracy", "macro_f1")
            }  # fmt: skip
    for name, intervals in uncertainty["summary"].items():
        summary[name]["intervals"] = intervals
    for name, figures in summary.items():
        figures["source_validation_macro_f1"] = source_validation.get(name)
        figures["label_free_target_mean_macro_f1"] = (figures.get("label_free") or {}).get("target_mean_macro_f1")
    block = {
        "source_domains": sources,
        "target_domains": targets,
        "domains": list(domains),
        "metrics": metrics,
        "summary": summary,
        "comparisons": uncertainty["comparisons"],
        "best": uncertainty["best"],
        "uncertainty": uncertainty["method"],
        "speed": speed,
        "chosen": choose_student(summary, teachers, select_by),
    }
    if other_teachers:
        block["teachers"] = teachers
    return (block, (references, ids)) if return_predictions else block
