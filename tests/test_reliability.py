"""A run killed with SIGKILL after its first checkpoint resumes to the student an uninterrupted run gives; the same
config and seed give the same numbers twice; an incomplete newest checkpoint is never resumed from."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from .conftest import ROOT, TINY, load_script, run_script

# 400 airline tweets, batch 8: 50 steps per epoch, so the kill lands well inside the second epoch
LONGER = ["--max_train_samples", "400", "--num_train_epochs", "2", "--save_total_limit", "3", "--seed", "0"]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    run_script("finetune", "--model_name_or_path", "builtin:tiny-bert", "--output_dir", str(out))
    return str(out)


def command(script: str, out, *extra) -> list[str]:
    return [sys.executable, os.path.join(ROOT, "scripts", f"{script}.py"), "--config", TINY, *LONGER, *extra,
            "--output_dir", str(out)]  # fmt: skip


def kill_after_first_checkpoint(cmd: list[str], out, marker: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = os.path.join(out, "checkpoint-50", marker)
    deadline = time.time() + 300
    while not os.path.exists(first):
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline, "no first checkpoint in 5 minutes"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(out, "model.safetensors")), "killed too late: the run had finished"


@pytest.mark.slow
@pytest.mark.parametrize("script", ["distill", "finetune"])
def test_sigkill_then_resume_gives_the_uninterrupted_student(tmp_path, teacher_dir, script):
    if script == "distill":
        extra = ["--teacher_model_name_or_path", teacher_dir, "--student_num_layers", "1"]
        extra += ["--teacher_logits_cache_dir", str(tmp_path / "cache")]
        marker = "trainer_state.json"
    else:
        extra, marker = (
            ["--model_name_or_path", "builtin:tiny-bert", "--student_num_layers", "1"],
            "hfkd_loop_state.json",
        )
    full, killed = tmp_path / "full", tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    subprocess.run(command(script, full, *extra), cwd=ROOT, env=env, check=True, capture_output=True)

    kill_after_first_checkpoint(command(script, killed, *extra), killed, marker)
    # a checkpoint the kill cut short (no marker) must be skipped, never resumed from
    os.makedirs(killed / "checkpoint-999", exist_ok=True)
    resume = command(script, killed, *extra, "--resume_from_checkpoint", "last")
    proc = subprocess.run(resume, cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "checkpoint-999 is incomplete" in proc.stderr

    want, got = load_file(str(full / "model.safetensors")), load_file(str(killed / "model.safetensors"))
    assert set(want) == set(got)
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-6, rtol=0, msg=name)
    final = json.loads((killed / "metrics.json").read_text())
    assert final["eval_accuracy"] == json.loads((full / "metrics.json").read_text())["eval_accuracy"]


def test_same_config_and_seed_give_identical_numbers(tmp_path, teacher_dir):
    script = load_script("distill")
    metrics = []
    for run in ("a", "b"):
        argv = ["--config", TINY, "--teacher_model_name_or_path", teacher_dir, "--student_num_layers", "1"]
        argv += ["--output_dir", str(tmp_path / run), "--teacher_logits", "online"]
        metrics.append(script.main(*script.make_parser().parse_args_and_config(argv)))
    timings = ("runtime", "per_second")
    keep = [k for k in metrics[0] if k.startswith(("eval_", "test_", "train_loss")) and not k.endswith(timings)]
    assert len(keep) > 6 and {k: metrics[0][k] for k in keep} == {k: metrics[1][k] for k in keep}
    a, b = (load_file(str(tmp_path / r / "model.safetensors")) for r in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
