"""The cross-domain matrix: predictions in row order, metrics per cell, retention / means / gap by hand."""

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from hfkd.evaluation.matrix import evaluate_models
from hfkd.evaluation.results import overall_summary, summarize
from hfkd.inference import predict

from .conftest import LABELS, sentiment_of, tiny_bert, tiny_texts


def domain(seed: int, n: int = 24) -> DatasetDict:
    texts = tiny_texts(n, seed)
    features = Features({"text": Value("string"), "label": ClassLabel(names=LABELS)})
    table = Dataset.from_dict({"text": texts, "label": [sentiment_of(t) for t in texts]}, features=features)
    return DatasetDict(train=table, validation=table, test=table)


def test_summarize_by_hand():
    cell = lambda f1, acc, **kw: {"macro_f1": f1, "accuracy": acc, "n": 10, "ece": 0.1, **kw}  # noqa: E731
    metrics = {
        "teacher": {"a": cell(0.8, 0.9), "b": cell(0.5, 0.6), "c": cell(0.4, 0.5)},
        "student": {"a": cell(0.6, 0.9, agreement=0.9, kl=0.2), "b": cell(0.5, 0.3, agreement=0.7, kl=0.4),
                    "c": cell(0.2, 0.5, agreement=0.5, kl=0.6)},
    }  # fmt: skip
    summary = summarize(metrics, ["a"], ["b", "c"], teacher="teacher")
    t, s = summary["teacher"], summary["student"]
    assert t["in_domain_macro_f1"] == pytest.approx(0.8)
    assert t["target_mean_macro_f1"] == pytest.approx(0.45)
    assert t["transfer_gap_macro_f1"] == pytest.approx(0.35)
    assert "retention_macro_f1" not in t  # the teacher is the reference
    assert s["retention_macro_f1"] == pytest.approx({"a": 0.75, "b": 1.0, "c": 0.5})
    # retention of a mean is the ratio of the means, not the mean of the per-domain ratios (0.75 here)
    assert s["retention_target_mean_macro_f1"] == pytest.approx(((0.5 + 0.2) / 2) / ((0.5 + 0.4) / 2))
    assert s["retention_in_domain_accuracy"] == pytest.approx(1.0)
    assert s["retention_target_mean_accuracy"] == pytest.approx(((0.3 + 0.5) / 2) / ((0.6 + 0.5) / 2))
    assert s["agreement_target_mean"] == pytest.approx(0.6) and s["kl_target_mean"] == pytest.approx(0.5)
    # no teacher: no retention; no source: no in-domain figures or gap
    bare = summarize(metrics, [], ["a", "b", "c"])
    assert "retention_macro_f1" not in bare["student"]
    assert bare["student"]["in_domain_macro_f1"] is None and bare["student"]["transfer_gap_macro_f1"] is None
    overall = overall_summary([{"summary": summary}, {"summary": summarize(metrics, ["b"], ["a"], "teacher")}])
    assert overall["teacher"]["in_domain_macro_f1"] == pytest.approx((0.8 + 0.5) / 2)
    assert overall["student"]["retention_target_mean_macro_f1"] == pytest.approx((0.35 / 0.45 + 0.6 / 0.8) / 2)


def test_predict_returns_rows_in_dataset_order(tokenizer):
    model = tiny_bert(seed=1).eval()
    table = domain(0)["test"]
    out = predict(model, tokenizer, table, label_names=LABELS, batch_size=5)  # length-sorted inside
    one_by_one = np.concatenate(
        [predict(model, tokenizer, table.select([i]), label_names=LABELS).logits for i in range(len(table))]
    )
    np.testing.assert_allclose(out.logits, one_by_one, atol=1e-5)
    assert out.labels.tolist() == table["label"] and out.seconds > 0


def test_evaluate_models_matrix(tokenizer):
    teacher = tiny_bert(seed=1).eval()
    other = tiny_bert(seed=2).eval()
    # the same teacher with its label order permuted: mapped by name, so every number is the teacher's
    permuted = tiny_bert(seed=1).eval()
    order = [2, 0, 1]
    permuted.classifier.weight.data = teacher.classifier.weight.data[order].clone()
    permuted.classifier.bias.data = teacher.classifier.bias.data[order].clone()
    permuted.config.id2label = {i: LABELS[j] for i, j in enumerate(order)}
    permuted.config.label2id = {name: i for i, name in permuted.config.id2label.items()}
    domains = {"a": domain(0), "b": domain(1, n=17)}
    block = evaluate_models(
        {"teacher": (teacher, tokenizer), "same": (permuted, tokenizer), "other": (other, tokenizer)},
        domains,
        teacher="teacher",
        source_domains=["a"],
        batch_size=4,
    )
    assert block["source_domains"] == ["a"] and block["target_domains"] == ["b"]
    assert list(block["metrics"]) == ["teacher", "same", "other"]
    assert block["metrics"]["teacher"]["b"]["n"] == 17
    same, teach = block["metrics"]["same"]["b"], block["metrics"]["teacher"]["b"]
    assert same["agreement"] == 1.0 and same["kl"] == pytest.approx(0.0, abs=1e-6)
    assert same["macro_f1"] == teach["macro_f1"] and same["ece"] == pytest.approx(teach["ece"])
    assert "agreement" not in teach
    assert block["summary"]["same"]["retention_macro_f1"]["a"] == pytest.approx(1.0)
    assert block["metrics"]["other"]["a"]["kl"] > 0
    assert block["speed"]["teacher"]["rows"] == 24 + 17 and block["speed"]["teacher"]["num_layers"] == 2
    assert block["speed"]["teacher"]["speedup_vs_teacher"] == 1.0


def test_evaluate_models_rejects_unknown_teacher(tokenizer):
    with pytest.raises(ValueError, match="teacher='nope'"):
        evaluate_models({"a": (tiny_bert(), tokenizer)}, {"d": domain(0)}, teacher="nope")
