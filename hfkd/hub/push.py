"""Pushing a student to the Hub: exactly its top-level files and its ONNX export ([`student_files`]), after everything
is saved locally.

The token comes from where `huggingface_hub` looks (`HF_TOKEN`, the login cache) unless one is passed; it is never
written or logged. Known failures (offline, no token or no rights, no repo id, no student in the folder) raise
[`HubError`] with one line that says what to do.
"""

from __future__ import annotations

import fnmatch
import os
from typing import Any

from transformers.utils import logging

from ..models import hub_offline
from .card import CARD_FILE, EXPORT_DIR, EXPORT_REPORT, EXPORT_TABLE, write_model_card

logger = logging.get_logger(__name__)


# The config and tokenizer files of a model folder, at the top of the student folder and in its ONNX export.
MODEL_FOLDER_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "*.model",  # sentencepiece: tokenizer.model, spiece.model, spm.model, ...
)


# What a pushed student holds: the model, its config, the tokenizer files and the card, and its ONNX export
# (`onnx/`, written by `hfkd export`: the .onnx files, their config and tokenizer, the export report); nothing else.
# Each entry is a file name or an fnmatch pattern matched against the files of ONE folder: the student folder itself,
# or for an entry like "onnx/*.onnx" its `onnx/` subfolder. `*` never reaches into a subfolder, so
# `checkpoint-N/model.safetensors` (earlier states, with the intermediate-layer projections) is never pushed.
STUDENT_FILES = (
    "model.safetensors",
    "model-*-of-*.safetensors",  # the shards of a large model, with their index
    "model.safetensors.index.json",
    *MODEL_FOLDER_FILES,
    CARD_FILE,
    *(f"{EXPORT_DIR}/{name}" for name in ("*.onnx", "*.onnx_data", *MODEL_FOLDER_FILES, EXPORT_REPORT, EXPORT_TABLE)),
)


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


# the HTTP stacks huggingface_hub may use: their errors mean the Hub could not be reached
_TRANSPORT_MODULES = {"httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3"}


class HubError(RuntimeError):
    """A push that cannot work as configured; the message is one line that names the fix."""


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
    elif hub_offline():
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
    if hub_offline():
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
