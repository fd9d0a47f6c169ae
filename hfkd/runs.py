"""What every run shares: the source-domain splits it trains on, and the files that describe it in its folder."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from dataclasses import dataclass
from typing import Any

from datasets import Dataset, DatasetDict

from .config import DataArguments
from .data import concatenate_domains, load_domains, tokenize_domains

RUN_INFO_FILE = "hfkd_run.json"
METRICS_FILE = "metrics.json"
SECRET_FIELDS = ("hub_token", "token")


@dataclass
class SourceSplits:
    """Tokenised train/validation/test of the source domain(s) and their label names (in id order)."""

    train: Dataset
    validation: Dataset
    test: Dataset
    label_names: list[str]
    domains: list[str]


_SOURCES = object()


def load_data(data_args: DataArguments, names: list[str] | None = _SOURCES) -> dict[str, DatasetDict]:
    """Domains of `data_args.dataset`, untokenised, with one shared label space: the configured source domains, or
    the domains `names` (`None`: every domain of the dataset)."""
    return load_domains(
        data_args.dataset,
        data_args.source_domains if names is _SOURCES else names,
        dataset_config_name=data_args.dataset_config_name,
        text_column=data_args.text_column,
        label_column=data_args.label_column,
        domain_column=data_args.domain_column,
        label_names=data_args.class_names,
        encoding=data_args.encoding,
        validation_size=data_args.validation_size,
        test_size=data_args.test_size,
        split_seed=data_args.split_seed,
        deduplicate=data_args.deduplicate,
        max_train_samples=data_args.max_train_samples,
        max_eval_samples=data_args.max_eval_samples,
    )


def domain_label_names(domains: dict[str, DatasetDict]) -> list[str]:
    """The label names (in id order) that every domain shares."""
    return list(next(iter(domains.values()))["train"].features["label"].names)


def tokenize_source_splits(
    domains: dict[str, DatasetDict], tokenizer, max_length: int, main_process_first=None, keep_text: bool = False
) -> SourceSplits:
    """Tokenise every domain and concatenate their train/validation/test splits.

    `main_process_first` is a context manager factory (e.g. `accelerator.main_process_first`): under several
    processes the main one tokenises first and writes the `datasets` cache that the others then read. `keep_text`
    keeps the raw `text` column (the teacher-logit cache tokenises it with the teacher's tokenizer).
    """
    guard = main_process_first or contextlib.nullcontext
    with guard():
        tokenized = tokenize_domains(domains, tokenizer, max_length=max_length, keep_text=keep_text)
    names = list(tokenized)
    return SourceSplits(
        train=concatenate_domains(tokenized, names, "train"),
        validation=concatenate_domains(tokenized, names, "validation"),
        test=concatenate_domains(tokenized, names, "test"),
        label_names=domain_label_names(domains),
        domains=names,
    )


def prepare_launch_environment() -> None:
    """Call first thing in a script: make multi-process launches on machines without GPUs use CPU DDP, and a single
    process on such a machine use every core (plain `accelerate launch` gives it one thread; see `_set_cpu_threads`).

    torchrun / `accelerate launch --multi_gpu` start several processes but, without a GPU, Accelerate only forms a
    process group when told to use the CPU (`ACCELERATE_USE_CPU`); this sets it. `accelerate launch --cpu
    --num_processes N` (accelerate <= 1.15) starts ONE process unless mpirun is used (huggingface/accelerate#2741);
    that case is detected from the rendezvous address the launcher sets, and a warning says how to get N processes.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    _set_cpu_threads(world_size)
    if world_size > 1 and not use_cpu:
        import torch

        if not torch.cuda.is_available():
            os.environ["ACCELERATE_USE_CPU"] = "1"
    elif world_size == 1 and use_cpu and "MASTER_ADDR" in os.environ and "LOCAL_RANK" not in os.environ:
        import warnings

        warnings.warn(
            "`accelerate launch --cpu --num_processes N` started a single process: Accelerate's launcher ignores "
            "--num_processes on CPU without mpirun (huggingface/accelerate#2741). For N-process CPU DDP run "
            "`accelerate launch --config_file configs/accelerate/cpu_ddp.yaml <script> ...` instead.",
            stacklevel=2,
        )


def _set_cpu_threads(world_size: int) -> None:
    """One process on a machine without GPUs gets every physical core.

    Plain `accelerate launch` (no `--cpu`) sets OMP_NUM_THREADS=1 for its one process, so torch would train on one
    core of a CPU machine. `HFKD_NUM_THREADS=N` sets the number of threads in any case.
    """
    import torch

    wanted = os.environ.get("HFKD_NUM_THREADS")
    if wanted:
        torch.set_num_threads(int(wanted))
        return
    launched = "ACCELERATE_DYNAMO_BACKEND" in os.environ  # set by `accelerate launch` for the processes it starts
    if world_size == 1 and launched and os.environ.get("OMP_NUM_THREADS") == "1" and not torch.cuda.is_available():
        import psutil

        cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
        if cores > 1:
            torch.set_num_threads(cores)


def launch_command(script: str) -> str:
    """The command line that started a script, as a person would retype it (recorded in run files and cards), with
    the values of secret flags (`--hub_token`) replaced by `<redacted>`."""
    import shlex
    import sys

    args, secret = [], False
    for arg in sys.argv[1:]:
        name, eq, _ = arg.lstrip("-").partition("=")
        is_flag = arg.startswith("--") and name.replace("-", "_") in SECRET_FIELDS
        args.append(f"{arg.split('=')[0]}=<redacted>" if is_flag and eq else "<redacted>" if secret else arg)
        secret = is_flag and not eq
    return f"accelerate launch scripts/{script}.py {shlex.join(args)}".rstrip()


TRACEBACK_ENV = "HFKD_TRACEBACK"
# How long a process other than the main one waits before it reports a bad input: when the main process failed on the
# same input (the usual case: every process reads the same config and data), it exits at once and torchrun stops the
# others meanwhile (it checks every 0.1 s under `accelerate launch`), so that the message is printed once.
OTHER_RANK_REPORT_DELAY_S = 5.0


def bad_input_errors() -> tuple[type[BaseException], ...]:
    """The exceptions hfkd raises, with a message that names the fix, for input it cannot use: a config value, a
    data file, a model path, a missing optional package (the demo extra), a push that cannot work."""
    from .hub import HubError

    return (ValueError, FileNotFoundError, ImportError, HubError)


def show_traceback() -> bool:
    """Whether `HFKD_TRACEBACK` (e.g. `HFKD_TRACEBACK=1`) asks for the full traceback of a bad input."""
    return os.environ.get(TRACEBACK_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def report_error(error: BaseException) -> None:
    """Print `error: <message>` on stderr, once for a run of several processes.

    The main process (rank 0) prints at once. Another process waits `OTHER_RANK_REPORT_DELAY_S` first and then
    prints `error: [rank N] <message>`: if the main process failed too, the launcher has stopped this one by then
    (`exit_on_bad_input` makes the main process of a multi-process run exit without delay).
    A bad input that hfkd did not raise itself (its message may not say where) gets a pointer to `HFKD_TRACEBACK`.
    """
    import sys

    message = str(error) or type(error).__name__
    if not _raised_by_hfkd(error):
        message += f" ({type(error).__name__}; {TRACEBACK_ENV}=1 shows where it was raised)"
    rank, world_size = _rank_and_world_size()
    if world_size > 1 and rank != 0:
        time.sleep(OTHER_RANK_REPORT_DELAY_S)
        message = f"[rank {rank}] {message}"
    print(f"error: {message}", file=sys.stderr, flush=True)


def _rank_and_world_size() -> tuple[int, int]:
    """This process's rank and the number of processes, as torchrun / `accelerate launch` set them (0, 1 if unset)."""
    try:
        return int(os.environ.get("RANK") or 0), int(os.environ.get("WORLD_SIZE") or 1)
    except ValueError:
        return 0, 1


def _raised_by_hfkd(error: BaseException) -> bool:
    traceback = error.__traceback__
    if traceback is None:
        return True  # not raised (made and passed on): nothing to point at
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.abspath(traceback.tb_frame.f_code.co_filename).startswith(here + os.sep)


@contextlib.contextmanager
def exit_on_bad_input():
    """In a script's `__main__`: a known bad input (see `bad_input_errors`: a wrong config value or data file, a
    missing optional package, a push that cannot work) ends the script with one `error: <message>` line on stderr and
    exit code 1, no traceback (see `report_error`); `HFKD_TRACEBACK=1` shows the traceback instead. Anything else
    (a bug) keeps its traceback. A failed push comes after everything was saved.

    Under `accelerate launch`, Accelerate adds its own `CalledProcessError` traceback for any failed script unless it
    is run as `accelerate launch -q`; torchrun (several processes) always prints a summary of the failed process.
    """
    import sys

    try:
        yield
    except bad_input_errors() as error:
        if show_traceback():
            raise
        report_error(error)
        rank, world_size = _rank_and_world_size()
        if world_size > 1 and rank == 0:
            # At once: tearing down torch.distributed and the interpreter takes seconds, and the launcher should stop
            # the other processes before they report the same input (it stops them without cleanup in any case).
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        raise SystemExit(1) from None


exit_on_hub_error = exit_on_bad_input  # its former name, when it caught failed pushes only


def setup_logging() -> None:
    """Script logging as in the transformers examples: INFO on the main process, WARNING on the others."""
    import logging

    import transformers

    is_main = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0
    level = logging.INFO if is_main else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=level)
    logging.getLogger("hfkd").setLevel(level)
    transformers.utils.logging.set_verbosity(logging.WARNING)  # keep transformers' own INFO chatter out


def redact(config: dict[str, Any]) -> dict[str, Any]:
    """Drop secrets (tokens) from a flat config before it is written anywhere."""
    return {k: ("<redacted>" if k in SECRET_FIELDS and v else v) for k, v in config.items()}


def environment_info() -> dict[str, str]:
    import accelerate
    import datasets
    import torch
    import transformers

    from . import __version__

    return {
        "hfkd": __version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "accelerate": accelerate.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def check_output_dir(output_dir: str, script: str, config: dict[str, Any], *, overwrite: bool, resuming: bool) -> None:
    """Refuse to train into a folder that holds a run of another script or config (nothing is overwritten by
    accident); the same config, `resume_from_checkpoint` or `overwrite_output_dir` go ahead."""
    from .stages import changed_settings, training_settings

    path = os.path.join(output_dir, RUN_INFO_FILE)
    if overwrite or resuming or not os.path.isfile(path):
        return
    try:
        with open(path) as f:
            previous = json.load(f)
    except (OSError, json.JSONDecodeError):
        return  # not a readable run record: nothing to compare with
    old = training_settings(previous.get("config") or {})
    changes = changed_settings(old, training_settings(config))
    if previous.get("script") != script:
        changes.insert(0, f"script: {previous.get('script')!r} -> {script!r}")
    if changes:
        raise ValueError(
            f"output_dir={output_dir!r} holds a run with another config ({'; '.join(changes[:6])}). Use another "
            "output_dir, --resume_from_checkpoint last to continue that run, or --overwrite_output_dir true to "
            "replace it."
        )


def write_run_info(output_dir: str, script: str, config: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    """Write `hfkd_run.json`: the script, its full flat config (secrets redacted), versions and start time."""
    os.makedirs(output_dir, exist_ok=True)
    info = {
        "script": script,
        "config": redact(config),
        "versions": environment_info(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    with open(os.path.join(output_dir, RUN_INFO_FILE), "w") as f:
        json.dump(info, f, indent=2)


def list_checkpoints(output_dir: str) -> list[str]:
    """The `checkpoint-N` folders of `output_dir`, oldest (smallest N) first."""
    if not os.path.isdir(output_dir):
        return []
    found = [d for d in os.listdir(output_dir) if d.startswith("checkpoint-") and d.split("-")[-1].isdigit()]
    return [os.path.join(output_dir, d) for d in sorted(found, key=lambda d: int(d.split("-")[-1]))]


def last_complete_checkpoint(output_dir: str, marker: str) -> str | None:
    """The newest `checkpoint-N` folder of `output_dir` that holds `marker`, the file a checkpoint writes last
    (`trainer_state.json` for the Trainer, `hfkd_loop_state.json` for the Accelerate loop). A run killed while saving
    leaves an incomplete newest checkpoint; it is skipped with a warning, never resumed from."""
    from transformers.utils import logging

    for folder in reversed(list_checkpoints(output_dir)):
        if os.path.isfile(os.path.join(folder, marker)):
            return folder
        logging.get_logger(__name__).warning(
            f"{folder} is incomplete (no {marker}; the run was stopped while saving it): skipped."
        )
    return None


def write_metrics(output_dir: str, metrics: dict[str, Any]) -> str:
    path = os.path.join(output_dir, METRICS_FILE)
    with open(path, "w") as f:
        json.dump(metrics, f, indent=2)
    return path


def hardware_info() -> dict[str, Any]:
    """What the run ran on, in words (for results files and reports)."""
    import torch
    from accelerate import PartialState

    state = PartialState()
    if torch.cuda.is_available():
        device = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    else:
        device = "no GPU"
    cpu = platform.processor() or platform.machine()
    return {
        "description": f"{os.cpu_count()} CPU cores ({cpu}), {device}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "num_processes": state.num_processes,
        "device": str(state.device),
    }
