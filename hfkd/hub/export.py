"""Exporting a student to ONNX (fp32, and dynamic INT8 with onnxruntime), and the accuracy gate that checks the
exported files against the PyTorch student on the run's domains, with the matrix code every model is scored with.

The export folder (by default `onnx/` inside the student folder) follows optimum's layout: `model.onnx` (fp32),
`model_quantized.onnx` (INT8), `config.json` and the tokenizer files, so `onnxruntime.InferenceSession`, and
`optimum.onnxruntime.ORTModelForSequenceClassification` where an optimum for transformers 5 is installed, load it.
hfkd adds `export_report.json` and `export_report.md`: how the files were made, and the gate's table.

The exporter is `torch.onnx.export(..., dynamo=True)`: it captures the model with `torch.export`, so the batch and
sequence axes stay symbolic and no Python branch of the model is frozen at the example's shapes or padding (the
TorchScript tracer does freeze them: a BERT traced on an unpadded example gives wrong logits on padded batches). It
also records each node's module path, which lets `fp32_modules` keep named layers out of INT8.

The gate ([`check_export`]) runs the PyTorch student and every exported file as models of one matrix
(`hfkd.evaluation.evaluate_models`, the PyTorch student as the reference): per domain, the agreement of each file's
predictions with the PyTorch student's must be at least `min_agreement`, and the upper bound of the paired 95 %
bootstrap interval of (file - PyTorch) macro-F1 at least `-max_macro_f1_drop`.

onnx, onnxscript and onnxruntime are optional (`pip install "hfkd[export]"`): they are imported where they are used.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import fnmatch
import importlib.metadata
import importlib.util
import json
import logging as std_logging
import os
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import logging

from ..data.arguments import DataArguments
from ..data.domains import EVALUATION_SPLIT, evaluation_splits, scored_rows
from ..data.source import load_data
from ..evaluation.matrix import evaluate_models, load_model_for_eval
from ..evaluation.results import atomic_write, jsonable
from ..fingerprints import model_fingerprint
from ..inference import safetensors_size
from ..models import forward_argument_names, load_classifier, load_tokenizer
from ..run_files import environment_info, hardware_info
from .card import (
    EXPORT_DIR,
    EXPORT_REPORT,
    EXPORT_TABLE,
    INT8_FILE,
    ONNX_FILE,
    REFERENCE,
    export_tables,
    find_block,
    read_json,
    scored_splits,
)

logger = logging.get_logger(__name__)


QUANTIZE_CHOICES = ("int8",)
MIN_AGREEMENT = 0.99
MAX_MACRO_F1_DROP = 0.01
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
"""The inputs an exported classifier may take, in this order (DistilBERT has no `token_type_ids`)."""
EXPORT_EXTRA = 'pip install "hfkd[export]"'


class ExportGateError(ValueError):
    """An exported file is off the PyTorch student on some domain; the message is one line naming the first failure
    (file, domain, figure, value) and the fix. Everything was written before it is raised."""


def require_export_packages(*modules: str) -> None:
    """`ImportError` naming the missing packages and the extra that brings them."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"ONNX export needs {', '.join(missing)}, which is not installed; {EXPORT_EXTRA}.")


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter's warnings that say nothing about the user's model (torchvision ops it skips, axis names it
    merges, pytree deprecations) are kept out of the output; real errors still raise."""
    registration = std_logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(std_logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.simplefilter("ignore", category=DeprecationWarning)
            yield
    finally:
        registration.setLevel(level)


def example_inputs(model: PreTrainedModel, tokenizer) -> dict[str, torch.Tensor]:
    """A padded batch of two texts of different lengths, holding the inputs the model's `forward` takes."""
    texts = ["an example to export", "a longer example sentence, so that the batch of two holds some padding"]
    batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    accepted = forward_argument_names(model)
    return {name: batch[name] for name in INPUT_NAMES if name in batch and name in accepted}


def export_onnx(model: PreTrainedModel, tokenizer, output_dir: str, file_name: str = ONNX_FILE) -> str:
    """
    Export a sequence classifier to `<output_dir>/<file_name>` (fp32) with `torch.onnx.export(dynamo=True)`, its
    batch and sequence axes dynamic, and save its config and tokenizer beside it (optimum's layout).

    Args:
        model ([`PreTrainedModel`]): a `*ForSequenceClassification`; exported on the CPU, in eval mode, as it is (its
            label order is the one its `config.json` says).
        tokenizer: its tokenizer; it makes the example inputs and is saved beside the file.

    Returns:
        `str`: the path of the ONNX file.
    """
    require_export_packages("onnx", "onnxscript")
    from torch.export import Dim

    os.makedirs(output_dir, exist_ok=True)
    model = model.to("cpu").eval()
    inputs = example_inputs(model, tokenizer)
    batch, sequence = Dim("batch"), Dim("sequence")
    path = os.path.join(output_dir, file_name)
    start = time.perf_counter()
    with _quiet_exporter(), torch.no_grad():
        torch.onnx.export(
            model,
            (),
            path,
            kwargs=inputs,
            input_names=list(inputs),
            output_names=["logits"],
            dynamic_shapes={name: {0: batch, 1: sequence} for name in inputs},
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    model.config.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    logger.info(f"Exported {type(model).__name__} to {path} in {time.perf_counter() - start:.1f} s")
    return path


def node_modules(path: str) -> dict[str, str]:
    """The module path of each node of an ONNX file written by the dynamo exporter (e.g.
    `bert.encoder.layer.0.attention.self.query`), read from the `pkg.torch.onnx.name_scopes` it records."""
    import onnx

    modules = {}
    for node in onnx.load(path, load_external_data=False).graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
        if not scopes:
            continue
        try:
            names = ast.literal_eval(scopes)  # "['', 'bert', ..., 'bert.encoder.layer.0...query', 'linear']"
        except (ValueError, SyntaxError):
            continue
        if len(names) >= 2:
            modules[node.name] = names[-2]  # the last entry names the operation, the one before it its module
    return modules


def _matches(module: str, patterns: Sequence[str]) -> bool:
    """A module matches a pattern that names it or one of the modules holding it (`bert.encoder.layer.0`, or
    `*.layer.0`, matches `bert.encoder.layer.0.output.dense`)."""
    return any(fnmatch.fnmatchcase(module, p) or fnmatch.fnmatchcase(module, f"{p}.*") for p in patterns)


def quantize_int8(
    source: str, target: str | None = None, *, fp32_modules: Sequence[str] = (), per_channel: bool = True
) -> tuple[str, dict[str, Any]]:
    """
    Dynamic INT8 quantization of an fp32 ONNX file with `onnxruntime.quantization.quantize_dynamic`: weights of the
    MatMul and embedding (Gather) nodes stored as int8 (one scale per output channel with `per_channel`, which keeps
    small students much closer to fp32 than one scale per tensor), activations quantized on the fly.

    Args:
        source (`str`): the fp32 file (from [`export_onnx`]).
        target (`str`, *optional*): where the INT8 file goes; default `model_quantized.onnx` beside `source`.
        fp32_modules (`Sequence[str]`, *optional*): module paths or fnmatch patterns (`bert.encoder.layer.0`,
            `*.layer.0.*`) whose nodes stay fp32: the layers whose quantization costs the most accuracy.

    Returns:
        `(path, settings)`: the INT8 file and the quantization settings as recorded in the export report.
    """
    require_export_packages("onnx", "onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = target or os.path.join(os.path.dirname(source), INT8_FILE)
    excluded: list[str] = []
    if fp32_modules:
        modules = node_modules(source)
        excluded = sorted(name for name, module in modules.items() if _matches(module, fp32_modules))
        if not excluded:
            known = sorted({m for m in modules.values() if m.count(".") >= 2})[:3]
            raise ValueError(
                f"fp32_modules={list(fp32_modules)} match no module of {source}; name modules by their path in the "
                f"PyTorch model, e.g. {known or ['bert.encoder.layer.0']} (fnmatch patterns such as '*.layer.0' too)."
            )
    start = time.perf_counter()
    root = std_logging.getLogger()
    level = root.level
    root.setLevel(max(level, std_logging.WARNING))  # the quantizer logs a line per tensor at INFO on the root logger
    try:
        quantize_dynamic(
            source, target, weight_type=QuantType.QInt8, per_channel=per_channel, nodes_to_exclude=excluded or None
        )
    finally:
        root.setLevel(level)
    settings = {
        "method": "onnxruntime.quantization.quantize_dynamic",
        "weight_type": "QInt8",
        "per_channel": per_channel,
        "fp32_modules": list(fp32_modules),
        "fp32_nodes": len(excluded),
    }
    logger.info(f"Quantized {source} to {target} (dynamic INT8) in {time.perf_counter() - start:.1f} s")
    return target, settings


class OnnxClassifier(torch.nn.Module):
    """
    An exported classifier run by onnxruntime (CPU) behind the interface `hfkd.inference.predict` and the matrix
    use: `config` (the labels), `forward(input_ids, attention_mask, token_type_ids)` returning an output with
    `.logits` (a tensor on the inputs' device), and `.to()` / `.eval()`. It holds no torch parameters.

    Args:
        path (`str`): the ONNX file.
        config: the model's `PretrainedConfig` (its `id2label` names the logit columns).
        threads (`int`, *optional*): onnxruntime's intra-op threads; default torch's thread count, so that the two
            runtimes are timed on the same cores.
    """

    def __init__(self, path: str, config, threads: int | None = None):
        super().__init__()
        require_export_packages("onnxruntime")
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3  # errors only: its warnings about unused initializers are noise here
        self.path, self.config = path, config
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        unknown = [n for n in self.input_names if n not in INPUT_NAMES]
        if unknown:
            raise ValueError(f"{path} takes inputs {unknown} besides {list(INPUT_NAMES)}; export it with hfkd export.")
        self.output_name = self.session.get_outputs()[0].name

    @classmethod
    def from_pretrained(cls, folder: str, file_name: str = ONNX_FILE, threads: int | None = None) -> OnnxClassifier:
        """The file `file_name` of an export folder, with the folder's `config.json`."""
        path = os.path.join(folder, file_name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} does not exist; export the student first (hfkd export).")
        return cls(path, AutoConfig.from_pretrained(folder), threads)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        given["attention_mask"] = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        given["token_type_ids"] = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        feed = {name: given[name].detach().cpu().numpy().astype(np.int64) for name in self.input_names}
        (logits,) = self.session.run([self.output_name], feed)
        return SequenceClassifierOutput(logits=torch.from_numpy(logits).to(input_ids.device))


def default_output_dir(folder: str) -> str:
    """Where a student's exported files go by default: `onnx/` inside its folder."""
    return os.path.join(folder, EXPORT_DIR)


def export_student(
    folder: str,
    output_dir: str | None = None,
    *,
    quantize: str | None = None,
    fp32_modules: Sequence[str] = (),
) -> dict[str, Any]:
    """
    Export the student saved in `folder` to `output_dir` (default `<folder>/onnx`): `model.onnx`, with
    `quantize="int8"` also `model_quantized.onnx`, plus its config and tokenizer; and start `export_report.json` with
    how each file was made (the gate, [`check_export`], adds its table).

    Returns:
        `dict`: the export report so far (`files`: file name -> how it was made).
    """
    if quantize not in (None, *QUANTIZE_CHOICES):
        raise ValueError(f"quantize={quantize!r} is not supported; use one of {list(QUANTIZE_CHOICES)} or none.")
    if fp32_modules and not quantize:
        raise ValueError(f"fp32_modules={list(fp32_modules)} needs quantize=int8 (it keeps layers out of INT8).")
    require_export_packages("onnx", "onnxscript", *(["onnxruntime"] if quantize else []))
    output_dir = output_dir or default_output_dir(folder)
    model, tokenizer = load_classifier(folder), load_tokenizer(folder)
    path = export_onnx(model, tokenizer, output_dir)
    files = {ONNX_FILE: {"precision": "fp32", "exporter": "torch.onnx.export(dynamo=True)", "opset": _opset(path)}}
    if quantize == "int8":
        _, settings = quantize_int8(path, os.path.join(output_dir, INT8_FILE), fp32_modules=fp32_modules)
        files[INT8_FILE] = {"precision": "int8", "quantization": settings}
    else:
        stale = os.path.join(output_dir, INT8_FILE)
        if os.path.isfile(stale):  # an INT8 file of an earlier export was not made from this model.onnx
            os.remove(stale)
            logger.warning(
                f"Removed {stale} of an earlier export: it was not made from the new {ONNX_FILE}. Pass "
                "quantize='int8' (--quantize int8) to make it again."
            )
    report = {
        "format": "hfkd-export",
        "version": 1,
        "student": os.path.abspath(folder),
        "student_fingerprint": model_fingerprint(folder),
        "files": files,
        "versions": _versions(),
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "gate": None,
    }
    _write_json(os.path.join(output_dir, EXPORT_REPORT), report)
    return report


def _opset(path: str) -> int | None:
    import onnx

    opsets = onnx.load(path, load_external_data=False).opset_import
    return next((o.version for o in opsets if o.domain in ("", "ai.onnx")), None)


def _versions() -> dict[str, str]:
    versions = {k: v for k, v in environment_info().items() if k in ("hfkd", "transformers", "torch")}
    for package in ("onnx", "onnxscript", "onnxruntime"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return versions


def _write_json(path: str, data: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(data, indent=2, default=jsonable) + "\n")


def exported_files(output_dir: str) -> list[str]:
    """The exported model files of an export folder, fp32 first."""
    return [f for f in (ONNX_FILE, INT8_FILE) if os.path.isfile(os.path.join(output_dir, f))]


def check_gate_bounds(min_agreement: float, max_macro_f1_drop: float) -> None:
    """`ValueError` naming the field when a bound of the gate is out of its range."""
    if not 0 <= min_agreement <= 1:
        raise ValueError(f"min_agreement={min_agreement} must be between 0 and 1 (a share of rows); e.g. 0.99.")
    if not 0 <= max_macro_f1_drop <= 1:
        raise ValueError(f"max_macro_f1_drop={max_macro_f1_drop} must be in [0, 1] (a drop of macro-F1), e.g. 0.01.")


@dataclasses.dataclass
class GatePlan:
    """What the gate scores a student on, read from its run's files before anything is loaded or exported."""

    data_args: DataArguments
    sources: list[str]
    domains: list[str]
    target_splits: list[str]
    max_target_eval_samples: int | None
    recorded: dict[str, Any]
    """Per domain, the rows the run scored (`n`, `class_counts`; `evaluation_rows` of its results)."""
    model: str | None


def gate_plan(folder: str, results: dict[str, Any] | None = None, model: str | None = None) -> GatePlan:
    """
    The run's domains for the student in `folder`. With `results` (an experiment's or evaluation's `results.json`),
    those of the block that describes `folder` (sources on their test split, targets on their `target_eval_splits`);
    else, from the folder's `hfkd_run.json` (a `scripts/distill.py` run), its source domains' test split. Raises
    `ValueError` when neither is there: cheap, so a command can fail before it exports anything.
    """
    if results is not None:
        block, model = find_block(results, folder, model)
        config = dict(results.get("config") or {})
        sources, names = list(block.get("source_domains") or []), list(block.get("domains") or [])
        targets = [d for d in names if d not in sources]
        splits = scored_splits(block, targets[0]) if targets else ["test"]
        recorded = ((block.get("evaluation_rows") or {}).get("domains")) or {}
        where = "its results.json"
    else:
        run = read_json(os.path.join(folder, "hfkd_run.json"))
        if not run.get("config"):
            raise ValueError(
                f"{folder} has no hfkd_run.json and no results were given, so there are no domains to check the "
                "export on; pass --results with the results.json of the experiment or of scripts/evaluate_models.py "
                "that scored this model."
            )
        config = dict(run["config"])
        sources = list(run.get("source_domains") or config.get("source_domains") or [])
        names, splits, recorded, where = sources, ["test"], {}, "its hfkd_run.json"
    if not names:
        raise ValueError(f"{where} names no domains to check {folder} on; pass --results of a run that scored it.")
    names_of_fields = {f.name for f in dataclasses.fields(DataArguments) if f.init}
    data_args = DataArguments(**{k: v for k, v in config.items() if k in names_of_fields})
    max_target = config.get("max_target_eval_samples")
    return GatePlan(data_args, sources, names, list(splits), max_target, recorded, model)


def gate_domains(plan: GatePlan) -> dict[str, Any]:
    """The rows the run scored the student on, rebuilt from its config as `hfkd.data.evaluation_splits` gives them
    (split `"evaluation"`). Raises `ValueError` when the data no longer gives those rows (their number per domain and
    class)."""
    data_args = plan.data_args
    loaded = load_data(data_args, plan.domains, cap_eval=False)
    domains = evaluation_splits(
        loaded,
        plan.sources,
        plan.target_splits,
        data_args.max_eval_samples,
        max_target_eval_samples=plan.max_target_eval_samples,
        split_seed=data_args.split_seed,
        deduplicate=data_args.deduplicate,
    )
    now = scored_rows(
        domains, plan.sources, plan.target_splits, data_args.max_eval_samples, plan.max_target_eval_samples
    )["domains"]
    for domain, then in plan.recorded.items():
        rows = now.get(domain) or {}
        counts = then.get("class_counts")
        if rows.get("n") != then.get("n") or (counts and rows.get("class_counts") != counts):
            raise ValueError(
                f"domain {domain}: the data now gives {rows.get('n')} rows to score (per class "
                f"{rows.get('class_counts')}), the run scored {then.get('n')} ({then.get('class_counts')}): "
                f"dataset={data_args.dataset!r} changed since the run; restore it, or evaluate the student again "
                "(scripts/evaluate_models.py) and pass that results.json with --results."
            )
    return domains


def check_export(
    folder: str,
    output_dir: str | None = None,
    *,
    results: dict[str, Any] | None = None,
    model: str | None = None,
    min_agreement: float = MIN_AGREEMENT,
    max_macro_f1_drop: float = MAX_MACRO_F1_DROP,
    batch_size: int = 64,
    plan: GatePlan | None = None,
) -> dict[str, Any]:
    """
    The accuracy gate: the PyTorch student in `folder` and every exported file in `output_dir` (default
    `<folder>/onnx`) on the run's domains ([`gate_plan`], [`gate_domains`]), as models of one matrix
    (`hfkd.evaluation.evaluate_models`, the PyTorch student as its reference, so agreement, KL and the paired
    bootstrap of macro-F1 differences are the ones every other model gets). Writes `export_report.json` and
    `export_report.md` to `output_dir` and returns the report; `report["gate"]["passed"]` says whether every file is
    within the bounds on every domain (see [`gate_failure`] for the one-line reason when not).

    Args:
        min_agreement (`float`): the least share of rows on which a file predicts the PyTorch student's label.
        max_macro_f1_drop (`float`): the upper bound of the 95 % interval of (file - PyTorch) macro-F1 must be at
            least `-max_macro_f1_drop`: a drop larger than that must not be the only reading the rows allow.
        plan ([`GatePlan`], *optional*): the run's domains, when [`gate_plan`] was called already.
    """
    check_gate_bounds(min_agreement, max_macro_f1_drop)
    output_dir = output_dir or default_output_dir(folder)
    files = exported_files(output_dir)
    if not files:
        raise ValueError(f"{output_dir} holds no {ONNX_FILE}; export the student first (hfkd export {folder}).")
    require_export_packages("onnxruntime")
    plan = plan or gate_plan(folder, results, model)
    domains, data_args, sources, model = gate_domains(plan), plan.data_args, plan.sources, plan.model
    label_names = list(next(iter(domains.values()))[EVALUATION_SPLIT].features["label"].names)
    reference, tokenizer = load_model_for_eval(folder, label_names)
    exported_tokenizer = load_tokenizer(output_dir)  # what a user of the folder gets, not the student's own
    models: dict[str, Any] = {REFERENCE: (reference, tokenizer)}
    for name in files:
        models[name] = (OnnxClassifier.from_pretrained(output_dir, name), exported_tokenizer)
    block = evaluate_models(
        models,
        domains,
        teacher=REFERENCE,
        source_domains=sources,
        split=EVALUATION_SPLIT,
        max_length=data_args.max_length,
        batch_size=batch_size,
        long_text_options=data_args.long_text_options,
    )
    report = read_json(os.path.join(output_dir, EXPORT_REPORT)) or {"format": "hfkd-export", "version": 1}
    report["files"] = report.get("files") or {}
    for name in files:
        report["files"].setdefault(name, {"precision": "int8" if name == INT8_FILE else "fp32"})
        report["files"][name]["bytes"] = os.path.getsize(os.path.join(output_dir, name))
    report["files"] = {name: report["files"][name] for name in files}  # only what is there now
    report |= {
        "student": os.path.abspath(folder),
        "output_dir": os.path.abspath(output_dir),
        "model": model,
        "student_fingerprint": model_fingerprint(folder),
        "reference": {"name": REFERENCE, "bytes": (safetensors_size(folder) or {}).get("bytes")},
        "data": {"dataset": data_args.dataset, "source_domains": sources, "max_length": data_args.max_length},
        "hardware": hardware_info()["description"],
        "checked": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    report["domains"], failures = _gate_table(block, files, min_agreement, max_macro_f1_drop)
    report["speed"] = {
        name: {
            "samples_per_second": block["speed"][name]["samples_per_second"],
            "rows": block["speed"][name]["rows"],
            "batch_size": batch_size,
            "speedup_vs_reference": block["speed"][name].get("speedup_vs_teacher"),
        }
        for name in models
    }
    report["gate"] = {
        "reference": REFERENCE,
        "min_agreement": min_agreement,
        "max_macro_f1_drop": max_macro_f1_drop,
        "confidence": 0.95,
        "interval": block["uncertainty"],
        "passed": not failures,
        "failures": failures,
    }
    report["block"] = {k: block[k] for k in ("source_domains", "target_domains", "domains", "metrics", "comparisons")}
    _write_json(os.path.join(output_dir, EXPORT_REPORT), report)
    table = ["# ONNX export check", "", f"Student: `{report['student']}`.", "", *export_tables(report)]
    atomic_write(os.path.join(output_dir, EXPORT_TABLE), "\n".join(table))
    return report


def _gate_table(
    block: dict[str, Any], files: list[str], min_agreement: float, max_drop: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Per domain, the reference's scores and each file's scores, agreement and paired macro-F1 difference with the
    verdict; and the failures (file, domain, figure, value, bound), in domain order."""
    sources = set(block["source_domains"])
    table, failures = {}, []
    for domain in block["domains"]:
        cell = block["metrics"][REFERENCE][domain]
        row: dict[str, Any] = {
            "source": domain in sources,
            "n": cell["n"],
            REFERENCE: {"macro_f1": cell["macro_f1"], "accuracy": cell["accuracy"]},
        }
        for name in files:
            cell = block["metrics"][name][domain]
            difference = next(
                c
                for c in block["comparisons"]
                if c["a"] == name and c["b"] == REFERENCE and c["metric"] == f"macro_f1@{domain}"
            )
            checks = [
                ("agreement", cell["agreement"], min_agreement),
                ("macro_f1_diff_ci_high", difference["ci_high"], -max_drop),
            ]
            failed = [(figure, value, bound) for figure, value, bound in checks if value < bound]
            failures += [
                {"file": name, "domain": domain, "figure": figure, "value": value, "bound": bound}
                for figure, value, bound in failed
            ]
            row[name] = {
                "macro_f1": cell["macro_f1"],
                "accuracy": cell["accuracy"],
                "agreement": cell["agreement"],
                "kl": cell.get("kl"),
                "macro_f1_diff": {k: difference[k] for k in ("diff", "ci_low", "ci_high", "p")},
                "passed": not failed,
                "failed": [figure for figure, _, _ in failed],
            }
        table[domain] = row
    return table, failures


def gate_failure(report: dict[str, Any]) -> str | None:
    """One line for a failed gate: the first failure (file, domain, figure, its value, the bound), how many more,
    where the table is, and the fix; `None` when the gate passed."""
    gate = report.get("gate") or {}
    failures = gate.get("failures") or []
    if not failures:
        return None
    first = failures[0]
    name, domain, value, bound = first["file"], first["domain"], first["value"], first["bound"]
    if first["figure"] == "agreement":
        what = f"agreement with the PyTorch student {value:.4f} < --min_agreement {bound}"
    else:
        what = (
            f"upper bound of the 95 % interval of its macro-F1 difference {value:+.4f} < -{gate['max_macro_f1_drop']} "
            "(--max_macro_f1_drop)"
        )
    more = f" (and {len(failures) - 1} more failure(s))" if len(failures) > 1 else ""
    if name == INT8_FILE:
        kept = (((report.get("files") or {}).get(INT8_FILE) or {}).get("quantization") or {}).get("fp32_modules")
        layers = (
            f"more layers in fp32 (--fp32_modules {' '.join(kept)} and one more)"
            if kept
            else "the most sensitive layers in fp32 (e.g. --fp32_modules '*.layer.0')"
        )
        fix = (
            f"keep {layers}, ship model.onnx (fp32) instead, or, if this loss is acceptable, lower --min_agreement "
            "/ raise --max_macro_f1_drop"
        )
    else:
        fix = "the fp32 export should match PyTorch: re-export (hfkd export) and report the model's architecture"
    table = os.path.join(report.get("output_dir") or ".", EXPORT_TABLE)
    return f"{name} on domain {domain}: {what}{more} (table: {table}); fix: {fix}."
