"""What a script does around its `main()`: the launch environment (CPU DDP, threads), logging, the command line it
records, and one `error: ...` line for a bad input instead of a traceback.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import time

from .hub.push import HubError
from .run_files import SECRET_FIELDS


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


def setup_logging() -> None:
    """Script logging as in the transformers examples: INFO on the main process, WARNING on the others."""
    import logging

    import transformers

    is_main = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0
    level = logging.INFO if is_main else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=level)
    logging.getLogger("hfkd").setLevel(level)
    transformers.utils.logging.set_verbosity(logging.WARNING)  # keep transformers' own INFO chatter out
