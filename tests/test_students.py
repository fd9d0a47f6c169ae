import json
import logging
import os
import subprocess
import sys

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    BertTokenizerFast,
    DistilBertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
    pipeline,
)

from hfkd.distillation_config import StudentArguments
from hfkd.fingerprints import content_hash, training_key
from hfkd.models import model_label_names
from hfkd.students import (
    WidthImportance,
    activation_importance,
    default_layer_ids,
    load_student,
    student_from_teacher,
    student_tokenizer,
    weight_importance,
)

from .conftest import LABELS

WORDS = "good great love bad awful hate the a movie flight was is very not so".split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS


def bert_config(num_layers: int = 4, **overrides) -> BertConfig:
    kwargs = dict(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        num_labels=3,
        id2label=dict(enumerate(LABELS)),
        label2id={n: i for i, n in enumerate(LABELS)},
    )
    kwargs.update(overrides)
    return BertConfig(**kwargs)


@pytest.fixture
def teacher():
    torch.manual_seed(0)
    model = BertForSequenceClassification(bert_config()).eval()
    with torch.no_grad():  # a non-zero type-0 embedding, so that folding it into DistilBERT is really tested
        model.bert.embeddings.token_type_embeddings.weight.normal_(std=0.5)
    return model


@pytest.fixture
def word_tokenizer(tmp_path):
    (tmp_path / "vocab").mkdir()
    path = tmp_path / "vocab" / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n")
    # transformers 5: BertTokenizerFast(vocab_file=...) silently ignores the file; `vocab=` reads it.
    tokenizer = BertTokenizerFast(vocab=str(path), model_max_length=64)
    assert tokenizer.unk_token_id not in tokenizer("good movie")["input_ids"]
    return tokenizer


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, len(VOCAB), (3, 9), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0  # padding must be handled the same way
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def outputs(model, batch, **extra):
    with torch.no_grad():
        return model(**batch, **extra, output_hidden_states=True)


# --- layer choice ---


def test_default_layer_ids():
    assert default_layer_ids(12, 6) == [0, 2, 4, 7, 9, 11]  # DistilBERT's choice
    assert default_layer_ids(6, 3) == [0, 3, 5]  # 2.5 rounds half up
    assert default_layer_ids(12, 4) == [0, 4, 7, 11]
    assert default_layer_ids(6, 6) == list(range(6))
    assert default_layer_ids(6, 2) == [0, 5]
    assert default_layer_ids(6, 1) == [0]
    with pytest.raises(ValueError, match="num_student_layers"):
        default_layer_ids(6, 7)
    with pytest.raises(ValueError, match="num_student_layers"):
        default_layer_ids(6, 0)


def test_default_is_half_the_layers(teacher):
    student = student_from_teacher(teacher)
    assert student.config.num_hidden_layers == 2
    assert student.config.hfkd_student["layer_ids"] == [0, 3]


# --- equivalence ---


@pytest.mark.parametrize("architecture", ["same", "distilbert"])
def test_all_layers_reproduce_the_teacher(teacher, batch, architecture):
    student = student_from_teacher(teacher, num_layers=4, architecture=architecture)
    teacher_out = outputs(teacher, batch, token_type_ids=torch.zeros_like(batch["input_ids"]))
    student_out = outputs(student, batch)
    assert len(student_out.hidden_states) == len(teacher_out.hidden_states) == 5
    for t, s in zip(teacher_out.hidden_states, student_out.hidden_states, strict=True):
        torch.testing.assert_close(s, t, atol=1e-5, rtol=1e-5)
    if architecture == "same":
        torch.testing.assert_close(student_out.logits, teacher_out.logits, atol=1e-5, rtol=1e-5)
    else:  # ReLU after pre_classifier instead of BERT's tanh pooler: the logits differ on purpose
        assert isinstance(student, DistilBertForSequenceClassification)
        assert not torch.allclose(student_out.logits, teacher_out.logits, atol=1e-5)
    # no token_type_ids at all means zeros for BERT too
    no_types = outputs(teacher, batch).hidden_states[-1]
    torch.testing.assert_close(student_out.hidden_states[-1], no_types, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("architecture", ["same", "distilbert"])
def test_subset_copies_embeddings_and_chosen_layers(teacher, batch, architecture):
    student = student_from_teacher(teacher, layer_ids=[0, 2], architecture=architecture)
    teacher_out, student_out = outputs(teacher, batch), outputs(student, batch)
    assert len(student_out.hidden_states) == 3
    torch.testing.assert_close(student_out.hidden_states[0], teacher_out.hidden_states[0], atol=1e-5, rtol=1e-5)
    # layer 0 sees the same input in both, so its output matches too; later layers see different inputs
    torch.testing.assert_close(student_out.hidden_states[1], teacher_out.hidden_states[1], atol=1e-5, rtol=1e-5)
    teacher_layers = teacher.bert.encoder.layer
    if architecture == "same":
        pairs = [(student.bert.encoder.layer[j], teacher_layers[t]) for j, t in enumerate([0, 2])]
        for s_layer, t_layer in pairs:
            for (name, s), (_, t) in zip(s_layer.state_dict().items(), t_layer.state_dict().items(), strict=True):
                torch.testing.assert_close(s, t, msg=name)
        torch.testing.assert_close(student.classifier.weight, teacher.classifier.weight)
        torch.testing.assert_close(student.bert.pooler.dense.weight, teacher.bert.pooler.dense.weight)
    else:
        blocks = student.distilbert.transformer.layer
        for j, t in enumerate([0, 2]):
            torch.testing.assert_close(blocks[j].attention.q_lin.weight, teacher_layers[t].attention.self.query.weight)
            torch.testing.assert_close(blocks[j].ffn.lin2.bias, teacher_layers[t].output.dense.bias)
            torch.testing.assert_close(blocks[j].output_layer_norm.weight, teacher_layers[t].output.LayerNorm.weight)
        torch.testing.assert_close(student.pre_classifier.weight, teacher.bert.pooler.dense.weight)
        torch.testing.assert_close(student.classifier.bias, teacher.classifier.bias)


@pytest.mark.parametrize("architecture", ["same", "distilbert"])
def test_config_labels_and_provenance(teacher, architecture, tmp_path):
    student = student_from_teacher(teacher, num_layers=2, architecture=architecture)
    assert student.config.num_hidden_layers == 2
    assert model_label_names(student) == LABELS
    assert student.config.label2id == teacher.config.label2id
    expected = {"teacher": None, "architecture": architecture, "layer_ids": [0, 3], "num_teacher_layers": 4}
    assert student.config.hfkd_student == expected
    assert teacher.config.num_hidden_layers == 4 and not hasattr(teacher.config, "hfkd_student")
    student.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).hfkd_student == expected


@pytest.mark.parametrize("architecture", ["same", "distilbert"])
def test_teacher_is_untouched(teacher, architecture):
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = student_from_teacher(teacher, num_layers=4, architecture=architecture)
    teacher_ptrs = {p.data_ptr() for p in teacher.parameters()}
    assert not teacher_ptrs & {p.data_ptr() for p in student.parameters()}
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)
    assert len(teacher.bert.encoder.layer) == 4


def test_same_works_for_roberta_and_distilbert_teachers(teacher):
    torch.manual_seed(0)
    roberta = RobertaForSequenceClassification(
        RobertaConfig(vocab_size=50, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37)
    )
    assert type(student_from_teacher(roberta, layer_ids=[1, 3])) is RobertaForSequenceClassification
    distil = student_from_teacher(teacher, num_layers=4, architecture="distilbert")
    smaller = student_from_teacher(distil, layer_ids=[0, 3])
    assert isinstance(smaller, DistilBertForSequenceClassification) and smaller.config.n_layers == 2
    torch.testing.assert_close(
        smaller.distilbert.transformer.layer[1].ffn.lin1.weight, distil.distilbert.transformer.layer[3].ffn.lin1.weight
    )


def test_teacher_without_pooler(caplog):
    torch.manual_seed(0)
    base = BertModel(bert_config(), add_pooling_layer=False)
    same = student_from_teacher(base, num_layers=2)
    assert type(same) is BertModel and same.pooler is None
    with caplog.at_level(logging.WARNING, logger="hfkd.students"):
        distil = student_from_teacher(base, num_layers=2, architecture="distilbert")
    assert isinstance(distil, DistilBertForSequenceClassification)
    assert "no pooler" in caplog.text


def test_layer_norm_eps_mismatch_warns(caplog):
    teacher = BertForSequenceClassification(bert_config(layer_norm_eps=1e-5))
    with caplog.at_level(logging.WARNING, logger="hfkd.students"):
        student_from_teacher(teacher, architecture="distilbert")
    assert "layer_norm_eps" in caplog.text


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_layers": 0}, r"num_layers.*\[1, 4\].*num_layers=0"),
        ({"num_layers": 5}, r"num_layers.*\[1, 4\].*num_layers=5"),
        ({"layer_ids": [0, 4]}, r"out of range.*\[0, 3\]"),
        ({"layer_ids": [-1, 2]}, r"out of range"),
        ({"layer_ids": [1, 1]}, r"repeat"),
        ({"layer_ids": [2, 0]}, r"increasing.*\[0, 2\]"),
        ({"layer_ids": []}, r"non-empty"),
        ({"num_layers": 3, "layer_ids": [0, 2]}, r"num_layers=3 disagrees with layer_ids=\[0, 2\]"),
        ({"architecture": "tiny"}, r"architecture='tiny'.*same.*distilbert"),
    ],
)
def test_validation_errors(teacher, kwargs, match):
    with pytest.raises(ValueError, match=match):
        student_from_teacher(teacher, **kwargs)


def test_distilbert_needs_a_bert_teacher():
    roberta = RobertaForSequenceClassification(
        RobertaConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    )
    with pytest.raises(ValueError, match=r"model_type='roberta'.*architecture='same'"):
        student_from_teacher(roberta, architecture="distilbert")


# --- tokenizer, saving, loading ---


def test_student_tokenizer(teacher, word_tokenizer, tmp_path):
    same = student_from_teacher(teacher, num_layers=2)
    assert student_tokenizer(word_tokenizer, same) is word_tokenizer
    distil = student_from_teacher(teacher, num_layers=2, architecture="distilbert")
    tokenizer = student_tokenizer(word_tokenizer, distil)
    assert tokenizer.model_input_names == ["input_ids", "attention_mask"]
    assert "token_type_ids" in word_tokenizer.model_input_names  # the teacher's is unchanged
    assert set(tokenizer("good movie")) == {"input_ids", "attention_mask"}
    assert tokenizer("good movie")["input_ids"] == word_tokenizer("good movie")["input_ids"]
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.model_input_names == ["input_ids", "attention_mask"]
    assert set(reloaded(["good movie", "bad"], padding=True)) == {"input_ids", "attention_mask"}


def save_student(teacher, tokenizer, folder, architecture):
    student = student_from_teacher(teacher, num_layers=2, architecture=architecture)
    student.save_pretrained(folder)
    student_tokenizer(tokenizer, student).save_pretrained(folder)
    return student


@pytest.mark.parametrize("architecture", ["same", "distilbert"])
def test_saved_student_reloads_and_runs_in_a_pipeline(teacher, word_tokenizer, tmp_path, batch, architecture):
    student = save_student(teacher, word_tokenizer, tmp_path / "s", architecture)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "s").eval()
    assert type(reloaded) is type(student)
    torch.testing.assert_close(outputs(reloaded, batch).logits, outputs(student, batch).logits)
    predictions = pipeline("text-classification", model=str(tmp_path / "s"))(["good movie", "awful flight"])
    assert {p["label"] for p in predictions} <= set(LABELS)
    # asked for in another order, the student is brought to it: the same function by label name
    loaded = load_student(str(tmp_path / "s"), label_names=list(reversed(LABELS))).eval()
    assert type(loaded) is type(student) and model_label_names(loaded) == list(reversed(LABELS))
    torch.testing.assert_close(outputs(loaded, batch).logits, outputs(student, batch).logits.flip(-1))


SUBPROCESS = """
import json, sys
from transformers import pipeline
out = {}
for folder in sys.argv[1:]:
    clf = pipeline("text-classification", model=folder)
    out[folder] = [clf(["good movie", "awful flight was late"]), type(clf.model).__name__, "hfkd" in sys.modules]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_saved_students_run_without_hfkd(teacher, word_tokenizer, tmp_path):
    folders = []
    for architecture in ["same", "distilbert"]:
        save_student(teacher, word_tokenizer, tmp_path / architecture, architecture)
        folders.append(str(tmp_path / architecture))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", SUBPROCESS, *folders],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert [out[f][1] for f in folders] == ["BertForSequenceClassification", "DistilBertForSequenceClassification"]
    for folder in folders:
        predictions, _, imported_hfkd = out[folder]
        assert not imported_hfkd
        assert len(predictions) == 2 and {p["label"] for p in predictions} <= set(LABELS)


@pytest.mark.slow
def test_minilm_teacher_to_distilbert_student():
    from hfkd.models import load_classifier, load_tokenizer

    teacher = load_classifier("builtin:minilm-l6", label_names=LABELS).eval()
    assert type(teacher) is BertForSequenceClassification and len(teacher.bert.encoder.layer) == 6
    assert model_label_names(teacher) == LABELS
    tokenizer = load_tokenizer("builtin:minilm-l6")
    small = student_from_teacher(teacher, num_layers=3, architecture="distilbert")
    assert small.config.hfkd_student["layer_ids"] == [0, 3, 5] and small.config.n_layers == 3
    full = student_from_teacher(teacher, num_layers=6, architecture="distilbert")
    enc = tokenizer(["The flight was late again, but the crew was lovely."], return_tensors="pt")
    teacher_out = outputs(teacher, dict(enc))
    student_inputs = {k: v for k, v in enc.items() if k in student_tokenizer(tokenizer, full).model_input_names}
    student_out = outputs(full, student_inputs)
    for t, s in zip(teacher_out.hidden_states, student_out.hidden_states, strict=True):
        torch.testing.assert_close(s, t, atol=1e-5, rtol=1e-5)


# --- narrower students (width pruning) ---


def identity_importance(model) -> WidthImportance:
    """Scores that rank every unit by its index (lower first): with every unit kept, no reordering at all."""
    c = model.config
    layers = c.num_hidden_layers
    return WidthImportance(
        hidden=-torch.arange(c.hidden_size, dtype=torch.float),
        heads=[-torch.arange(c.num_attention_heads, dtype=torch.float)] * layers,
        neurons=[-torch.arange(c.intermediate_size, dtype=torch.float)] * layers,
    )


@pytest.mark.parametrize("architecture", ["same", "distilbert"])
def test_full_width_with_the_identity_ranking_equals_the_layer_cut_student(teacher, batch, architecture):
    cut = student_from_teacher(teacher, num_layers=2, architecture=architecture)
    full = student_from_teacher(
        teacher, num_layers=2, architecture=architecture, hidden_size=32, importance=identity_importance(teacher)
    )
    assert cut.state_dict().keys() == full.state_dict().keys()
    for key, value in cut.state_dict().items():
        assert torch.equal(full.state_dict()[key], value), key
    torch.testing.assert_close(outputs(full, batch).logits, outputs(cut, batch).logits, atol=0, rtol=0)


def test_narrower_student_shapes_parameters_and_the_units_it_keeps(teacher, batch):
    scores = WidthImportance(
        hidden=torch.randn(32, generator=torch.Generator().manual_seed(0)),
        heads=[torch.tensor([0.1, 3.0, 0.2, 2.0])] * 4,  # heads 1 and 3 matter most
        neurons=[torch.arange(37, dtype=torch.float)] * 4,  # the last neurons matter most
    )
    student = student_from_teacher(teacher, num_layers=2, hidden_size=16, importance=scores)
    c = student.config
    assert (c.hidden_size, c.num_attention_heads, c.intermediate_size, c.num_hidden_layers) == (16, 2, 18, 2)
    fresh = BertForSequenceClassification(bert_config(num_layers=2, hidden_size=16, num_attention_heads=2,
                                                      intermediate_size=18))  # fmt: skip
    assert sum(p.numel() for p in student.parameters()) == sum(p.numel() for p in fresh.parameters())
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters()) / 3
    h = scores.hidden.argsort(descending=True)[:16].sort().values
    a = torch.cat([torch.arange(8, 16), torch.arange(24, 32)])  # heads 1 and 3, head size 8
    f = torch.arange(19, 37)
    s_layer, t_layer = student.bert.encoder.layer[1], teacher.bert.encoder.layer[3]  # layer ids [0, 3]
    assert torch.equal(s_layer.attention.self.query.weight, t_layer.attention.self.query.weight[a][:, h])
    assert torch.equal(s_layer.attention.output.dense.weight, t_layer.attention.output.dense.weight[h][:, a])
    assert torch.equal(s_layer.intermediate.dense.bias, t_layer.intermediate.dense.bias[f])
    assert torch.equal(s_layer.output.LayerNorm.weight, t_layer.output.LayerNorm.weight[h])
    emb = student.bert.embeddings.word_embeddings.weight
    assert torch.equal(emb, teacher.bert.embeddings.word_embeddings.weight[:, h])
    assert torch.equal(student.classifier.weight, teacher.classifier.weight[:, h])
    assert torch.equal(student.bert.pooler.dense.weight, teacher.bert.pooler.dense.weight[h][:, h])
    record = c.hfkd_student
    assert record["hidden_dims"] == h.tolist() and record["width_importance"] == "given"
    assert record["layer_ids"] == [0, 3] and record["num_attention_heads"] == 2
    assert outputs(student, batch).logits.shape == (3, 3)
    distil = student_from_teacher(teacher, num_layers=2, hidden_size=16, architecture="distilbert")
    assert distil.config.dim == 16 and distil.config.n_heads == 2 and distil.config.hidden_dim == 18


def test_importance_from_activations_and_from_weights(teacher, word_tokenizer):
    texts = ["good movie", "awful flight was very bad", "not so great"] * 3
    found = activation_importance(teacher, word_tokenizer, texts, max_length=16, batch_size=4)
    weights = weight_importance(teacher)
    for scores, source in ((found, "activations"), (weights, "weights")):
        assert scores.source == source and scores.hidden.shape == (32,)
        assert [h.shape for h in scores.heads] == [(4,)] * 4 and [f.shape for f in scores.neurons] == [(37,)] * 4
        assert (scores.hidden > 0).all() and all((h > 0).all() for h in scores.heads)
    assert not teacher.training  # its mode is restored
    student = student_from_teacher(teacher, num_layers=1, hidden_size=24, importance=found)
    assert student.config.hfkd_student["width_importance"] == "activations"
    kept = student.config.hfkd_student["hidden_dims"]
    assert kept == found.hidden.argsort(descending=True)[:24].sort().values.tolist()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"hidden_size": 20}, r"student_hidden_size must be a multiple of the teacher's head size 8.*=20"),
        ({"hidden_size": 64}, r"student_hidden_size .*\[8, 32\].*=64"),
        ({"hidden_size": 4}, r"student_hidden_size .*=4"),
        ({"intermediate_size": 100}, r"student_intermediate_size must be in \[1, 37\].*=100"),
        ({"hidden_size": 16, "importance": WidthImportance(torch.ones(8), [], [])}, r"importance does not fit"),
    ],
)
def test_width_validation_errors(teacher, kwargs, match):
    with pytest.raises(ValueError, match=match):
        student_from_teacher(teacher, num_layers=2, **kwargs)


def test_width_needs_a_bert_layout_teacher():
    distilbert = student_from_teacher(
        BertForSequenceClassification(bert_config(num_layers=2)), num_layers=2, architecture="distilbert"
    )
    with pytest.raises(ValueError, match=r"BERT-layout.*model_type='distilbert'.*student_hidden_size"):
        student_from_teacher(distilbert, num_layers=1, hidden_size=16)
    with pytest.raises(ValueError, match="student_hidden_size must be in"):
        StudentArguments(student_hidden_size=0)
    assert StudentArguments(student_hidden_size=16).builds_student


def test_narrower_student_saves_and_loads_as_a_normal_folder(teacher, word_tokenizer, tmp_path, batch):
    student = student_from_teacher(teacher, num_layers=2, hidden_size=16)
    student.save_pretrained(tmp_path / "narrow")
    student_tokenizer(word_tokenizer, student).save_pretrained(tmp_path / "narrow")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "narrow")
    assert reloaded.config.hidden_size == 16 and reloaded.config.hfkd_student["width_importance"] == "weights"
    torch.testing.assert_close(outputs(reloaded, batch).logits, outputs(student, batch).logits)
    result = pipeline("text-classification", model=str(tmp_path / "narrow"))("good movie")
    assert result[0]["label"] in LABELS


def test_new_student_fields_leave_existing_stage_keys_unchanged():
    # every stage key of a config that does not use the new fields must stay what it was (cached runs are reused)
    assert training_key(StudentArguments(student_num_layers=3)) == {
        "student_num_layers": 3,
        "student_layer_ids": None,
        "student_architecture": "same",
        "num_processes": 1,
    }
    assert (
        content_hash(training_key(StudentArguments(student_num_layers=3))) == "af5e159f9e"
    )  # as before the fields existed
    changed = training_key(
        StudentArguments(student_num_layers=3, student_hidden_size=192, student_vocabulary="trimmed")
    )
    assert changed["student_hidden_size"] == 192 and changed["student_vocabulary"] == "trimmed"
    assert "student_intermediate_size" not in changed
