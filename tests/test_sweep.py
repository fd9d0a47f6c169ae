"""The recipe search (hfkd/experiment/sweep.py, scripts/sweep.py): a few trials on tiny models write the best recipe as
a config the other scripts run, every trial with its optimizer steps, and only the source domains are read."""

import json
import math
import os
import subprocess
import sys

import pytest
import yaml
from transformers import TrainerState, TrainingArguments

from hfkd import DistillationArguments
from hfkd.experiment import ExperimentArguments
from hfkd.experiment import sweep as sweep_module
from hfkd.experiment.sweep import (
    DEFAULT_SPACE,
    SweepArguments,
    TrialLog,
    given_settings,
    parse_space,
    recipe_config,
    require_optuna,
)

from .conftest import LABELS, ROOT, load_script, make_tokenizer, sentiment_of, tiny_bert, tiny_texts, write_domains

pytest.importorskip("optuna")

BATCH = 16
SPACE = ["learning_rate=1e-3:3e-2:log", "num_train_epochs=1,2,3", "max_grad_norm=0.5,0", "alpha"]


def write_data(folder, n=160):
    """Two labelled domains and a target whose labels are garbage: reading them would fail."""
    os.makedirs(folder, exist_ok=True)
    for seed, name in enumerate(("air", "phone")):
        with open(os.path.join(folder, f"{name}.jsonl"), "w") as f:
            for text in tiny_texts(n, seed=20 + seed):
                f.write(json.dumps({"text": f"{name} {text}", "label": LABELS[sentiment_of(text)]}) + "\n")
    with open(os.path.join(folder, "car.jsonl"), "w") as f:
        for i, text in enumerate(tiny_texts(n, seed=30)):
            f.write(json.dumps({"text": f"car {text}", "label": f"not-a-label-{i}"}) + "\n")
    return str(folder)


def write_config(tmp_path, teacher) -> str:
    config = {
        "teacher_model_name_or_path": str(teacher),
        "dataset": write_data(tmp_path / "domains"),
        "source_domains": ["air"],
        "class_names": LABELS,
        "student_num_layers": 1,
        "max_length": 32,
        "num_train_epochs": 1,
        "learning_rate": 1.0e-3,
        "max_grad_norm": 0.5,
        "per_device_train_batch_size": BATCH,
        "per_device_eval_batch_size": 64,
        "logging_steps": 5,
        "seed": 0,
        "report_to": "none",
        "disable_tqdm": True,
        "output_dir": str(tmp_path / "out"),
        "teacher_logits_cache_dir": str(tmp_path / "cache"),
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A 3-trial sweep on a tiny teacher; `(tmp_path, config path, summary, load_data calls)`."""
    tmp_path = tmp_path_factory.mktemp("sweep")
    teacher = tmp_path / "teacher"
    tiny_bert(num_layers=2, seed=0).save_pretrained(teacher)
    make_tokenizer(teacher).save_pretrained(teacher)
    config = write_config(tmp_path, teacher)
    calls, real = [], sweep_module.load_data

    def recording_load_data(data_args, *args, **kwargs):
        calls.append((list(data_args.source_domains), args, kwargs))
        return real(data_args, *args, **kwargs)

    argv = ["--config", config, "--n_trials", "3", "--sweep_seed", "0", "--space", *SPACE]
    script = load_script("sweep")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sweep_module, "load_data", recording_load_data)
        summary = script.main(*script.make_parser().parse_args_and_config(argv), argv=argv)
    return tmp_path, config, summary, calls


def test_sweep_writes_the_best_recipe_and_every_trial(swept):
    tmp_path, config, summary, _ = swept
    out = tmp_path / "out"
    assert summary["output_config"] == str(out / "best_recipe.yaml") and os.path.isfile(summary["output_config"])
    with open(out / "sweep_trials.json") as f:
        trials_file = json.load(f)
    trials = trials_file["trials"]
    assert len(trials) == trials_file["n_trials"] == 3 and trials_file["best_trial"] == summary["best_trial"]
    assert trials_file["finished"] and trials_file["source_domains"] == ["air"]

    # the best trial is the best objective, and the config's recipe ran first
    best = max(trials, key=lambda t: t["objective"])
    assert trials_file["best_value"] == best["objective"] and trials_file["best_params"] == best["params"]
    assert trials[0]["recipe"] == "config" and trials_file["config_value"] == trials[0]["objective"]
    assert trials[0]["params"] == {"learning_rate": 1e-3, "num_train_epochs": 1, "max_grad_norm": 0.5, "alpha": 0.5}
    assert trials_file["comparison"]["a"] == f"trial {best['number']}"

    space = parse_space(SPACE)
    steps_per_epoch = math.ceil(trials_file["train_rows"] / BATCH)
    for trial in trials:
        assert set(trial["params"]) == set(space)
        assert all(space[name].contains(value) for name, value in trial["params"].items()), trial["params"]
        assert trial["optimizer_steps"] == trial["params"]["num_train_epochs"] * steps_per_epoch
        assert [e["epoch"] for e in trial["evaluations"]] == list(range(1, trial["params"]["num_train_epochs"] + 1))
        assert trial["evaluations"][-1]["eval_macro_f1"] == trial["objective"]
        assert 0.0 <= trial["clip_fraction"] <= 1.0
        assert os.path.isfile(tmp_path / "out" / "sweep" / f"grad_health_trial{trial['number']}.png")

    # the written config: the input's keys, the best trial's values, a header that says what was searched
    with open(summary["output_config"]) as f:
        text = f.read()
    written, original = yaml.safe_load(text), yaml.safe_load(open(config))
    assert list(written)[: len(original)] == list(original)
    for name, value in best["params"].items():
        assert written[name] == pytest.approx(value)
    assert written["dataset"] == original["dataset"] and "n_trials" not in written and "space" not in written
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert "the best of 3 trials" in header[0] and any("eval_macro_f1" in line for line in header)
    assert any("learning_rate log-uniform [0.001, 0.03]" in line for line in header)


def test_the_written_config_runs_with_distill_for_the_found_epochs(swept):
    tmp_path, _, summary, _ = swept
    written = summary["output_config"]
    best = summary["best_params"]
    # both scripts parse it; the cross-domain baseline takes the same optimisation settings (finetune_arguments)
    *_, args = load_script("cross_domain").make_parser().parse_args_and_config(["--config", written])
    assert args.learning_rate == pytest.approx(best["learning_rate"]) and args.alpha == pytest.approx(best["alpha"])
    distill = load_script("distill")
    parsed = distill.make_parser().parse_args_and_config(
        ["--config", written, "--output_dir", str(tmp_path / "student"), "--grad_health", "false"]
    )
    _, _, args = parsed
    assert args.num_train_epochs == best["num_train_epochs"]
    assert args.max_grad_norm == pytest.approx(best["max_grad_norm"])
    metrics = distill.main(*parsed)
    steps_per_epoch = math.ceil(summary["train_rows"] / BATCH)
    assert metrics["global_step"] == best["num_train_epochs"] * steps_per_epoch
    # the same student as the best trial: same seed, same rows, same recipe
    assert metrics["eval_macro_f1"] == pytest.approx(summary["best_value"], abs=1e-6)


def test_only_the_source_domains_are_loaded(swept):
    # the target 'car' has labels outside the label space: had it been loaded for the selection, the sweep would fail
    _, _, summary, calls = swept
    assert calls == [(["air"], (), {})] and summary["source_domains"] == ["air"]
    assert summary["split"] == "validation"


def test_every_finished_trial_is_saved_at_once(tmp_path):
    # a sweep killed in its third trial keeps the two it finished
    progress = tmp_path / "sweep_trials.json"
    log = TrialLog("eval_macro_f1", progress_file=str(progress))
    state = TrainerState()
    for number in range(2):
        log.begin(number, {"learning_rate": 1e-4}, from_config=number == 0)
        log.on_train_begin(None, state, None)
        state.epoch, state.global_step = 1.0, 10 * (number + 1)
        log.on_evaluate(None, state, None, metrics={"eval_macro_f1": 0.5 + number, "eval_loss": 1.0})
        log.on_train_end(TrainingArguments(output_dir=str(tmp_path)), state, None)
    log.begin(2, {"learning_rate": 1e-3}, from_config=False)
    saved = json.loads(progress.read_text())
    assert not saved["finished"] and [t["number"] for t in saved["trials"]] == [0, 1]
    assert [t["objective"] for t in saved["trials"]] == [0.5, 1.5]
    assert [t["optimizer_steps"] for t in saved["trials"]] == [10, 20]


def test_space_entries_round_trip_and_the_default_space():
    assert parse_space(None) == DEFAULT_SPACE
    assert parse_space([d.spec() for d in DEFAULT_SPACE.values()]) == DEFAULT_SPACE
    assert set(DEFAULT_SPACE) == {
        "learning_rate", "num_train_epochs", "warmup_steps", "max_grad_norm", "temperature", "alpha",
    }  # fmt: skip
    space = parse_space(["per_device_train_batch_size=8,16", "weight_decay=0:0.1", "num_train_epochs=2:5:int"])
    assert space["num_train_epochs"].contains(3) and not space["num_train_epochs"].contains(3.5)
    assert space["per_device_train_batch_size"].contains(16) and not space["weight_decay"].contains(0.2)
    assert parse_space(["gradient_accumulation_steps=1:4"])["gradient_accumulation_steps"].kind == "int"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_trials": 0}, r"n_trials must be in \[1, inf\]; got n_trials=0\. Fix: use e\.g\. 12"),
        ({"space": ["lerning_rate"]}, r"'lerning_rate' is not a hyperparameter .*did you mean 'learning_rate'"),
        ({"space": ["alpha=0:2"]}, r"space entry 'alpha=0:2': alpha must lie in \[0, 1\]; got 2"),
        ({"space": ["learning_rate=1e-5:x"]}, r"space entry .learning_rate=1e-5:x. is not valid; write name"),
        ({"space": ["weight_decay"]}, r"'weight_decay' has no default range; give one, e.g. weight_decay=0:0.1"),
        ({"space": ["warmup_steps=0:5"]}, r"warmup_steps below 1 is a fraction of all steps"),
        ({"space": []}, r"space is empty"),
        ({"objective": "macro_f1"}, r"objective='macro_f1' is not an evaluation metric; .* eval_macro_f1"),
        ({"direction": "up"}, r"direction='up' is not valid; set direction to one of \['maximize', 'minimize'\]"),
    ],
)
def test_bad_sweep_options_name_field_value_and_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SweepArguments(**kwargs)


def test_direction_follows_the_objective():
    assert SweepArguments().resolved_direction == "maximize"
    assert SweepArguments(objective="eval_loss").resolved_direction == "minimize"


def test_without_optuna_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    with pytest.raises(ImportError, match=r'pip install "hfkd\[sweep\]"'):
        require_optuna()


def test_the_experiment_teacher_keeps_its_recipe_in_the_written_config():
    args = DistillationArguments(output_dir="x", learning_rate=1e-4, num_train_epochs=2, report_to="none")
    params = {"learning_rate": 3e-4, "num_train_epochs": 6, "temperature": 4.0}
    base = {"learning_rate": 1e-4, "num_train_epochs": 2, "n_trials": 8}
    body = recipe_config(base, params, args, ExperimentArguments(), teacher_pins=True)
    assert body == {
        "learning_rate": 3e-4, "num_train_epochs": 6, "temperature": 4, "teacher_learning_rate": 1e-4,
        "teacher_num_train_epochs": 2,
    }  # fmt: skip
    given = ExperimentArguments(teacher_learning_rate=5e-5)
    assert "teacher_learning_rate" not in recipe_config(base, params, args, given, teacher_pins=True)
    assert "teacher_num_train_epochs" not in recipe_config(base, params, args, ExperimentArguments(), False)


def test_given_settings_are_the_config_and_the_flags_named():
    script = load_script("sweep")
    argv = ["--n_trials", "2", "--seed", "3", "--no_grad_health", "--output_dir=o"]
    parsed = script.make_parser().parse_args_and_config(argv)
    given = given_settings(argv, parsed, {"dataset": "tweets", "space": ["alpha"]})
    assert given == {"dataset": "tweets", "seed": 3, "grad_health": False, "output_dir": "o"}


@pytest.mark.slow
def test_bad_input_ends_in_one_error_line(tmp_path):
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "sweep.py"), "--n_trials", "0", "--output_dir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: n_trials must be in [1, inf]; got n_trials=0. Fix: use e.g. 12 (each trial trains one student)."
    ]
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_an_experiment_config_trains_the_teacher_that_cross_domain_reuses(tmp_path):
    data = write_domains(tmp_path / "domains", n=96)
    config = {
        "dataset": str(data), "source_domains": ["air"], "target_domains": ["phone", "car"],
        "model_name_or_path": "builtin:tiny-bert", "student_num_layers": 1, "max_length": 32, "num_train_epochs": 1,
        "learning_rate": 1.0e-3, "per_device_train_batch_size": 8, "logging_steps": 5, "seed": 0,
        "report_to": "none", "disable_tqdm": True, "grad_health": False, "output_dir": str(tmp_path / "exp"),
        "teacher_logits_cache_dir": str(tmp_path / "cache"),
    }  # fmt: skip
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = ["--config", str(path), "--n_trials", "2", "--space", "learning_rate=1e-3:1e-2:log", "num_train_epochs=1,2"]
    script = load_script("sweep")
    summary = script.main(*script.make_parser().parse_args_and_config(argv), argv=argv)
    assert summary["teacher_trained_by_sweep"] and summary["teacher"].startswith(str(tmp_path / "exp" / "air"))
    written = yaml.safe_load(open(summary["output_config"]))
    assert written["teacher_learning_rate"] == pytest.approx(1e-3) and written["teacher_num_train_epochs"] == 1
    cross_domain = load_script("cross_domain")
    argv = ["--config", summary["output_config"], "--models", "teacher"]
    results = cross_domain.main(*cross_domain.make_parser().parse_args_and_config(argv))
    teacher = results["blocks"][0]["stages"]["teacher"]
    assert teacher["reused"] and teacher["path"] == summary["teacher"]
