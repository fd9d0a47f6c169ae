"""hfkd export: ONNX (fp32, INT8) in optimum's layout, logits that match PyTorch, the per-domain accuracy gate with the
matrix code, its one-line failure, the card's section and the push listing."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from transformers import DistilBertConfig, DistilBertForSequenceClassification

from hfkd import cli
from hfkd.evaluation.report import format_score
from hfkd.hub import export as export_module
from hfkd.hub.card import EXPORT_REPORT, EXPORT_TABLE, INT8_FILE, ONNX_FILE, REFERENCE, make_model_card
from hfkd.hub.export import OnnxClassifier, check_export, export_onnx, node_modules, quantize_int8
from hfkd.inference import predict
from hfkd.models import load_classifier, load_tokenizer

from .conftest import LABELS, make_tokenizer, tiny_dataset

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TEXTS = ["", "good", "the flight was late and the plane was bad", "my phone is great " * 12]


@pytest.fixture(scope="module")
def exported(experiment):
    """`hfkd export <experiment> --quantize int8`, run once: (student folder, results, onnx folder)."""
    _, results = experiment
    folder = results["blocks"][0]["stages"]["adaptive"]["path"]
    run_dir = os.path.dirname(os.path.dirname(folder))
    assert cli.main(["export", run_dir, "--quantize", "int8"]) == 0  # adaptive: the default student, as for push
    return folder, results, os.path.join(folder, "onnx")


def _session_logits(path, tokenizer, texts):
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    inputs = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="np")
    return session.run(None, {i.name: inputs[i.name] for i in session.get_inputs()})[0]


def test_export_folder_runs_in_onnxruntime_like_pytorch(exported):
    folder, _, out = exported
    for name in (ONNX_FILE, INT8_FILE, "config.json", "tokenizer.json", EXPORT_REPORT, EXPORT_TABLE):
        assert os.path.isfile(os.path.join(out, name)), name
    model, tokenizer = load_classifier(folder).eval(), load_tokenizer(out)
    for texts in (TEXTS, TEXTS[2:3], TEXTS[:1]):  # padded batch; one row; the shortest input ([CLS] [SEP])
        with torch.no_grad():
            expected = model(**tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt"))
        expected = expected.logits.numpy()
        fp32 = _session_logits(os.path.join(out, ONNX_FILE), tokenizer, texts)
        np.testing.assert_allclose(fp32, expected, atol=1e-4, rtol=1e-4)
        int8 = _session_logits(os.path.join(out, INT8_FILE), tokenizer, texts)
        assert int8.shape == expected.shape and np.abs(int8 - expected).max() < 0.1
    quantization = json.load(open(os.path.join(out, EXPORT_REPORT)))["files"][INT8_FILE]["quantization"]
    assert quantization["per_channel"] and quantization["fp32_nodes"] == 0


def test_gate_scores_the_run_rows_with_the_matrix(exported):
    folder, results, out = exported
    report = json.load(open(os.path.join(out, EXPORT_REPORT)))
    block = results["blocks"][0]
    assert list(report["domains"]) == block["domains"] and report["model"] == "adaptive"
    assert report["gate"]["passed"] and report["gate"]["failures"] == []
    for domain, row in report["domains"].items():
        # the same rows and model as the run's matrix: the PyTorch figures are the run's own
        assert row["n"] == block["evaluation_rows"]["domains"][domain]["n"]
        assert row[REFERENCE]["macro_f1"] == pytest.approx(block["metrics"]["adaptive"][domain]["macro_f1"])
        assert row["source"] == (domain in block["source_domains"])
        assert row[ONNX_FILE]["agreement"] == 1.0 and row[ONNX_FILE]["macro_f1_diff"]["diff"] == 0.0
        assert row[INT8_FILE]["agreement"] >= 0.99 and row[INT8_FILE]["passed"]
    assert report["files"][INT8_FILE]["bytes"] == os.path.getsize(os.path.join(out, INT8_FILE))
    assert report["speed"][INT8_FILE]["samples_per_second"] > 0
    table = open(os.path.join(out, EXPORT_TABLE)).read()
    assert "**passed**" in table and f"| {block['source_domains'][0]} (source) |" in table


def test_card_reports_the_export_and_push_lists_it(exported, capsys):
    folder, results, out = exported
    card = ModelCard.load(os.path.join(folder, "README.md")).text
    report = json.load(open(os.path.join(out, EXPORT_REPORT)))
    assert "## ONNX export" in card and "`onnx/model_quantized.onnx` (dynamic INT8" in card
    for domain, row in report["domains"].items():
        line = next(x for x in card.splitlines() if x.startswith(f"| {domain}") and "+0.000 [+0.000, +0.000]" in x)
        assert format_score(row[INT8_FILE]["macro_f1"]) in line
    assert f"| {INT8_FILE} | int8 | {report['files'][INT8_FILE]['bytes'] / 1e6:.1f} MB |" in card
    assert "onnxruntime.InferenceSession(path)" in card
    capsys.readouterr()
    assert cli.main(["push", folder, "--repo-id", "me/student", "--dry-run"]) == 0
    listed = capsys.readouterr().out.splitlines()
    for name in (ONNX_FILE, INT8_FILE, "config.json", "tokenizer.json", EXPORT_REPORT, EXPORT_TABLE):
        assert f"onnx/{name}" in listed
    assert "model.safetensors" in listed and not [f for f in listed if f.startswith("checkpoint")]


def test_failed_gate_writes_the_table_then_one_error_line(exported, tmp_path, capsys):
    import onnx

    folder, results, out = exported
    copy = tmp_path / "onnx"
    shutil.copytree(out, copy)
    # a broken INT8 file: the classifier's classes rotated (its int8 weights, scales, zero points and bias along their
    # class axis), so every row's predicted label changes
    model = onnx.load(str(copy / INT8_FILE))
    rotated = []
    for tensor in model.graph.initializer:
        values = onnx.numpy_helper.to_array(tensor)
        if tensor.name.startswith("classifier.") and len(LABELS) in values.shape:
            axis = len(values.shape) - 1 - values.shape[::-1].index(len(LABELS))
            tensor.CopyFrom(onnx.numpy_helper.from_array(np.roll(values, 1, axis=axis), tensor.name))
            rotated.append(tensor.name)
    assert "classifier.bias" in rotated and len(rotated) >= 2
    onnx.save(model, str(copy / INT8_FILE))
    run_dir = os.path.dirname(os.path.dirname(folder))
    capsys.readouterr()
    assert cli.main(["export", run_dir, "--output_dir", str(copy), "--check_only"]) == 1
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("error")]  # (stderr has progress bars)
    assert len(lines) == 1 and captured.err.rstrip().endswith(lines[0])  # one error line, the last one
    assert lines[0].startswith(f"error: {INT8_FILE} on domain ")
    assert "agreement with the PyTorch student" in lines[0] and "--min_agreement 0.99" in lines[0]
    assert "--fp32_modules" in lines[0] and str(copy / EXPORT_TABLE) in lines[0]
    report = json.load(open(copy / EXPORT_REPORT))  # written before the error, with the failing domains
    assert not report["gate"]["passed"]
    first = report["gate"]["failures"][0]
    assert first["domain"] in lines[0] and f"{first['value']:.4f}" in lines[0]
    assert all(not report["domains"][d][INT8_FILE]["passed"] for d in report["domains"])
    assert all(report["domains"][d][ONNX_FILE]["passed"] for d in report["domains"])
    assert "**failed**" in (copy / EXPORT_TABLE).read_text() and "**failed**" in captured.out  # table printed too
    assert (copy / ONNX_FILE).is_file() and (copy / INT8_FILE).is_file()  # nothing written before is lost
    assert "**passed**" in open(os.path.join(out, EXPORT_TABLE)).read()  # the student's own export untouched
    # a card over the failed export says so, marks the failing figures and shows how to load the fp32 file instead
    student = tmp_path / "student"
    shutil.copytree(folder, student, ignore=shutil.ignore_patterns("checkpoint-*", "onnx"))
    shutil.copytree(copy, student / "onnx")
    card = str(make_model_card(str(student), results, "adaptive"))
    assert "**failed**" in card and " ✗ |" in card and "exported from other weights" not in card
    assert f'path = "{student / "onnx" / ONNX_FILE}"' in card
    config = json.loads((student / "config.json").read_text())
    (student / "config.json").write_text(json.dumps(config | {"retrained": True}))  # no longer the exported model
    assert "exported from other weights" in str(make_model_card(str(student), results, "adaptive"))
    # a bound out of range: one line naming the field, nothing run
    assert cli.main(["export", run_dir, "--output_dir", str(copy), "--min_agreement", "1.01"]) == 1
    assert capsys.readouterr().err.startswith("error: min_agreement=1.01 must be between 0 and 1")


def test_distill_run_is_gated_on_its_source_test_rows(exported, tmp_path):
    folder, results, out = exported
    student = tmp_path / "distill"
    shutil.copytree(folder, student, ignore=shutil.ignore_patterns("checkpoint-*"))
    config = results["config"]
    run = {"config": config, "source_domains": config["source_domains"]}
    (student / "hfkd_run.json").write_text(json.dumps(run))
    report = check_export(str(student))  # no results: the hfkd_run.json of a scripts/distill.py run
    source = config["source_domains"][0]
    assert list(report["domains"]) == [source]
    assert report["domains"][source]["n"] == results["blocks"][0]["evaluation_rows"]["domains"][source]["n"]
    assert report["gate"]["passed"]
    os.remove(student / "hfkd_run.json")
    with pytest.raises(ValueError, match="no hfkd_run.json and no results were given.*--results"):
        check_export(str(student))


def test_distilbert_export_plugs_into_predict(tmp_path):
    torch.manual_seed(0)
    tokenizer = make_tokenizer(tmp_path)
    config = DistilBertConfig(
        vocab_size=tokenizer.vocab_size, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=64
    )
    config.update(dict(num_labels=3, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)}))
    model = DistilBertForSequenceClassification(config).eval()
    path = export_onnx(model, tokenizer, str(tmp_path / "onnx"))
    onnx_model = OnnxClassifier.from_pretrained(str(tmp_path / "onnx"))
    assert onnx_model.input_names == ["input_ids", "attention_mask"]  # DistilBERT takes no token_type_ids
    data = tiny_dataset(24)
    order = list(reversed(LABELS))  # predict's column selection by label name works for the ONNX model too
    expected = predict(model, tokenizer, data, label_names=order, batch_size=8)
    got = predict(onnx_model, tokenizer, data, label_names=order, batch_size=8)
    np.testing.assert_allclose(got.logits, expected.logits, atol=1e-4, rtol=1e-4)
    assert (got.labels == expected.labels).all() and got.seconds > 0
    # INT8 with the first layer kept in fp32, by module path; a pattern that names nothing is refused
    modules = set(node_modules(path).values())
    assert "distilbert.transformer.layer.0.attention.q_lin" in modules
    _, everything = quantize_int8(path, str(tmp_path / "all.onnx"))
    _, kept = quantize_int8(path, str(tmp_path / "kept.onnx"), fp32_modules=["*.layer.0"])
    assert everything["fp32_nodes"] == 0 and kept["fp32_nodes"] >= 6 and kept["fp32_modules"] == ["*.layer.0"]
    with pytest.raises(ValueError, match=r"fp32_modules=\['encoder.block.9'\] match no module.*distilbert"):
        quantize_int8(path, str(tmp_path / "none.onnx"), fp32_modules=["encoder.block.9"])


def test_missing_export_extra_is_one_line(exported, monkeypatch, capsys, tmp_path):
    folder, _, _ = exported
    real = export_module.importlib.util.find_spec
    monkeypatch.setattr(
        export_module.importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a)
    )
    capsys.readouterr()
    run_dir = os.path.dirname(os.path.dirname(folder))
    assert cli.main(["export", run_dir, "--output_dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ONNX export needs onnxscript") and 'hfkd[export]"' in err
    assert not (tmp_path / "out").exists()  # nothing written


def test_optimum_loads_the_folder_where_installed(exported):
    try:
        from optimum.onnxruntime import ORTModelForSequenceClassification
    except Exception as error:  # not installed, or an optimum that needs transformers<5
        pytest.skip(f"no transformers-5-compatible optimum: {type(error).__name__}: {error}")
    folder, _, out = exported
    tokenizer = load_tokenizer(out)
    model = ORTModelForSequenceClassification.from_pretrained(out, file_name=INT8_FILE)
    inputs = tokenizer(TEXTS, padding=True, truncation=True, max_length=32, return_tensors="pt")
    expected = _session_logits(os.path.join(out, INT8_FILE), tokenizer, TEXTS)
    np.testing.assert_allclose(model(**inputs).logits.numpy(), expected, atol=1e-5)


def test_experiment_scores_every_student_exported_to_int8(exported, experiment):
    from .conftest import run_experiment

    tmp_path, _ = experiment  # last in this module: it rewrites the module's copy of the run
    adaptive_folder, _, onnx_folder = exported
    results = run_experiment(tmp_path, "--models", "teacher", "distilled", "adaptive", "--export", "int8")
    block = results["blocks"][0]
    assert list(block["metrics"]) == ["teacher", "distilled", "adaptive", "distilled-int8", "adaptive-int8"]
    stages = block["stages"]
    assert stages["adaptive-int8"]["reused"]  # exported above by `hfkd export`, from the same weights
    assert not stages["distilled-int8"]["reused"]
    assert os.path.isfile(os.path.join(stages["distilled"]["path"], "onnx", INT8_FILE))
    assert stages["adaptive-int8"]["path"] == onnx_folder and stages["adaptive-int8"]["student"] == adaptive_folder
    # each INT8 file is compared with its PyTorch student on the same rows; its size is the file's
    assert {("distilled-int8", "distilled"), ("adaptive-int8", "adaptive")} <= {
        (c["a"], c["b"]) for c in block["comparisons"]
    }
    size = os.path.getsize(os.path.join(onnx_folder, INT8_FILE))
    assert block["speed"]["adaptive-int8"]["weights_bytes"] == size
    assert "INT8" in results["models"]["adaptive-int8"]["description"]
    assert not os.path.exists(os.path.join(onnx_folder, "README.md"))  # no card for an exported variant
