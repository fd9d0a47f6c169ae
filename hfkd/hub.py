"""Model cards for students, and pushing a student folder to the Hugging Face Hub.

A student folder (the `output_dir` of `scripts/distill.py`, or a student stage of `scripts/cross_domain.py`) gets a
`README.md` made with `huggingface_hub.ModelCard` / `ModelCardData`: `base_model` (the Hub model the teacher came
from), `model-index` eval results per domain, and a body with the cross-domain table, speed and size, the
distillation settings, intended use and limitations under domain shift, and the command and config that made it.
Every number comes from the run's files (`results.json` of an experiment or evaluation, else the folder's
`metrics.json`); none is typed.

[`push_student`] uploads the files [`student_files`] lists, after everything is saved locally: the top-level model,
config, tokenizer and card files of the student folder (`STUDENT_FILES`), never checkpoints, caches, logs, run files or
the teacher. `hfkd push --dry-run` prints the same list. The token comes from where `huggingface_hub` looks
(`HF_TOKEN`, the login cache) unless one is passed; it is never written or logged. Known failures (offline, no token or
no rights, no repo id, no student in the folder) raise [`HubError`] with one line that says what to do.
"""

from __future__ import annotations

import fnmatch
import json
import os
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers.utils import logging

from .card_text import card_body
from .models import _hub_offline

logger = logging.get_logger(__name__)

CARD_FILE = "README.md"
# What a pushed student holds: the model, its config, the tokenizer files and the card; nothing else. Each entry is a
# file name or an fnmatch pattern matched against the files of ONE folder: the student folder itself, or for an entry
# like "onnx/*.onnx" its `onnx/` subfolder. `*` never reaches into a subfolder, so `checkpoint-N/model.safetensors`
# (earlier states, with the intermediate-layer projections) is never pushed.
STUDENT_FILES = (
    "config.json",
    "model.safetensors",
    "model-*-of-*.safetensors",  # the shards of a large model, with their index
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "*.model",  # sentencepiece: tokenizer.model, spiece.model, spm.model, ...
    CARD_FILE,
)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
# builtin models -> (the Hub model they are a copy of, its license)
BUILTIN_ORIGINS = {"builtin:minilm-l6": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0")}


# the HTTP stacks huggingface_hub may use: their errors mean the Hub could not be reached
_TRANSPORT_MODULES = {"httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3"}


class HubError(RuntimeError):
    """A push that cannot work as configured; the message is one line that names the fix."""


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return {}


def base_model_of(name_or_path: str | None, _depth: int = 0) -> str | None:
    """The Hub id a model comes from: itself for a Hub id, the original of a builtin, and for a local folder written
    by hfkd the model it was fine-tuned from (read from its `hfkd_run.json` or `hfkd_stage.json`); else None."""
    if not name_or_path or _depth > 4:
        return None
    if name_or_path in BUILTIN_ORIGINS:
        return BUILTIN_ORIGINS[name_or_path][0]
    if name_or_path.startswith("builtin:"):
        return None  # generated test models have no Hub original
    if not os.path.isdir(name_or_path):
        return name_or_path
    run = _read_json(os.path.join(name_or_path, "hfkd_run.json")).get("config", {})
    stage = _read_json(os.path.join(name_or_path, "hfkd_stage.json")).get("key", {})
    origin = run.get("teacher_model_name_or_path") or run.get("model_name_or_path") or stage.get("model")
    return base_model_of(origin, _depth + 1)


def safetensors_size(folder: str | None) -> dict[str, int] | None:
    """`{"parameters", "bytes"}` of a local folder's `*.safetensors`, read from the headers (no model is loaded)."""
    from safetensors import safe_open

    if not folder or not os.path.isdir(folder):
        return None
    files = [os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.endswith(".safetensors")]
    if not files:
        return None
    parameters = 0
    for path in files:
        with safe_open(path, framework="pt") as f:
            for key in f.keys():
                count = 1
                for dim in f.get_slice(key).get_shape():
                    count *= dim
                parameters += count
    return {"parameters": parameters, "bytes": sum(os.path.getsize(p) for p in files)}


def find_block(results: dict[str, Any], folder: str, model: str | None = None) -> tuple[dict[str, Any], str]:
    """The results block and model name that `folder` is (by stage path or model path), or `model` in the only
    block. Raises `ValueError` naming what is there when nothing matches."""
    same = os.path.realpath(folder)
    for block in results.get("blocks") or []:
        for name, stage in (block.get("stages") or {}).items():
            if stage.get("path") and os.path.realpath(stage["path"]) == same and name in block.get("metrics", {}):
                return block, name
        for name, info in (results.get("models") or {}).items():
            path = info.get("path")
            if path and os.path.isdir(path) and os.path.realpath(path) == same and name in block.get("metrics", {}):
                return block, name
    blocks = results.get("blocks") or []
    if model and len(blocks) == 1 and model in blocks[0].get("metrics", {}):
        return blocks[0], model
    names = sorted({n for b in blocks for n in b.get("metrics", {})})
    raise ValueError(
        f"The results do not describe the model in {folder!r}; name it with --model (one of {names}) or pass the "
        "results of the run that made it."
    )


def _run_block(folder: str) -> tuple[dict[str, Any], str]:
    """A one-domain-column block from a `scripts/distill.py` folder: the student's and the teacher's source test
    scores from their `metrics.json`."""
    run = _read_json(os.path.join(folder, "hfkd_run.json"))
    domain = "+".join(run.get("source_domains") or ["source"])
    cells = {}
    teacher = run.get("config", {}).get("teacher_model_name_or_path")
    for name, path in (("student", folder), ("teacher", teacher)):
        metrics = _read_json(os.path.join(path, "metrics.json")) if path and os.path.isdir(path) else {}
        if "test_accuracy" in metrics:
            n = metrics.get("test_n")
            cells[name] = {
                domain: {"accuracy": metrics["test_accuracy"], "macro_f1": metrics["test_macro_f1"], "n": n}
            }
    block = {"domains": [domain], "source_domains": [domain], "target_domains": [], "metrics": cells, "speed": {}}
    return block, "student"


def eval_results(block: dict[str, Any], model: str, dataset: str) -> list[EvalResult]:
    """`model-index` entries: accuracy and macro-F1 of `model` on the test split of each domain."""
    entries = []
    for domain in block.get("domains") or []:
        cell = (block.get("metrics", {}).get(model) or {}).get(domain)
        if not cell:
            continue
        common = dict(
            task_type="text-classification",
            task_name="Text Classification",
            dataset_type=dataset,
            dataset_name=f"{dataset} ({domain})",
            dataset_config=domain,
            dataset_split="test",
        )
        entries.append(
            EvalResult(**common, metric_type="accuracy", metric_name="Accuracy", metric_value=cell["accuracy"])
        )
        entries.append(
            EvalResult(
                **common,
                metric_type="f1",
                metric_name="Macro-F1",
                metric_value=cell["macro_f1"],
                metric_args={"average": "macro"},
            )
        )
    return entries


def make_model_card(
    folder: str, results: dict[str, Any] | None = None, model: str | None = None, repo_id: str | None = None
) -> ModelCard:
    """The card of the student in `folder`, from `results` (an experiment's or evaluation's `results.json`) when given,
    else from the folder's own run files. `repo_id` names the model in the card (default: the folder's name)."""
    if results is not None:
        block, model = find_block(results, folder, model)
        config = dict(results.get("config") or {})
        teacher = results.get("teacher")
        teacher_path = (block.get("stages", {}).get(teacher) or {}).get("path") if teacher else None
        command = results.get("command")
        dataset = str(results.get("dataset") or config.get("dataset") or "custom")
    else:
        block, model = _run_block(folder)
        run = _read_json(os.path.join(folder, "hfkd_run.json"))
        config, command, teacher = dict(run.get("config") or {}), run.get("command"), "teacher"
        teacher_path = config.get("teacher_model_name_or_path")
        dataset = str(config.get("dataset") or "custom")
    student_config = _read_json(os.path.join(folder, "config.json"))
    origin = (student_config.get("hfkd_student") or {}).get("teacher") or teacher_path
    base = base_model_of(teacher_path) or base_model_of(config.get("model_name_or_path")) or base_model_of(origin)
    license_ = next((lic for hub_id, lic in BUILTIN_ORIGINS.values() if hub_id == base), None)
    name = repo_id or os.path.basename(os.path.abspath(folder))
    facts = {
        "name": name,
        "repo_id": repo_id,
        "model": model,
        "teacher": teacher,
        "base_model": base,
        "dataset": dataset,
        "block": block,
        "config": config,
        "command": command,
        "labels": list((student_config.get("id2label") or {}).values()),
        "student": student_config.get("hfkd_student") or {},
        "size": {"student": safetensors_size(folder), "teacher": safetensors_size(teacher_path)},
        "folder": folder,
        "from_results": results is not None,
        "hardware": ((results or {}).get("hardware") or {}).get("description"),
        "versions": (results or {}).get("versions")
        or _read_json(os.path.join(folder, "hfkd_run.json")).get("versions"),
    }
    data = ModelCardData(
        model_name=name,
        base_model=base,
        datasets=[dataset] if "/" in dataset and not os.path.exists(dataset) else None,  # Hub dataset ids only
        eval_results=eval_results(block, model, dataset) or None,
        library_name="transformers",
        pipeline_tag="text-classification",
        license=license_,
        tags=["hfkd", "knowledge-distillation", "text-classification", "domain-shift"],
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{card_body(facts)}")


def write_model_card(
    folder: str, results: dict[str, Any] | None = None, model: str | None = None, repo_id: str | None = None
) -> str:
    """Write the card (see [`make_model_card`]) to `<folder>/README.md`; returns its path."""
    path = os.path.join(folder, CARD_FILE)
    make_model_card(folder, results, model, repo_id).save(path)
    return path


def student_files(folder: str) -> list[str]:
    """The files a push of the student in `folder` uploads: its paths relative to `folder` that an entry of
    `STUDENT_FILES` names, sorted. `README.md` is always listed: [`push_student`] writes the card before it uploads.

    This one list drives both [`push_student`] and `hfkd push --dry-run`. Raises [`HubError`] when `folder` holds no
    `config.json` or no model weights (`model.safetensors`, or a sharded model's index).
    """
    found = {CARD_FILE}
    for entry in STUDENT_FILES:
        sub, _, pattern = entry.rpartition("/")
        where = os.path.join(folder, sub) if sub else folder
        if not os.path.isdir(where):
            continue
        for name in os.listdir(where):
            if fnmatch.fnmatchcase(name, pattern) and os.path.isfile(os.path.join(where, name)):
                found.add(f"{sub}/{name}" if sub else name)
    missing = [] if "config.json" in found else ["config.json"]
    if not found.intersection(WEIGHT_FILES):
        missing.append("model weights (model.safetensors)")
    if missing:
        raise HubError(f"{folder} holds no {' and no '.join(missing)}: there is no student to push there.")
    return sorted(found)


def warn_if_push_will_fail(args) -> None:
    """Before a long run with `push_to_hub`: say now what will stop the push at the end (the run still saves)."""
    if not getattr(args, "push_to_hub", False):
        return
    if not args.hub_model_id:
        logger.warning("push_to_hub is set without hub_model_id: the push after training will fail. Set hub_model_id.")
    elif _hub_offline():
        logger.warning(f"push_to_hub is set but HF_HUB_OFFLINE is on: {args.hub_model_id} will not be pushed.")


def push_student(
    folder: str,
    repo_id: str | None,
    *,
    private: bool | None = None,
    token: str | None = None,
    results: dict[str, Any] | None = None,
    model: str | None = None,
) -> str:
    """Write the card with `repo_id` in it, then upload exactly the files [`student_files`] lists to `repo_id`, in one
    commit (each file at the same relative path in the repo).

    Returns the URL of the commit. Raises [`HubError`] (one line, the local folder untouched) when offline, without a
    token or the rights to write `repo_id`, without a `repo_id`, or when `folder` holds no student.
    """
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    kept = f"the student is saved in {folder}; push it later with `hfkd push {folder} --repo-id {repo_id or 'NAME'}`"
    if not repo_id:
        raise HubError(f"push_to_hub is set but hub_model_id is empty (set it to e.g. your-name/student); {kept}.")
    if _hub_offline():
        raise HubError(f"Cannot push to {repo_id}: HF_HUB_OFFLINE is set; {kept} when online.")
    files = student_files(folder)
    write_model_card(folder, results, model, repo_id)
    logger.info(f"Pushing {len(files)} files of {folder} to {repo_id}: {', '.join(files)}")
    operations = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=os.path.join(folder, f)) for f in files]
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.create_commit(repo_id=repo_id, operations=operations, commit_message="Upload student (hfkd)")
    except Exception as error:
        transport = type(error).__module__.split(".")[0] in _TRANSPORT_MODULES  # no connection, DNS, timeouts
        if not (
            transport or isinstance(error, (LocalTokenNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError))
        ):
            raise
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        status = getattr(getattr(error, "response", None), "status_code", None)
        if isinstance(error, LocalTokenNotFoundError) or status in (401, 403):
            fix = "log in with `hf auth login` or set HF_TOKEN to a token that may write this repo"
        elif isinstance(error, HfHubHTTPError):
            fix = "check the repo id and your rights to it"
        else:
            fix = "check the connection"
        raise HubError(f"Cannot push to {repo_id}: {reason} ({fix}); {kept}.") from None
    logger.info(f"Pushed {folder} to {repo_id}: {commit}")
    return str(commit)


__all__ = ["HubError", "base_model_of", "make_model_card", "push_student", "student_files", "write_model_card"]
