"""Tests for hfkd.metrics: the local evaluate modules, load_metric's naming and offline behaviour, the helpers."""

from __future__ import annotations

import doctest
import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest
from transformers import EvalPrediction

import hfkd.metrics as hm
from hfkd.metrics import (
    LOCAL_METRICS,
    compute_classification_metrics,
    load_metric,
    local_metric_path,
    make_compute_metrics,
)


@pytest.fixture(scope="module")
def classification():
    return load_metric("classification", keep_in_memory=True)


@pytest.fixture(scope="module")
def agreement():
    return load_metric("agreement", keep_in_memory=True)


@pytest.fixture(scope="module")
def calibration():
    return load_metric("calibration", keep_in_memory=True)


# --- classification -------------------------------------------------------------------------------------------------


def test_classification_hand_case(classification):
    # class 0: TP1 -> F1 1; class 1: TP1 FP1 -> 2/3; class 2: TP1 FN1 -> 2/3.
    result = classification.compute(predictions=[0, 1, 1, 2], references=[0, 1, 2, 2])
    assert result["accuracy"] == 0.75
    assert result["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3, abs=1e-15)
    assert result["n"] == 4


def test_classification_absent_class_conventions(classification):
    preds, refs = [0, 1, 1, 2], [0, 1, 2, 2]
    default = classification.compute(predictions=preds, references=refs)
    # Class 3 is in neither list: ignored by default, F1 = 0 when the label space is given.
    with_num_labels = classification.compute(predictions=preds, references=refs, num_labels=4)
    with_labels = classification.compute(predictions=preds, references=refs, labels=[0, 1, 2, 3])
    assert default["macro_f1"] == pytest.approx(7 / 9, abs=1e-15)
    assert with_num_labels["macro_f1"] == pytest.approx((1 + 4 / 3) / 4, abs=1e-15)
    assert with_labels["macro_f1"] == with_num_labels["macro_f1"]
    assert with_num_labels["accuracy"] == default["accuracy"] == 0.75
    # A class that only occurs in predictions counts under the default convention too (F1 = 0, it is "present").
    only_predicted = classification.compute(predictions=[0, 3], references=[0, 0])
    assert only_predicted["macro_f1"] == pytest.approx((2 / 3 + 0) / 2, abs=1e-15)


def test_classification_matches_sklearn(classification):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for trial in range(20):
        n, k = int(rng.integers(1, 60)), int(rng.integers(2, 7))
        refs = rng.integers(0, k, n)
        preds = np.where(rng.random(n) < 0.6, refs, rng.integers(0, k, n))
        result = classification.compute(predictions=preds, references=refs)
        assert result["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(refs, preds), abs=1e-12)
        expected = sklearn_metrics.f1_score(refs, preds, average="macro", zero_division=0)
        assert result["macro_f1"] == pytest.approx(expected, abs=1e-12), trial
        labels = list(range(k + 2))  # two classes that never occur
        result = classification.compute(predictions=preds, references=refs, labels=labels)
        expected = sklearn_metrics.f1_score(refs, preds, labels=labels, average="macro", zero_division=0)
        assert result["macro_f1"] == pytest.approx(expected, abs=1e-12), trial
        subset = [0, k - 1]  # other classes still count as FP/FN of the listed ones
        result = classification.compute(predictions=preds, references=refs, labels=subset)
        expected = sklearn_metrics.f1_score(refs, preds, labels=subset, average="macro", zero_division=0)
        assert result["macro_f1"] == pytest.approx(expected, abs=1e-12), trial


def test_classification_errors(classification):
    with pytest.raises(ValueError, match=r"\[0, 3\).*-100"):
        classification.compute(predictions=[0, 1], references=[0, -100], num_labels=3)
    with pytest.raises(ValueError, match="at most one"):
        classification.compute(predictions=[0], references=[0], num_labels=2, labels=[0, 1])
    with pytest.raises(ValueError, match="num_labels must be an integer >= 1"):
        classification.compute(predictions=[0], references=[0], num_labels=0)
    with pytest.raises(ValueError, match="must not repeat"):
        classification.compute(predictions=[0], references=[0], labels=[0, 0])
    with pytest.raises(ValueError, match="empty"):
        classification.compute(predictions=[], references=[])


# --- agreement ------------------------------------------------------------------------------------------------------


def test_agreement_identical_logits(agreement):
    logits = np.random.default_rng(0).normal(size=(8, 3)) * 5
    result = agreement.compute(predictions=logits, references=logits, temperature=3.0)
    assert result == {"agreement": 1.0, "kl": 0.0, "n": 8}


def test_agreement_hand_case(agreement):
    # Row 0: teacher softmax([0, ln 3]) = [1/4, 3/4], student uniform; argmax 1 vs 0 (a tie goes to the first id).
    # Row 1: identical logits, KL 0, same argmax.
    teacher = [[0.0, math.log(3.0)], [2.0, -1.0]]
    student = [[0.0, 0.0], [2.0, -1.0]]
    kl_row0 = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    result = agreement.compute(predictions=student, references=teacher)
    assert result["agreement"] == 0.5
    assert result["kl"] == pytest.approx(kl_row0 / 2, abs=1e-15)
    assert result["n"] == 2
    # Temperature divides both sides: teacher logits doubled at T=2 give the same distributions.
    doubled = [[0.0, 2 * math.log(3.0)], [4.0, -2.0]]
    result_t2 = agreement.compute(predictions=[[0.0, 0.0], [4.0, -2.0]], references=doubled, temperature=2.0)
    assert result_t2["kl"] == pytest.approx(kl_row0 / 2, abs=1e-15)


def test_agreement_is_stable_for_large_logits(agreement):
    result = agreement.compute(predictions=[[0.0, 1000.0]], references=[[1000.0, 0.0]])
    # KL(teacher one-hot on 0 || student one-hot on 1) = log p_t(0) - log p_s(0) = 0 - (-1000).
    assert result["kl"] == pytest.approx(1000.0, rel=1e-12)
    assert result["agreement"] == 0.0


def test_agreement_errors(agreement):
    with pytest.raises(ValueError, match="shape"):
        agreement.compute(predictions=[[0.0, 1.0]], references=[[0.0, 1.0, 2.0]])
    with pytest.raises(ValueError, match="temperature"):
        agreement.compute(predictions=[[0.0, 1.0]], references=[[0.0, 1.0]], temperature=0.0)


# --- calibration ----------------------------------------------------------------------------------------------------


def reference_ece(probabilities, labels, n_bins):
    """Direct transcription of the documented definition: bin b holds confidence in (b/n, (b+1)/n]."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence, predicted = probabilities.max(axis=1), probabilities.argmax(axis=1)
    correct = predicted == np.asarray(labels)
    ece, mce = 0.0, 0.0
    for b in range(n_bins):
        low, high = b / n_bins, (b + 1) / n_bins
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            gap = abs(correct[in_bin].mean() - confidence[in_bin].mean())
            ece += in_bin.sum() / len(labels) * gap
            mce = max(mce, gap)
    return ece, mce


def test_calibration_perfect(calibration):
    result = calibration.compute(predictions=[[1.0, 0.0], [0.0, 1.0]], references=[0, 1], from_logits=False)
    assert result == {"ece": 0.0, "mce": 0.0, "n": 2}


def test_calibration_two_bin_hand_case(calibration):
    # Wrong at confidence 0.4 (bin (0, .5], gap .4), right at 0.9 (bin (.5, 1], gap .1): ECE .25, MCE .4.
    result = calibration.compute(
        predictions=[[0.4, 0.3, 0.3], [0.9, 0.05, 0.05]], references=[1, 0], from_logits=False, n_bins=2
    )
    assert result["ece"] == pytest.approx(0.25, abs=1e-15)
    assert result["mce"] == pytest.approx(0.4, abs=1e-15)
    assert result["n"] == 2


def test_calibration_bin_edges_are_right_closed(calibration):
    # Confidence exactly 0.5 belongs to (0, 0.5] with the 0.4 row: accuracy 1/2, confidence 0.45 -> ECE 0.05.
    # Were 0.5 put in (0.5, 1], the two gaps would be 0.5 and 0.4 -> ECE 0.45.
    result = calibration.compute(
        predictions=[[0.5, 0.25, 0.25], [0.4, 0.3, 0.3]],
        references=[0, 1],
        from_logits=False,
        n_bins=2,
    )
    assert result["ece"] == pytest.approx(0.05, abs=1e-12)
    # Logits [0, 0] give confidence 0.5 too.
    result = calibration.compute(predictions=[[0.0, 0.0]], references=[0], n_bins=2)
    assert result["ece"] == pytest.approx(0.5, abs=1e-15)


def test_calibration_matches_reference_definition(calibration):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(200, 4)) * 2
    labels = rng.integers(0, 4, 200)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    for n_bins in (1, 2, 10, 15):
        result = calibration.compute(predictions=logits, references=labels, n_bins=n_bins)
        ece, mce = reference_ece(probabilities, labels, n_bins)
        assert result["ece"] == pytest.approx(ece, abs=1e-12)
        assert result["mce"] == pytest.approx(mce, abs=1e-12)
        from_probs = calibration.compute(
            predictions=probabilities, references=labels, from_logits=False, n_bins=n_bins
        )
        assert from_probs["ece"] == pytest.approx(ece, abs=1e-12)


def test_calibration_errors(calibration):
    with pytest.raises(ValueError, match="from_logits=True"):
        calibration.compute(predictions=[[2.0, -1.0]], references=[0], from_logits=False)
    with pytest.raises(ValueError, match="n_bins"):
        calibration.compute(predictions=[[2.0, -1.0]], references=[0], n_bins=0)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        calibration.compute(predictions=[[2.0, -1.0]], references=[2])
    with pytest.raises(ValueError, match=r"\[1 - p, p\]"):
        calibration.compute(predictions=[[0.7]], references=[0], from_logits=False)


# --- helpers for training loops ------------------------------------------------------------------------------------


def test_compute_classification_metrics_takes_ids_or_logits():
    ids = compute_classification_metrics([0, 1, 1, 2], [0, 1, 2, 2])
    logits = np.eye(3)[[0, 1, 1, 2]] * 3.0
    from_logits = compute_classification_metrics(logits, np.array([0, 1, 2, 2]))
    assert ids == from_logits == {"accuracy": 0.75, "macro_f1": pytest.approx(7 / 9, abs=1e-15), "n": 4}
    assert all(type(value) in (float, int) for value in ids.values())
    assert compute_classification_metrics([0, 1, 1, 2], [0, 1, 2, 2], num_labels=4)["macro_f1"] == pytest.approx(
        7 / 12, abs=1e-15
    )


def test_make_compute_metrics_ignores_minus_100_rows():
    logits = np.array([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0], [3.0, 0.0, 0.0]])
    labels = np.array([0, 1, -100, 2, -100])
    hidden = np.zeros((5, 4))
    compute_metrics = make_compute_metrics(num_labels=3)
    result = compute_metrics(EvalPrediction(predictions=(logits, hidden), label_ids=labels))
    assert result == {"accuracy": 1.0, "macro_f1": 1.0, "n": 3}
    # Without masking, row 4 (-100) would be out of range for num_labels=3 and raise.
    with pytest.raises(ValueError, match="-100"):
        compute_metrics(EvalPrediction(predictions=logits, label_ids=np.full(5, -100)))
    # Class ids (from preprocess_logits_for_metrics) work too.
    ids = make_compute_metrics()(EvalPrediction(predictions=np.array([0, 2, 1]), label_ids=np.array([0, 1, -100])))
    assert ids["accuracy"] == 0.5 and ids["n"] == 2


def test_make_compute_metrics_in_trainer_evaluate(tiny_teacher, tokenized, tokenizer, tmp_path):
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    eval_ds = tokenized(n=12, seed=3)
    eval_ds = eval_ds.map(lambda row, i: {"labels": -100 if i % 4 == 0 else row["labels"]}, with_indices=True)
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=5, report_to="none", use_cpu=True, disable_tqdm=True
    )
    trainer = Trainer(
        model=tiny_teacher,
        args=args,
        eval_dataset=eval_ds,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=make_compute_metrics(num_labels=tiny_teacher.config.num_labels),
    )
    metrics = trainer.evaluate()

    batch = DataCollatorWithPadding(tokenizer)([{k: v for k, v in row.items() if k != "labels"} for row in eval_ds])
    with torch.no_grad():
        predicted = tiny_teacher(**batch).logits.argmax(-1).numpy()
    labels = np.array(eval_ds["labels"])
    keep = labels != -100
    expected = compute_classification_metrics(predicted[keep], labels[keep], num_labels=3)
    assert metrics["eval_n"] == keep.sum() == 9
    assert metrics["eval_accuracy"] == pytest.approx(expected["accuracy"])
    assert metrics["eval_macro_f1"] == pytest.approx(expected["macro_f1"])


# --- loading, naming, offline ---------------------------------------------------------------------------------------


def test_local_names_and_layout():
    assert set(LOCAL_METRICS) == {"classification", "agreement", "calibration"}
    from evaluate.loading import get_imports

    for name, folder in LOCAL_METRICS.items():
        assert local_metric_path(name) == local_metric_path("hfkd/" + name) == folder
        script = os.path.join(folder, name + ".py")
        assert os.path.isfile(script)
        # evaluate parses imports with a regex: only library imports, each one a module that is installed.
        for kind, module, _, _ in get_imports(script):
            assert kind == "library"
            assert importlib.util.find_spec(module) is not None, module
    assert local_metric_path("accuracy") is None and local_metric_path("evaluate-metric/f1") is None
    with pytest.raises(ValueError, match="'nope' is not a local metric"):
        local_metric_path("hfkd/nope")


def test_local_modules_load_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("classification", "hfkd/agreement", "calibration"):
        metric = load_metric(name)
        assert metric.name == name.split("/")[-1]
    # In memory by default (on disk, two instances with one experiment_id make evaluate wait 1 s on a file lock).
    first, second = load_metric("classification"), load_metric("classification")
    assert first.keep_in_memory and second.keep_in_memory
    assert not load_metric("classification", num_process=2, process_id=1, experiment_id="t").keep_in_memory
    assert first is not second  # stateful modules are never shared
    first.add_batch(predictions=[1], references=[1])
    second.add_batch(predictions=[0], references=[1])
    assert first.compute()["accuracy"] == 1.0 and second.compute()["accuracy"] == 0.0


def test_load_metric_rejects_compute_options():
    with pytest.raises(ValueError, match=r"num_labels.*compute\("):
        load_metric("classification", num_labels=3)


@pytest.mark.parametrize("name", ["hfkd-no-such-metric-xyz", "evaluate-metric/hfkd-no-such-metric-xyz"])
def test_non_local_metric_offline_raises_clear_error(monkeypatch, name):
    import evaluate.config

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = evaluate.config.HF_EVALUATE_OFFLINE
    with pytest.raises(ValueError) as info:
        load_metric(name)
    message = str(info.value)
    assert repr(name) in message and "Hub" in message and "offline" in message
    assert all(repr(local) in message for local in LOCAL_METRICS)
    assert evaluate.config.HF_EVALUATE_OFFLINE == before  # the temporary offline switch is undone


def test_non_local_metric_hub_failure_online_raises_clear_error(monkeypatch):
    # Simulate an online session whose Hub request fails, without touching the network.
    import evaluate
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_EVALUATE_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", False)
    seen = {}

    def failing_load(path, **kwargs):
        seen["offline_during_load"] = evaluate.config.HF_EVALUATE_OFFLINE
        raise FileNotFoundError(f"Module '{path}' doesn't exist on the Hugging Face Hub either.")

    monkeypatch.setattr(evaluate, "load", failing_load)
    with pytest.raises(ValueError, match=r"'accuracy'.*Hub.*connection.*'classification'"):
        load_metric("accuracy")
    assert seen == {"offline_during_load": False}
    # A path is not a Hub name: evaluate's own FileNotFoundError (which names the path) is kept.
    with pytest.raises(FileNotFoundError):
        load_metric("./my_metrics/nope")


def test_docstring_examples():
    namespace = types.SimpleNamespace(metrics=hm)
    for name, folder in LOCAL_METRICS.items():
        spec = importlib.util.spec_from_file_location(f"_hfkd_metric_{name}", os.path.join(folder, name + ".py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for text in (module._KWARGS_DESCRIPTION,):
            test = doctest.DocTestParser().get_doctest(text, {"hfkd": namespace}, name, None, 0)
            runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
            runner.run(test)
            assert runner.failures == 0, name


@pytest.mark.slow
def test_concurrent_first_load_from_two_processes(tmp_path):
    # Two processes loading into an empty modules cache at once, as under `accelerate launch --num_processes 2`.
    # They call evaluate.load on the folders directly (what load_metric does for local names) so as not to pay for
    # importing torch and the trainer in each process.
    script = textwrap.dedent(
        """
        import json, sys
        import evaluate
        folders = json.loads(sys.argv[1])
        out = {}
        for name, folder in folders.items():
            metric = evaluate.load(folder)
            if name == "classification":
                out[name] = metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
            elif name == "agreement":
                out[name] = metric.compute(predictions=[[0.0, 1.0]], references=[[0.0, 1.0]])
            else:
                out[name] = metric.compute(predictions=[[0.0, 1.0]], references=[1])
        print(json.dumps(out))
        """
    )
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    env.pop("HF_MODULES_CACHE", None)
    env.pop("HF_METRICS_CACHE", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, json.dumps(LOCAL_METRICS)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    for proc, (_, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr.decode()[-2000:]
    results = [json.loads(stdout.decode().strip().splitlines()[-1]) for stdout, _ in outputs]
    assert results[0] == results[1]
    assert results[0]["classification"]["accuracy"] == pytest.approx(2 / 3)
    # Everything written went under HF_HOME.
    assert os.path.isdir(tmp_path / "hf" / "modules" / "evaluate_modules" / "metrics" / "classification")
    assert sorted(os.listdir(tmp_path)) == ["hf"]
