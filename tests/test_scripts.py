"""Both scripts end to end on configs/tiny.yaml: in-process, resumed, and under 2-process CPU DDP."""

import ast
import json
import os
import subprocess
import sys
import tempfile

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from .conftest import ROOT, TINY, launch_ddp, run_script


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    run_script("finetune", "--model_name_or_path", "builtin:tiny-bert", "--output_dir", str(out))
    return out


def test_finetune_writes_a_complete_model_folder(teacher_dir):
    files = set(os.listdir(teacher_dir))
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json", "hfkd_run.json"} <= files
    metrics = json.loads((teacher_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and metrics["eval_n"] == 32
    assert metrics["test_n"] > 0 and metrics["train_samples"] == 64
    config = AutoConfig.from_pretrained(teacher_dir)
    assert list(config.id2label.values()) == ["negative", "neutral", "positive"]
    # one checkpoint per epoch, save_total_limit=1 keeps the last
    checkpoints = [d for d in files if d.startswith("checkpoint-")]
    assert checkpoints == ["checkpoint-16"]  # 64 rows / batch 8 = 8 steps per epoch, 2 epochs
    run = json.loads((teacher_dir / "hfkd_run.json").read_text())
    assert run["config"]["model_name_or_path"] == "builtin:tiny-bert" and run["source_domains"] == ["airline"]


def test_finetune_resume_from_epoch_checkpoint_matches_uninterrupted(tmp_path, teacher_dir):
    # A run that keeps both epoch checkpoints, resumed from the first: same final weights as the uninterrupted run.
    full = tmp_path / "full"
    run_script(
        "finetune", "--model_name_or_path", "builtin:tiny-bert", "--output_dir", str(full), "--save_total_limit", "2"
    )
    resumed = tmp_path / "resumed"
    os.makedirs(resumed)
    os.rename(full / "checkpoint-8", resumed / "checkpoint-8")
    run_script(
        "finetune",
        "--model_name_or_path",
        "builtin:tiny-bert",
        "--output_dir",
        str(resumed),
        "--resume_from_checkpoint",
        "last",
    )
    history = json.loads((resumed / "log_history.json").read_text())
    assert min(log["step"] for log in history) > 8  # it trained the second epoch only
    a, b = load_file(str(full / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)


def test_distill_end_to_end(tmp_path, teacher_dir):
    out = tmp_path / "student"
    metrics = run_script(
        "distill",
        "--teacher_model_name_or_path",
        str(teacher_dir),
        "--student_num_layers",
        "1",
        "--output_dir",
        str(out),
        "--temperature",
        "4",
    )
    assert {"eval_accuracy", "eval_macro_f1", "eval_loss_kd", "test_accuracy", "train_loss"} <= set(metrics)
    files = set(os.listdir(out))
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json", "hfkd_run.json"} <= files
    config = AutoConfig.from_pretrained(out)
    assert config.num_hidden_layers == 1 and config.hfkd_student["layer_ids"] == [0]
    # the saved weights are the student's alone: no second encoder layer, nothing named teacher
    keys = load_file(str(out / "model.safetensors")).keys()
    assert not any(".layer.1." in k or "teacher" in k for k in keys)
    ckpt = sorted(d for d in files if d.startswith("checkpoint-"))[-1]
    state = json.loads((out / ckpt / "trainer_state.json").read_text())
    assert any("loss_kd" in log and "loss_ce" in log for log in state["log_history"])


def permuted_copy(folder, out, order):
    """A copy of a saved classifier whose output rows and id2label/label2id are permuted: the same function by name."""
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight[order])
        model.classifier.bias.copy_(model.classifier.bias[order])
    model.config.id2label = {i: names[j] for i, j in enumerate(order)}
    model.config.label2id = {name: i for i, name in model.config.id2label.items()}
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(folder).save_pretrained(out)
    return out


def probabilities_by_name(folder, texts):
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    batch = AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        probs = model(**batch).logits.softmax(-1)
    return {model.config.id2label[i]: probs[:, i] for i in range(probs.shape[1])}


def test_label_order_of_a_loaded_model_does_not_change_what_is_trained(tmp_path, teacher_dir):
    # A teacher with the data's labels in another id order (as Hub checkpoints often have) is the same function by
    # name: students distilled from it, and models fine-tuned from it, must be the same as from the original.
    reordered = permuted_copy(teacher_dir, tmp_path / "reordered", order=[2, 0, 1])
    assert list(AutoConfig.from_pretrained(reordered).id2label.values()) == ["positive", "negative", "neutral"]
    texts = ["@united two hours on the tarmac, again", "thanks @jetblue great crew", "@usairways flight 123"]
    for script, flag in (("distill", "--teacher_model_name_or_path"), ("finetune", "--model_name_or_path")):
        outputs = []
        for name, teacher in (("original", teacher_dir), ("reordered", reordered)):
            out = tmp_path / f"{script}-{name}"
            extra = ["--student_num_layers", "1"] if script == "distill" else []
            run_script(script, flag, str(teacher), "--output_dir", str(out), "--num_train_epochs", "1", *extra)
            assert list(AutoConfig.from_pretrained(out).id2label.values()) == ["negative", "neutral", "positive"]
            outputs.append(probabilities_by_name(out, texts))
        for label in outputs[0]:
            torch.testing.assert_close(
                outputs[0][label], outputs[1][label], atol=1e-6, rtol=0, msg=f"{script} {label}"
            )


def test_distill_without_teacher_names_the_fix(tmp_path):
    with pytest.raises(ValueError, match="does not exist|could not be loaded"):
        run_script("distill", "--teacher_model_name_or_path", str(tmp_path / "nope"), "--output_dir", str(tmp_path))


@pytest.mark.slow
def test_both_scripts_under_two_process_ddp(tmp_path):
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    out = launch_ddp(
        "scripts/finetune.py",
        "--config",
        TINY,
        "--model_name_or_path",
        "builtin:tiny-bert",
        "--output_dir",
        str(teacher),
        "--num_train_epochs",
        "1",
    )
    assert out.count("Saved the fine-tuned model") == 1  # the main process alone saves and reports
    metrics = json.loads((teacher / "metrics.json").read_text())
    assert metrics["eval_n"] == 32  # gather_for_metrics drops the duplicated padding rows
    assert metrics["global_step"] == 4  # 64 rows / (2 processes x batch 8)
    out = launch_ddp(
        "scripts/distill.py",
        "--config",
        TINY,
        "--teacher_model_name_or_path",
        str(teacher),
        "--student_num_layers",
        "1",
        "--output_dir",
        str(student),
        "--num_train_epochs",
        "1",
        "--teacher_logits_cache_dir",
        str(tmp_path / "cache"),
    )
    assert out.count("Saved the student") == 1
    # the teacher-logit cache is computed once (train, validation, test): each process its own shard, logged once
    caches = [name for name in os.listdir(tmp_path / "cache") if not name.startswith(".")]  # not .locks
    assert out.count("Computing the teacher's logits") == 3 and len(caches) == 3
    for folder in (teacher, student):
        assert sorted(f for f in os.listdir(folder) if f.endswith(".safetensors")) == ["model.safetensors"]
        load_file(str(folder / "model.safetensors"))  # complete and readable
    assert json.loads((student / "metrics.json").read_text())["eval_n"] == 32


def test_launch_environment_switches_multi_process_cpu_runs_to_ddp(monkeypatch):
    from hfkd.launch import prepare_launch_environment

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    prepare_launch_environment()
    assert os.environ["ACCELERATE_USE_CPU"] == "1"
    # `accelerate launch --cpu --num_processes 2` runs one process with a rendezvous address: say so
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with pytest.warns(UserWarning, match="started a single process"):
        prepare_launch_environment()


def test_no_script_shadows_an_installed_module():
    # `python scripts/x.py` puts scripts/ first on sys.path: a scripts/evaluate.py would be imported instead of the
    # `evaluate` package by every script (and by hfkd.metrics inside them).

    scripts = [f[:-3] for f in os.listdir(os.path.join(ROOT, "scripts")) if f.endswith(".py")]
    assert "cross_domain" in scripts and "evaluate_models" in scripts
    # asked in a fresh interpreter outside the repository: modules this test session imported do not count
    probe = "import importlib.util, sys; print([n for n in sys.argv[1:] if importlib.util.find_spec(n)])"
    command = [sys.executable, "-c", probe, "evaluate", *scripts]  # `evaluate`: proof that the probe finds modules
    found = subprocess.run(command, capture_output=True, text=True, cwd=tempfile.gettempdir(), check=True)
    installed = ast.literal_eval(found.stdout.strip())
    assert installed[0] == "evaluate"
    shadowing = installed[1:]
    assert shadowing == [], f"scripts/{shadowing[0]}.py shadows the installed module {shadowing[0]!r}; rename it"


def test_one_process_launched_on_a_cpu_machine_uses_every_core(monkeypatch):
    # plain `accelerate launch` sets OMP_NUM_THREADS=1 for its single process: on a CPU machine that is one core
    from hfkd.launch import prepare_launch_environment

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("psutil.cpu_count", lambda logical=True: 4)
    for name in ("WORLD_SIZE", "MASTER_ADDR", "HFKD_NUM_THREADS", "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    prepare_launch_environment()
    assert calls == []  # not started by `accelerate launch`: OMP_NUM_THREADS=1 is the user's own choice
    monkeypatch.setenv("ACCELERATE_DYNAMO_BACKEND", "NO")
    prepare_launch_environment()
    assert calls == [4]
    monkeypatch.setenv("WORLD_SIZE", "2")  # several processes share the cores: leave them alone
    prepare_launch_environment()
    assert calls == [4]
    monkeypatch.setenv("HFKD_NUM_THREADS", "3")  # the explicit setting wins
    prepare_launch_environment()
    assert calls == [4, 3]
