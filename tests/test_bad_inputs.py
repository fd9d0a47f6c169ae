"""The bad-input table of README (section "When the input is wrong"): each case as a user meets it, through the
scripts, with the error it must give. Each error names the field, the value and the fix."""

import json
import os
import re

import pytest
import torch
from transformers import AutoConfig, BertTokenizerFast

from hfkd import DistillationArguments, DistillationTrainer
from hfkd.run_files import check_output_dir, write_run_info

from .conftest import ROOT, SPECIAL, TINY, WORDS, load_script, run_script, tiny_bert


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    run_script(
        "finetune", "--model_name_or_path", "builtin:tiny-bert", "--output_dir", str(out), "--num_train_epochs", "1"
    )
    return str(out)


def distill(tmp_path, *args, teacher=None, config=TINY):
    script = load_script("distill")
    argv = (["--config", config] if config else []) + [
        "--student_num_layers",
        "1",
        "--output_dir",
        str(tmp_path / "s"),
    ]
    argv += ["--teacher_model_name_or_path", teacher] if teacher else []
    return script.main(*script.make_parser().parse_args_and_config(argv + list(args)))


def domains(folder, rows: dict[str, list[dict]]) -> str:
    os.makedirs(folder, exist_ok=True)
    for name, items in rows.items():
        with open(os.path.join(folder, f"{name}.jsonl"), "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in items)
    return str(folder)


def rows(n=40, **overrides):
    labels = ["negative", "neutral", "positive"]
    return [{"text": f"text number {i} is fine", "label": labels[i % 3]} | overrides for i in range(n)]


def test_missing_text_column(tmp_path, teacher):
    data = domains(tmp_path / "d", {"a": [{"sentence": r["text"], "label": r["label"]} for r in rows()]})
    with pytest.raises(
        ValueError, match=r"Column 'text' \(set with `text_column`\).*\['sentence', 'label'\]. Set `text_column`"
    ):
        distill(tmp_path, "--dataset", data, "--source_domains", "a", teacher=teacher)


def test_missing_label_column(tmp_path, teacher):
    data = domains(tmp_path / "d", {"a": [{"text": r["text"], "stars": 3} for r in rows()]})
    with pytest.raises(ValueError, match=r"'label'.*label_column.*\['text', 'stars'\]"):
        distill(tmp_path, "--dataset", data, "--source_domains", "a", teacher=teacher)


def test_label_the_teacher_does_not_know(tmp_path, teacher):
    data = domains(tmp_path / "d", {"a": rows(36) + rows(4, label="sarcastic")})
    with pytest.raises(ValueError, match=r"sarcastic"):
        distill(tmp_path, "--dataset", data, "--source_domains", "a", teacher=teacher)


def test_teacher_and_student_label_spaces_differ(tmp_path):
    student = tiny_bert(id2label={0: "bad", 1: "meh", 2: "good"}, label2id={"bad": 0, "meh": 1, "good": 2})
    args = DistillationArguments(output_dir=str(tmp_path), report_to="none")
    with pytest.raises(ValueError, match=r"(?s)do not share one label space.*teacher: \['negative'.*student: \['bad'"):
        DistillationTrainer(model=student, teacher_model=tiny_bert(), args=args)


def test_tokenizer_mismatch_without_the_cache(tmp_path, teacher):
    folder = tmp_path / "other_vocab"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(SPECIAL + WORDS[::-1]) + "\n")
    BertTokenizerFast(vocab=str(folder / "vocab.txt"), model_max_length=64).save_pretrained(folder)
    tiny_bert(num_layers=1).save_pretrained(folder)
    script = load_script("distill")  # a ready student with its own vocabulary, the teacher online
    argv = ["--config", TINY, "--teacher_model_name_or_path", teacher, "--student_model_name_or_path", str(folder)]
    argv += ["--teacher_logits", "online", "--output_dir", str(tmp_path / "s")]
    with pytest.raises(
        ValueError, match=r"(?s)do not share a vocabulary.*vocab_size: teacher \d+, student \d+.*teacher_logits: cache"
    ):
        script.main(*script.make_parser().parse_args_and_config(argv))


def test_empty_domain(tmp_path, teacher):
    data = domains(tmp_path / "d", {"a": rows(), "b": []})
    with pytest.raises(ValueError, match=r"b.jsonl.*empty domain: add rows to it or remove it"):
        distill(tmp_path, "--dataset", data, "--source_domains", "a", teacher=teacher)


def test_empty_split(tmp_path, teacher):
    data = domains(tmp_path / "d", {"a": rows(3)})
    with pytest.raises(ValueError, match=r"split of domain 'a'.*is empty.*(validation_size|test_size)"):
        distill(tmp_path, "--dataset", data, "--source_domains", "a", teacher=teacher)


def test_unknown_domain_lists_the_valid_ones(tmp_path, teacher):
    with pytest.raises(ValueError, match=r"Unknown domains \['airlines'\].*valid domains are \['airline', 'apple'"):
        distill(tmp_path, "--source_domains", "airlines", teacher=teacher)


def test_temperature_not_positive(tmp_path):
    with pytest.raises(ValueError, match=r"temperature must be in \(0, inf\]; got temperature=0.0"):
        distill(tmp_path, "--temperature", "0")


def test_alpha_outside_0_1(tmp_path):
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]; got alpha=1.5"):
        distill(tmp_path, "--alpha", "1.5")


def test_unknown_yaml_key(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("temprature: 3\n")
    with pytest.raises(ValueError, match=r"'temprature' \(did you mean 'temperature'"):
        distill(tmp_path, config=str(config))


def test_teacher_path_that_does_not_exist(tmp_path):
    with pytest.raises(ValueError, match=r"teacher_model_name_or_path='.*nope'.*(does not exist|could not be loaded)"):
        distill(tmp_path, teacher=str(tmp_path / "nope"))


def test_nan_teacher_logits_online(tmp_path, teacher):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    broken = tmp_path / "broken_teacher"

    model = AutoModelForSequenceClassification.from_pretrained(teacher)
    model.classifier.weight.data[0, 0] = float("nan")
    model.save_pretrained(broken)
    AutoTokenizer.from_pretrained(teacher).save_pretrained(broken)
    with pytest.raises(ValueError, match=r"teacher's logits were NaN or inf on \d+ rows .*fp16"):
        distill(tmp_path, "--teacher_logits", "online", teacher=str(broken))


def test_max_length_above_the_model_limit(tmp_path, teacher):
    with pytest.raises(ValueError, match=r"max_length must be in \[1, \d+\].*got max_length=100000"):
        distill(tmp_path, "--max_length", "100000", teacher=teacher)


def test_output_dir_with_another_run(tmp_path, teacher):
    distill(tmp_path, "--num_train_epochs", "1", teacher=teacher)
    distill(tmp_path, "--num_train_epochs", "1", teacher=teacher)  # the same config again: fine
    with pytest.raises(ValueError, match=r"holds a run with another config \(temperature: 2.0 -> 4.0\).*overwrite"):
        distill(tmp_path, "--num_train_epochs", "1", "--temperature", "4", teacher=teacher)
    assert (tmp_path / "s" / "model.safetensors").is_file()  # the earlier run is untouched
    distill(
        tmp_path, "--num_train_epochs", "1", "--temperature", "4", "--overwrite_output_dir", "true", teacher=teacher
    )


def test_corrupt_cache_file(tmp_path, teacher):
    cache = tmp_path / "cache"
    distill(tmp_path, "--num_train_epochs", "1", "--teacher_logits_cache_dir", str(cache), teacher=teacher)
    record = next(cache.glob("*/hfkd_cache.json"))
    record.write_text("{ truncated")
    with pytest.raises(ValueError, match=rf"{record}.*unreadable.*delete .* to recompute"):
        distill(
            tmp_path, "--num_train_epochs", "1", "--teacher_logits_cache_dir", str(cache), "--output_dir",
            str(tmp_path / "s2"), teacher=teacher,
        )  # fmt: skip


def test_pickled_weights_are_refused_unless_allowed(tmp_path, teacher, monkeypatch):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hfkd.models import ALLOW_PICKLE_ENV

    monkeypatch.setenv(ALLOW_PICKLE_ENV, "0")  # restored after the test
    pickled = tmp_path / "pickled_teacher"
    model = AutoModelForSequenceClassification.from_pretrained(teacher)
    model.config.save_pretrained(pickled)  # transformers 5 writes safetensors only: write the pickle by hand
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    AutoTokenizer.from_pretrained(teacher).save_pretrained(pickled)
    assert (pickled / "pytorch_model.bin").is_file() and not list(pickled.glob("*.safetensors"))
    with pytest.raises(ValueError, match=r"only pickled weights \(pytorch_model.bin\).*allow_pickle_weights: true"):
        distill(tmp_path, teacher=str(pickled))
    out = tmp_path / "allowed"
    metrics = distill(tmp_path, "--allow_pickle_weights", "true", "--output_dir", str(out), teacher=str(pickled))
    assert metrics["eval_n"] == 32 and (out / "model.safetensors").is_file()  # what hfkd writes is safetensors


def test_remote_code_is_not_trusted_by_default(monkeypatch):
    from transformers import AutoModelForSequenceClassification

    from hfkd.models import ALLOW_PICKLE_ENV, load_classifier

    monkeypatch.setenv(ALLOW_PICKLE_ENV, "0")
    seen = {}
    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", lambda *a, **k: seen.update(k))
    load_classifier("builtin:tiny-bert")
    assert seen["trust_remote_code"] is False and seen["use_safetensors"] is True


# ---- integer labels, unreadable files, and how a bad input ends a script (issue 12, item 9) -------------------------


def finetune(tmp_path, *args) -> str:
    """scripts/finetune.py on configs/tiny.yaml from builtin:tiny-bert, one epoch: a teacher for the data."""
    out = str(tmp_path / "teacher")
    script = load_script("finetune")
    argv = ["--config", TINY, "--model_name_or_path", "builtin:tiny-bert", "--num_train_epochs", "1"]
    script.main(*script.make_parser().parse_args_and_config(argv + ["--output_dir", out, *args]))
    return out


def test_integer_labels_are_their_own_names_with_a_warning(tmp_path, caplog):
    import logging

    data = domains(tmp_path / "d", {"a": [{"text": r["text"], "label": i % 2} for i, r in enumerate(rows(60))]})
    args = ["--dataset", data, "--source_domains", "a"]
    with caplog.at_level(logging.WARNING, logger="hfkd"):
        teacher = finetune(tmp_path, *args)
        args += ["--num_train_epochs", "1", "--teacher_logits_cache_dir", str(tmp_path / "c")]
        distill(tmp_path, *args, teacher=teacher)
    for model in (teacher, tmp_path / "s"):
        assert AutoConfig.from_pretrained(model).id2label == {0: "0", 1: "1"}
    warnings = [r.getMessage() for r in caplog.records if "integer labels" in r.getMessage()]
    assert len(warnings) == 2 and "[0, 1]" in warnings[0] and "`class_names`" in warnings[0]  # once per script


def test_latin1_csv_names_the_encoding(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    lines = [f"caf\u00e9 {r['text']},{r['label']}\n" for r in rows(60)]
    (folder / "a.csv").write_bytes(("text,label\n" + "".join(lines)).encode("latin-1"))
    args = ["--dataset", str(folder), "--source_domains", "a"]
    with pytest.raises(
        ValueError, match=r"a.csv: it is not utf-8 text \(byte 0xe9 at byte offset 14, line 2\).*`encoding: latin-1`"
    ):
        distill(tmp_path, *args, teacher="builtin:tiny-bert")
    teacher = finetune(tmp_path, *args, "--encoding", "latin-1")
    assert AutoConfig.from_pretrained(teacher).id2label == {0: "negative", 1: "neutral", 2: "positive"}


def broken_jsonl(folder) -> str:
    """A domain `a` whose line 6 is cut off in the middle of a row."""
    lines = [json.dumps(row) for row in rows()]
    lines[5] = '{"text": "text number 5 is fi'
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "a.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return str(folder)


def test_malformed_jsonl_line_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"a.jsonl: line 6 is not valid JSON \(.*column \d+\); a JSON lines file"):
        distill(tmp_path, "--dataset", broken_jsonl(tmp_path / "d"), "--source_domains", "a")


def test_a_bad_input_is_reported_once_per_run(monkeypatch, capsys):
    import hfkd.launch
    from hfkd.arguments import check_range
    from hfkd.launch import exit_on_bad_input

    slept, exits = [], []
    monkeypatch.setattr(hfkd.launch.time, "sleep", slept.append)
    monkeypatch.setattr(hfkd.launch.os, "_exit", exits.append)
    monkeypatch.delenv("HFKD_TRACEBACK", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    # The main process reports and exits at once (torchrun then stops the others); another one waits, then says which.
    for rank, prefix in (("0", "error: "), ("1", "error: [rank 1] ")):
        monkeypatch.setenv("RANK", rank)
        with pytest.raises(SystemExit) as stop, exit_on_bad_input():
            check_range("alpha", 1.5, 0, 1)
        err = capsys.readouterr().err
        assert stop.value.code == 1 and err.startswith(f"{prefix}alpha must be in [0, 1]; got alpha=1.5.")
        assert err.count("\n") == 1
    assert slept == [hfkd.launch.OTHER_RANK_REPORT_DELAY_S] and exits == [1]
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(SystemExit), exit_on_bad_input():
        int("three")  # not raised by hfkd: its message may not say where, so the line says how to see that
    assert "(ValueError; HFKD_TRACEBACK=1 shows where it was raised)" in capsys.readouterr().err
    with pytest.raises(RuntimeError), exit_on_bad_input():
        raise RuntimeError("a bug keeps its traceback")
    monkeypatch.setenv("HFKD_TRACEBACK", "1")
    with pytest.raises(ValueError, match="alpha must be"), exit_on_bad_input():
        check_range("alpha", 1.5, 0, 1)
    assert capsys.readouterr().err == ""


def launch_distill(tmp_path, *args, traceback=False):
    """`accelerate launch -q scripts/distill.py ...` (one process), as a user runs it."""
    import subprocess
    import sys

    config = tmp_path / "one_process.yaml"  # not the user's default accelerate config
    config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nnum_processes: 1\n")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "-q", "--config_file", str(config)]
    cmd += ["--mixed_precision", "no", "--dynamo_backend", "no", "scripts/distill.py", "--config", TINY, *args]
    env = {k: v for k, v in os.environ.items() if k != "HFKD_TRACEBACK"} | {"HF_HUB_OFFLINE": "1"}
    env |= {"HFKD_TRACEBACK": "1"} if traceback else {}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_bad_input_under_accelerate_launch_ends_in_one_error_line(tmp_path):
    args = ["--dataset", broken_jsonl(tmp_path / "d"), "--source_domains", "a", "--student_num_layers", "1"]
    args += ["--teacher_model_name_or_path", "builtin:tiny-bert", "--output_dir", str(tmp_path / "s")]
    proc = launch_distill(tmp_path, *args)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert len(errors) == 1 and re.match(r"error: Could not read .*a.jsonl: line 6 is not valid JSON", errors[0])
    assert "Traceback" not in proc.stderr + proc.stdout
    proc = launch_distill(tmp_path, *args, traceback=True)  # HFKD_TRACEBACK=1: the traceback instead
    assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr
    assert "ValueError: Could not read" in proc.stderr and "\nerror: " not in proc.stderr


def test_an_option_newer_than_the_earlier_run_counts_as_unchanged_at_its_default(tmp_path):
    write_run_info(str(tmp_path), "distill", {"temperature": 2.0})  # a record from before `truncation` existed
    defaults = {"temperature": 2.0, "truncation": "head"}
    check = dict(overwrite=False, resuming=False, defaults=defaults)
    check_output_dir(str(tmp_path), "distill", {"temperature": 2.0, "truncation": "head"}, **check)  # no error
    with pytest.raises(ValueError, match=r"another config \(truncation: None -> 'tail'\)"):
        check_output_dir(str(tmp_path), "distill", {"temperature": 2.0, "truncation": "tail"}, **check)
    with pytest.raises(ValueError, match=r"truncation: None -> 'head'"):  # without defaults: every new key counts
        check_output_dir(
            str(tmp_path), "distill", {"temperature": 2.0, "truncation": "head"}, overwrite=False, resuming=False
        )
