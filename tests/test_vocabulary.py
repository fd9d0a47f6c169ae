"""Vocabulary trimming: ids map 1:1 on the texts it was trimmed on, logits are unchanged, unseen words, saving."""

import json
import string

import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertTokenizerFast,
    PreTrainedTokenizerFast,
    pipeline,
)

from hfkd.distillation_config import DistillationArguments, StudentArguments
from hfkd.pipelines.distill import build_student, check_trimmed_vocabulary
from hfkd.vocabulary import tokenization_changes, trim_vocabulary, unknown_rate

from .conftest import DOMAINS, LABELS, TINY, load_script, run_script, tiny_bert, write_domains

CHARS = string.ascii_lowercase + "!."
WORDS = ["good", "great", "flight", "delay", "##ed", "the", "was", "not", "phone", "zebra", "xylophone"]
# [unused0] sits between the special tokens, as in BERT's vocabulary: trimming drops it and renumbers the rest
VOCAB = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CHARS, *(f"##{c}" for c in CHARS), *WORDS]
TEXTS = ["the flight was delayed!", "good phone", "great flights.", "not good, the phone"]


@pytest.fixture
def wordpiece(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n")
    return BertTokenizerFast(vocab=str(path), model_max_length=64)


@pytest.fixture
def model():
    return tiny_bert(num_layers=2, seed=0, vocab_size=len(VOCAB)).eval()


def encode(tokenizer, texts):
    return tokenizer(texts, padding=True, return_tensors="pt")


def test_ids_map_one_to_one_and_logits_are_unchanged_on_the_trimmed_texts(model, wordpiece):
    trimmed, tokenizer, report = trim_vocabulary(model, wordpiece, TEXTS, keep_characters=False)
    before, after = encode(wordpiece, TEXTS), encode(tokenizer, TEXTS)
    remap = report.remap()
    expected = before["input_ids"].clone().apply_(lambda i: remap[i])
    assert torch.equal(after["input_ids"], expected)
    assert torch.equal(after["attention_mask"], before["attention_mask"])
    with torch.no_grad():
        torch.testing.assert_close(trimmed(**after).logits, model(**before).logits, atol=1e-6, rtol=0)
    # the kept tokens keep their relative order: [PAD] stays 0, [UNK] and [CLS] close the gap of [unused0]
    assert report.kept_ids == sorted(report.kept_ids) and report.kept_ids[0] == 0
    assert tokenizer.pad_token_id == 0 and tokenizer.unk_token_id == 1 and tokenizer.cls_token_id == 2
    assert "[unused0]" not in tokenizer.get_vocab() and "zebra" not in tokenizer.get_vocab()
    special = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    used = {t for text in TEXTS for t in wordpiece.tokenize(text)} - special  # "," is [UNK] before and after
    assert set(tokenizer.get_vocab()) == used | special
    assert report.used_tokens == len(used) and report.special_tokens == 5 and report.character_tokens == 0
    assert (
        report.kept_size
        == len(tokenizer)
        == trimmed.config.vocab_size
        == trimmed.get_input_embeddings().num_embeddings
    )
    assert report.removed_parameters == (len(VOCAB) - report.kept_size) * model.config.hidden_size
    assert trimmed.config.pad_token_id == 0 and trimmed.get_input_embeddings().padding_idx == 0
    assert model.config.vocab_size == len(VOCAB) and len(wordpiece) == len(VOCAB)  # the inputs are untouched


def test_unseen_words_spelled_in_characters_or_unknown(model, wordpiece):
    _, with_chars, report = trim_vocabulary(model, wordpiece, TEXTS)
    _, without, bare = trim_vocabulary(model, wordpiece, TEXTS, keep_characters=False)
    # keeping the characters costs one row per character and ## form the texts did not use
    assert report.kept_size - bare.kept_size == report.character_tokens > 0
    assert report.character_tokens == 2 * len(CHARS) - len(
        {t for text in TEXTS for t in wordpiece.tokenize(text) if len(t.removeprefix("##")) == 1}
    )
    assert with_chars.tokenize("zebra") == ["z", "##e", "##b", "##r", "##a"]  # a dropped word, spelled out
    assert without.tokenize("zebra") == ["[UNK]"]
    assert with_chars.tokenize("a380") == ["[UNK]"]  # characters none of the texts had: the whole word
    rate = unknown_rate(with_chars, ["a380 good", "good zebra"])
    assert rate == {"tokens": 8, "unknown": 1, "rate": 1 / 8, "texts": 2, "texts_with_unknown": 1}
    changes = tokenization_changes(wordpiece, with_chars, report.kept_ids, ["good zebra", "good phone"])
    assert changes == {"texts": 2, "texts_changed": 1, "tokens_before": 4, "tokens_after": 8}


def test_round_trip_through_a_normal_folder_and_a_pipeline(model, wordpiece, tmp_path):
    trimmed, tokenizer, report = trim_vocabulary(model, wordpiece, TEXTS)
    folder = tmp_path / "trimmed"
    trimmed.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    saved = json.loads((folder / "tokenizer.json").read_text())
    assert len(saved["model"]["vocab"]) == report.kept_size
    assert saved["post_processor"]["special_tokens"]["[CLS]"]["ids"] == [2]
    loaded_tokenizer = AutoTokenizer.from_pretrained(folder)
    loaded = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab()
    assert loaded.config.vocab_size == report.kept_size
    batch = encode(loaded_tokenizer, TEXTS)
    assert torch.equal(batch["input_ids"], encode(tokenizer, TEXTS)["input_ids"])
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, model(**encode(wordpiece, TEXTS)).logits, atol=1e-6, rtol=0)
    texts = ["good phone", "zebra café"]
    predictions = pipeline("text-classification", model=str(folder))(texts)
    with torch.no_grad():
        expected = loaded(**encode(loaded_tokenizer, texts)).logits.argmax(-1).tolist()
    assert [p["label"] for p in predictions] == [LABELS[i] for i in expected]


def test_tied_output_embeddings_are_trimmed_with_the_input_rows(wordpiece):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20
    )
    mlm = BertForMaskedLM(config).eval()
    with torch.no_grad():
        mlm.cls.predictions.bias.normal_()
    trimmed, tokenizer, report = trim_vocabulary(mlm, wordpiece, TEXTS)
    head = trimmed.cls.predictions.decoder
    assert head.weight is trimmed.get_input_embeddings().weight  # still tied
    assert head.bias is trimmed.cls.predictions.bias and head.bias.shape == (report.kept_size,)
    with torch.no_grad():
        before = mlm(**encode(wordpiece, TEXTS)).logits[..., report.kept_ids]
        after = trimmed(**encode(tokenizer, TEXTS)).logits
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


def test_bad_inputs(model, wordpiece):
    word_level = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel({"[UNK]": 0, "good": 1}, unk_token="[UNK]")), unk_token="[UNK]"
    )
    with pytest.raises(ValueError, match="WordPiece"):
        trim_vocabulary(model, word_level, TEXTS)
    with pytest.raises(ValueError, match="embedding rows"):
        trim_vocabulary(tiny_bert(vocab_size=10), wordpiece, TEXTS)
    with pytest.raises(ValueError, match="keep_tokens"):
        trim_vocabulary(model, wordpiece, TEXTS, keep_tokens=["not-a-token"])
    with pytest.raises(ValueError, match="student_vocabulary"):
        StudentArguments(student_vocabulary="tiny")
    with pytest.raises(ValueError, match="student_vocabulary='trimmed'.*teacher_logits"):
        check_trimmed_vocabulary(
            StudentArguments(student_vocabulary="trimmed"),
            DistillationArguments(output_dir="x", teacher_logits="online", report_to="none"),
        )
    args = DistillationArguments(output_dir="x", report_to="none")
    with pytest.raises(ValueError, match="scripts/trim_vocabulary.py"):  # no text to trim on: say what to do
        build_student(model, wordpiece, StudentArguments(student_num_layers=1, student_vocabulary="trimmed"), args,
                      LABELS)  # fmt: skip


def test_distill_script_trains_a_student_with_the_trimmed_vocabulary(tmp_path, wordpiece):
    teacher = tmp_path / "teacher"  # a classifier with the data's labels and a character-level vocabulary
    tiny_bert(num_layers=2, seed=0, vocab_size=len(VOCAB)).save_pretrained(teacher)
    wordpiece.save_pretrained(teacher)
    script = load_script("distill")
    out = tmp_path / "student"
    argv = ["--config", TINY, "--teacher_model_name_or_path", str(teacher), "--student_num_layers", "1"]
    argv += ["--student_vocabulary", "trimmed", "--max_train_samples", "32", "--num_train_epochs", "1"]
    argv += ["--output_dir", str(out), "--teacher_logits_cache_dir", str(tmp_path / "cache"), "--report_to", "none"]
    metrics = script.main(*script.make_parser().parse_args_and_config(argv))
    assert "test_macro_f1" in metrics
    student = AutoModelForSequenceClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert student.config.vocab_size == len(tokenizer) < len(VOCAB)
    assert "zebra" not in tokenizer.get_vocab() and "[unused0]" not in tokenizer.get_vocab()
    assert student.config.hfkd_vocabulary["original_vocab_size"] == len(VOCAB)
    run = json.loads((out / "hfkd_run.json").read_text())
    assert run["config"]["student_vocabulary"] == "trimmed"


def test_trim_script_writes_a_smaller_folder_and_its_record(tmp_path, model, wordpiece, capsys):
    source = tmp_path / "student"
    model.save_pretrained(source)
    wordpiece.save_pretrained(source)
    domains = write_domains(tmp_path / "domains", n=24)
    script = load_script("trim_vocabulary")
    out = tmp_path / "trimmed"
    argv = ["--model_name_or_path", str(source), "--dataset", str(domains), "--output_dir", str(out)]
    record = script.main(*script.make_parser().parse_args_and_config(argv))
    saved = json.loads((out / "vocabulary.json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved["parameters"]["after"] < saved["parameters"]["before"]
    assert saved["weights_bytes"]["after"] < saved["weights_bytes"]["before"]
    assert set(saved["unknown"]) == {f"{d}/{s}" for d in DOMAINS for s in ("train", "validation", "test")}
    assert all(rates["after"]["unknown"] == rates["before"]["unknown"] for name, rates in saved["unknown"].items()
               if name.endswith("/train"))  # fmt: skip
    assert all(saved["changed"][f"{d}/train"]["texts_changed"] == 0 for d in DOMAINS)  # trimmed on these
    assert AutoModelForSequenceClassification.from_pretrained(out).config.vocab_size == saved["report"]["kept_size"]
    assert "vocabulary" in capsys.readouterr().out
    with pytest.raises(ValueError, match="already holds a model"):
        script.main(*script.make_parser().parse_args_and_config(argv))


def test_finetune_script_makes_a_narrower_baseline_with_the_trimmed_vocabulary(tmp_path, wordpiece):
    teacher = tmp_path / "teacher"
    tiny_bert(num_layers=2, seed=0, vocab_size=len(VOCAB)).save_pretrained(teacher)
    wordpiece.save_pretrained(teacher)
    out = tmp_path / "baseline"
    argv = ["--model_name_or_path", str(teacher), "--student_num_layers", "1", "--student_hidden_size", "16"]
    argv += ["--student_vocabulary", "trimmed", "--max_train_samples", "32", "--num_train_epochs", "1"]
    run_script("finetune", *argv, "--output_dir", str(out))
    student = AutoModelForSequenceClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert student.config.hidden_size == 16 and student.config.num_hidden_layers == 1
    assert student.config.vocab_size == len(tokenizer) < len(VOCAB)
