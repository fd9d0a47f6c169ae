"""Model cards and pushes: card contents and metadata from real runs, offline / unauthorised pushes, token hygiene."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from huggingface_hub import ModelCard

from hfkd import cli
from hfkd.evaluation.report import format_ratio, format_score
from hfkd.evaluation.results import load_results
from hfkd.hub import push
from hfkd.hub.card import base_model_of, make_model_card, write_model_card
from hfkd.hub.push import HubError, push_student

from .conftest import DOMAINS, ROOT, TINY, load_script, make_tokenizer, tiny_bert
from .conftest import run_experiment as run

FAKE_TOKEN = "hf_FAKEtoken0123456789abcdefghijklmnopq"


def test_experiment_students_carry_cards_with_the_results(experiment):
    _, results = experiment
    block = results["blocks"][0]
    assert not os.path.exists(os.path.join(block["stages"]["teacher"]["path"], "README.md"))  # never pushed
    for model in ("baseline", "distilled", "adaptive"):
        path = os.path.join(block["stages"][model]["path"], "README.md")
        card = ModelCard.load(path)
        assert card.data.pipeline_tag == "text-classification" and card.data.library_name == "transformers"
        assert "knowledge-distillation" in card.data.tags
        # model-index: accuracy and macro-F1 of this student on every domain, the numbers of results.json
        got = {(r.dataset_config, r.metric_type): r.metric_value for r in card.data.eval_results}
        want = {
            (d, t): block["metrics"][model][d][k]
            for d in DOMAINS
            for t, k in (("accuracy", "accuracy"), ("f1", "macro_f1"))
        }
        assert got == want
        assert all(r.task_type == "text-classification" for r in card.data.eval_results)
        splits = {r.dataset_config: r.dataset_split for r in card.data.eval_results}
        assert splits["air"] == "test" and splits["car"] == "validation+test"  # targets: all their held-out rows
        text = card.text
        for domain in DOMAINS:  # the cross-domain table: student, teacher, baseline, retention per domain
            cells = block["metrics"]
            row = next(line for line in text.splitlines() if line.startswith(f"| {domain}"))
            assert format_score(cells[model][domain]["macro_f1"]) in row
            assert format_score(cells["teacher"][domain]["macro_f1"]) in row
            retention = block["summary"][model]["retention_macro_f1"][domain]
            assert retention is None or format_ratio(retention) in row
        if model == "baseline":  # no teacher took part: no distillation settings claimed
            assert "| temperature |" not in text and "no teacher term" in text and "layers and head" in text
        else:
            assert f"| temperature | {results['config']['temperature']} |" in text
            assert "| teacher outputs | cached: computed once before training" in text  # teacher_logits: auto
        assert "## Intended use and limitations" in text and "Under domain shift" in text
        assert f"{block['speed'][model]['speedup_vs_teacher']:.2f}×" in text
        assert "source_domains: [air]" in text  # how it was produced


def test_card_of_a_distill_run_and_pipeline_without_hfkd(tmp_path, experiment):
    _, results = experiment
    teacher = results["blocks"][0]["stages"]["teacher"]["path"]

    script = load_script("distill")
    out = tmp_path / "student"
    args = ["--config", TINY, "--teacher_model_name_or_path", teacher, "--student_num_layers", "1"]
    metrics = script.main(*script.make_parser().parse_args_and_config(args + ["--output_dir", str(out)]))
    card = ModelCard.load(out / "README.md")
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values == {"accuracy": metrics["test_accuracy"], "f1": metrics["test_macro_f1"]}
    assert card.data.eval_results[0].dataset_config == "airline"
    assert "Only the source domain was evaluated" in card.text
    assert "layers kept | [0] of 2" in card.text
    # the folder, card included, loads with plain transformers in a process that never imports hfkd
    code = (
        "import sys; from transformers import pipeline; "
        f"p = pipeline('text-classification', model={str(out)!r}); print(p('good flight')[0]['label']); "
        "assert not any(m == 'hfkd' or m.startswith('hfkd.') for m in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() in {"negative", "neutral", "positive"}


def test_base_model_follows_builtin_and_run_files(tmp_path):
    assert base_model_of("builtin:minilm-l6") == "sentence-transformers/all-MiniLM-L6-v2"
    assert base_model_of("bert-base-uncased") == "bert-base-uncased"
    assert base_model_of("builtin:tiny-bert") is None
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "hfkd_run.json").write_text(json.dumps({"config": {"model_name_or_path": "builtin:minilm-l6"}}))
    assert base_model_of(str(teacher)) == "sentence-transformers/all-MiniLM-L6-v2"


def _all_text(folder) -> str:
    chunks = []
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                chunks.append(f.read().decode("latin-1"))
    return "".join(chunks)


def test_offline_push_is_one_clear_line_after_the_local_save(tmp_path, experiment):
    _, results = experiment
    teacher = results["blocks"][0]["stages"]["teacher"]["path"]
    out = tmp_path / "student"
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "distill.py"), "--config", TINY, "--student_num_layers", "1"]
    cmd += ["--teacher_model_name_or_path", teacher, "--output_dir", str(out), "--num_train_epochs", "1"]
    cmd += ["--push_to_hub", "true", "--hub_model_id", "someone/student", "--hub_token", FAKE_TOKEN + "x"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_TOKEN": FAKE_TOKEN, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "HF_HUB_OFFLINE" in errors[0] and "hfkd push" in errors[0], proc.stderr[-2000:]
    assert {"model.safetensors", "config.json", "README.md", "metrics.json", "hfkd_run.json"} <= set(os.listdir(out))
    # the token is nowhere: not in the logs, the card, the config or any other file the run wrote
    assert FAKE_TOKEN not in proc.stdout + proc.stderr + _all_text(out)
    assert json.loads((out / "hfkd_run.json").read_text())["config"]["hub_token"] == "<redacted>"


def test_unauthorised_and_missing_repo_id_are_clear_errors(monkeypatch, experiment):
    import httpx2
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    _, results = experiment
    folder = results["blocks"][0]["stages"]["distilled"]["path"]
    before = sorted(os.listdir(folder))
    with pytest.raises(HubError, match="hub_model_id is empty"):
        push_student(folder, None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    response = httpx2.Response(401, request=httpx2.Request("POST", "https://huggingface.co/api/repos/create"))

    def unauthorised(self, *args, **kwargs):
        raise HfHubHTTPError("401 Client Error: Unauthorized", response=response)

    monkeypatch.setattr(HfApi, "create_repo", unauthorised)
    with pytest.raises(HubError, match=r"Cannot push to me/student: 401 .*hf auth login.*hfkd push") as error:
        push_student(folder, "me/student", token=FAKE_TOKEN)
    assert "\n" not in str(error.value) and FAKE_TOKEN not in str(error.value)
    assert sorted(os.listdir(folder)) == before  # nothing local was lost (the card was rewritten in place)


def _tree(folder) -> dict[str, tuple[int, int]]:
    """Every file under `folder` (relative posix path) -> (size, mtime_ns)."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            stat = os.stat(path)
            found[os.path.relpath(path, folder).replace(os.sep, "/")] = (stat.st_size, stat.st_mtime_ns)
    return found


def fake_hub(monkeypatch) -> dict:
    """Stand-ins for the `HfApi` calls of a push. `calls["uploaded"]` is the sorted repo paths the push sent, whichever
    of `create_commit` (its operations) or `upload_folder` (the folder's files its patterns select, as
    `huggingface_hub` selects them) it used; `calls["local"]` maps each to the local file it came from."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects

    calls = {}
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.setdefault("create", (repo_id, kw)))

    def create_commit(self, repo_id, operations, **kwargs):
        operations = list(operations)
        calls["uploaded"] = sorted(op.path_in_repo for op in operations)
        calls["local"] = {op.path_in_repo: str(op.path_or_fileobj) for op in operations}
        return "https://huggingface.co/me/student/commit/abc"

    def upload_folder(self, *, folder_path, allow_patterns=None, ignore_patterns=None, path_in_repo=None, **kwargs):
        files = sorted(filter_repo_objects(_tree(folder_path), allow_patterns=allow_patterns))
        calls["uploaded"] = files
        calls["local"] = {f: os.path.join(str(folder_path), f) for f in files}
        return "https://huggingface.co/me/student/commit/abc"

    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


@pytest.fixture
def student_folder(tmp_path):
    """A `scripts/distill.py`-like output_dir: the saved student, and beside it what a run also leaves there
    (checkpoints with earlier weights and optimizer state, run files, tensorboard logs). Returns the folder and the
    files a push must upload: those the save wrote, and the card."""

    folder = tmp_path / "student"
    folder.mkdir()
    tiny_bert(num_layers=1).save_pretrained(folder)
    make_tokenizer(tmp_path).save_pretrained(folder)
    saved = sorted(os.listdir(folder))
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(saved) and "README.md" not in saved
    checkpoint = folder / "checkpoint-2"
    checkpoint.mkdir()
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        shutil.copy(folder / name, checkpoint / name)
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"):
        (checkpoint / name).write_bytes(b"\0" * 8)
    (checkpoint / "trainer_state.json").write_text("{}")
    (folder / "training_args.bin").write_bytes(b"\0" * 8)
    (folder / "hfkd_run.json").write_text(json.dumps({"config": {"dataset": "custom"}, "source_domains": ["air"]}))
    (folder / "metrics.json").write_text(json.dumps({"test_accuracy": 0.5, "test_macro_f1": 0.4, "test_n": 8}))
    logs = folder / "runs" / "Jan01_00-00-00_host"
    logs.mkdir(parents=True)
    (logs / "events.out.tfevents.1.host").write_bytes(b"\0" * 8)
    return str(folder), sorted([*saved, "README.md"])


def test_student_files_are_the_top_level_student_files_only(student_folder, tmp_path, monkeypatch):
    from hfkd.hub.push import student_files

    folder, expected = student_folder
    assert student_files(folder) == expected
    assert not [f for f in expected if "/" in f or f.startswith(("checkpoint", "hfkd_", "training_args", "runs"))]
    # the ONNX export (`hfkd export`) in onnx/ goes along; an entry naming a subfolder reaches that one folder only
    os.makedirs(os.path.join(folder, "onnx", "old"))
    exported = ["model.onnx", "model_quantized.onnx", "config.json", "tokenizer.json", "export_report.json"]
    for name in [*(f"onnx/{n}" for n in exported), "onnx/old/model.onnx", "checkpoint-2/model.onnx", "onnx/x.bin"]:
        open(os.path.join(folder, name), "w").close()
    assert student_files(folder) == sorted([*expected, *(f"onnx/{n}" for n in exported)])
    monkeypatch.setattr(push, "STUDENT_FILES", (*push.STUDENT_FILES, "onnx/*.bin"))
    assert "onnx/x.bin" in student_files(folder) and "onnx/old/model.onnx" not in student_files(folder)
    shutil.rmtree(os.path.join(folder, "onnx"))
    assert student_files(folder) == expected
    # a sharded student: its shards and their index, not a checkpoint's shards
    sharded = tmp_path / "sharded"
    (sharded / "checkpoint-1").mkdir(parents=True)
    names = ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    for name in [*names, "model.safetensors.index.json", "checkpoint-1/model-00001-of-00002.safetensors"]:
        (sharded / name).write_text("{}")
    assert student_files(str(sharded)) == sorted([*names, "model.safetensors.index.json", "README.md"])
    # no weights at the top (only in a checkpoint): nothing to push, said in one line
    os.remove(sharded / "model.safetensors.index.json")
    with pytest.raises(HubError, match=r"holds no model weights \(model.safetensors\)") as error:
        student_files(str(sharded))
    assert "\n" not in str(error.value)


def test_push_dry_run_lists_the_upload_and_writes_nothing(student_folder, monkeypatch, capsys):
    from huggingface_hub import HfApi

    folder, expected = student_folder
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    for method in ("create_repo", "create_commit", "upload_folder", "upload_file", "whoami"):
        monkeypatch.setattr(HfApi, method, lambda *a, **kw: pytest.fail("a dry run called the Hub"))
    before = _tree(folder)
    assert cli.main(["push", folder, "--repo-id", "me/student", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == expected and out.endswith("\n")
    assert _tree(folder) == before  # no card, nothing else written or touched

    # the same list from a fresh process, offline, with no token anywhere (no HF_TOKEN, an empty HF_HOME)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH")}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=os.path.join(os.path.dirname(folder), "hf_home"))
    cmd = [sys.executable, "-m", "hfkd.cli", "push", folder, "--repo-id", "me/student", "--dry-run"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == expected
    assert _tree(folder) == before

    # not a student: one error line, nothing on stdout
    assert cli.main(["push", os.path.join(folder, "runs"), "--repo-id", "me/student", "--dry-run"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and captured.err.count("\n") == 1


def test_push_uploads_exactly_the_dry_run_list(student_folder, monkeypatch, capsys):
    folder, expected = student_folder
    calls = fake_hub(monkeypatch)
    assert cli.main(["push", folder, "--repo-id", "me/student"]) == 0
    assert calls["uploaded"] == expected
    for path, local in calls["local"].items():  # each from the same path in the student folder
        assert os.path.samefile(local, os.path.join(folder, path))
    assert ModelCard.load(os.path.join(folder, "README.md")).data.model_name == "me/student"
    capsys.readouterr()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli.main(["push", folder, "--repo-id", "me/student", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == calls["uploaded"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    # and straight through push_student, as scripts/distill.py --push_to_hub calls it
    calls.clear()
    push_student(folder, "me/student")
    assert calls["uploaded"] == expected


def test_push_uploads_the_student_folder_only(monkeypatch, experiment, capsys):
    exp_path, results = experiment
    folder = results["blocks"][0]["stages"]["adaptive"]["path"]
    calls = fake_hub(monkeypatch)
    url = push_student(folder, "me/student", private=True, results=results, model="adaptive")
    assert url.endswith("/commit/abc") and calls["create"] == ("me/student", {"private": True, "exist_ok": True})
    pushed = calls["uploaded"]
    assert {"model.safetensors", "config.json", "README.md", "tokenizer.json"} <= set(pushed)
    assert not [f for f in pushed if "/" in f or f.startswith(("checkpoint", "hfkd_", "training_args"))]
    assert ModelCard.load(os.path.join(folder, "README.md")).data.model_name == "me/student"
    # an experiment folder with --model: the dry run lists that student's files, the very ones a push sends
    out = str(exp_path / "exp")
    capsys.readouterr()
    assert cli.main(["push", out, "--model", "distilled", "--repo-id", "me/student", "--dry-run"]) == 0
    listed = capsys.readouterr().out.splitlines()
    calls.clear()
    assert cli.main(["push", out, "--model", "distilled", "--repo-id", "me/student"]) == 0
    assert listed == calls["uploaded"] and "model.safetensors" in listed and not [f for f in listed if "/" in f]
    distilled = results["blocks"][0]["stages"]["distilled"]["path"]
    assert all(os.path.samefile(local, os.path.join(distilled, p)) for p, local in calls["local"].items())


def test_experiment_push_and_cli(tmp_path, experiment, capsys):
    exp_path, results = experiment
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):  # offline: after every file of the run is written
        run(exp_path, "--push_to_hub", "true", "--hub_model_id", "me/student")
    assert (exp_path / "exp" / "results.json").is_file()
    with pytest.raises(ValueError, match="push_to_hub is set with mode='leave_one_out'"):
        run(tmp_path, "--mode", "leave_one_out", "--push_to_hub", "true", "--hub_model_id", "me/x", source=None)

    out = str(exp_path / "exp")
    capsys.readouterr()  # drop the runs' progress bars
    assert cli.main(["card", out, "--model", "distilled", "--repo-id", "me/distilled"]) == 0
    card = ModelCard.load(os.path.join(results["blocks"][0]["stages"]["distilled"]["path"], "README.md"))
    assert card.data.model_name == "me/distilled"
    assert cli.main(["push", out, "--repo-id", "me/student"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Cannot push to me/student") and "adaptive-" in err  # adaptive is the default
    assert cli.main(["card", out, "--model", "nope"]) == 1
    assert "--model 'nope' is not a student" in capsys.readouterr().err
    assert cli.main(["card", str(tmp_path)]) == 1


@pytest.mark.skipif(
    not (os.environ.get("HFKD_TEST_HUB_REPO") and os.environ.get("HF_TOKEN")),
    reason="opt-in: set HFKD_TEST_HUB_REPO=<you>/<scratch-repo> and HF_TOKEN to push for real",
)
def test_real_push_and_load_back(experiment):
    _, results = experiment
    folder = results["blocks"][0]["stages"]["distilled"]["path"]
    repo = os.environ["HFKD_TEST_HUB_REPO"]
    code = (
        "import sys; from hfkd.hub import push_student; from transformers import AutoModelForSequenceClassification; "
        f"push_student({folder!r}, {repo!r}, private=True); "
        f"m = AutoModelForSequenceClassification.from_pretrained({repo!r}); print(m.config.id2label)"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "0"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "negative" in proc.stdout


def test_write_model_card_needs_matching_results(experiment, tmp_path):
    _, results = experiment
    with pytest.raises(ValueError, match="do not describe the model"):
        write_model_card(str(tmp_path), results)


GOLDEN_CARD = os.path.join(ROOT, "docs", "example_model_card.md")


def test_example_card_is_the_card_of_the_checked_in_results(tmp_path, monkeypatch):
    # docs/example_model_card.md is what `hfkd card` writes for the adaptive student of the default experiment,
    # generated from that run's results.json and the student's config (tests/fixtures: no weights, no training; dates,
    # versions, sizes and times come from the fixture). Regenerate it with HFKD_UPDATE_GOLDEN=1 after a deliberate
    # change of the card.
    shutil.copytree(
        os.path.join(ROOT, "tests", "fixtures", "experiment_tweets"), tmp_path / "runs" / "experiment_tweets"
    )
    monkeypatch.chdir(tmp_path)
    results = load_results("runs/experiment_tweets")
    folder = results["blocks"][0]["stages"]["adaptive"]["path"]
    card = str(make_model_card(folder, results, "adaptive"))
    assert "| weights on disk | 69.6 MB | 90.9 MB |" in card  # sizes recorded in results.json, not read from weights
    if os.environ.get("HFKD_UPDATE_GOLDEN"):
        with open(GOLDEN_CARD, "w") as f:
            f.write(card)
    with open(GOLDEN_CARD) as f:
        assert card == f.read(), "the card changed: review it, then regenerate with HFKD_UPDATE_GOLDEN=1"
