"""hfkd.augment: augmented texts for distillation (mlm_replace, span_drop, sentence_mix), deterministic for a seed."""

from __future__ import annotations

import logging
import os
import re
import string

import numpy as np
import pytest
import torch
from datasets import Value, concatenate_datasets
from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

from hfkd.augment import (
    METHODS,
    augment,
    augment_dataset,
    augment_texts,
    check_methods,
    mlm_replace,
    sentence_mix,
    span_drop,
)
from hfkd.data.dedup import dedup_key
from hfkd.experiment import ExperimentArguments
from hfkd.losses import IGNORE_INDEX

from .conftest import make_tokenizer, tiny_bert_config, tiny_dataset, tiny_texts

TEXTS = tiny_texts(40, seed=5) + [
    "The flight was late. The crew was great! My phone is fine.",
    "@united my flight was delayed http://t.co/x so bad",
]


@pytest.fixture(scope="module")
def mlm(tmp_path_factory):
    """A tiny BERT masked LM (hidden 32, 2 layers) and the tiny word-level tokenizer."""
    tokenizer = make_tokenizer(tmp_path_factory.mktemp("tok"))
    torch.manual_seed(0)
    return BertForMaskedLM(tiny_bert_config(labels=None)).eval(), tokenizer


@pytest.fixture(scope="module")
def char_mlm(tmp_path_factory):
    """A tiny masked LM with a character-level WordPiece vocabulary: every word is several word pieces."""
    folder = tmp_path_factory.mktemp("chars")
    chars = string.ascii_lowercase + string.punctuation
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]
    path = os.path.join(folder, "vocab.txt")
    with open(path, "w") as f:
        f.write("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab=path, model_max_length=128)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
    )
    torch.manual_seed(0)
    return BertForMaskedLM(config).eval(), tokenizer


def test_deterministic_for_a_seed(mlm):
    model, tokenizer = mlm
    first = augment(TEXTS, 2, mlm_model=model, tokenizer=tokenizer, seed=3)
    assert first == augment(TEXTS, 2, mlm_model=model, tokenizer=tokenizer, seed=3)
    assert first != augment(TEXTS, 2, mlm_model=model, tokenizer=tokenizer, seed=4)
    # batching does not change what a text becomes
    assert first == augment(TEXTS, 2, mlm_model=model, tokenizer=tokenizer, seed=3, batch_size=5)


@pytest.mark.parametrize("factor", [0.5, 1, 3])
def test_about_factor_new_texts_per_text(mlm, factor):
    model, tokenizer = mlm
    made = augment(TEXTS, factor, mlm_model=model, tokenizer=tokenizer, seed=0)
    assert round(factor * len(TEXTS)) * 0.95 <= len(made) <= round(factor * len(TEXTS))
    if factor >= 1:
        assert {a.method for a in made} == set(METHODS)
    assert augment(TEXTS, 0, methods=("span_drop",)) == [] and augment([], 2, methods=("span_drop",)) == []


def test_no_augmented_text_repeats_an_input_or_another_output(mlm):
    model, tokenizer = mlm
    pool = TEXTS + TEXTS[:5]  # repeated inputs too
    made = augment(pool, 3, mlm_model=model, tokenizer=tokenizer, seed=1)
    keys = [dedup_key(a.text) for a in made]
    assert len(set(keys)) == len(keys)
    assert not set(keys) & {dedup_key(t) for t in pool}
    assert all(a.text != pool[a.source] for a in made)


def replaced_pattern(text: str, spans) -> re.Pattern:
    """The input text with each replaced span as a group of one or more non-space characters."""
    parts, cursor = [], 0
    for start, end in spans:
        parts += [re.escape(text[cursor:start]), r"(\S+)"]
        cursor = end
    return re.compile("".join(parts) + re.escape(text[cursor:]))


def test_mlm_replace_changes_only_the_masked_words(mlm):
    model, tokenizer = mlm
    results = mlm_replace(TEXTS, model, tokenizer, seed=0, mask_probability=0.3)
    assert all(r is not None for r in results)
    for text, result in zip(TEXTS, results, strict=True):
        match = replaced_pattern(text, result.spans).fullmatch(result.text)
        assert match, (text, result)
        originals = [text[s:e] for s, e in result.spans]
        for new, old in zip(match.groups(), originals, strict=True):
            assert new.lower() != old.lower() and new.lower() in tokenizer.get_vocab()
        assert 1 <= len(result.spans) <= max(1, round(0.3 * len(re.findall(r"\w+", text))))
    # links and @mentions are never masked
    last = results[-1]
    for start, end in last.spans:
        assert TEXTS[-1][start:end] not in ("united", "http", "t", "co", "x")


def test_mlm_replace_leaves_contractions_underscores_and_links_alone(mlm):
    model, tokenizer = mlm
    text = "good don't _ the's http://t.co/x @bad"
    for seed in range(10):
        (result,) = mlm_replace([text], model, tokenizer, seed=seed, mask_probability=1.0)
        assert [text[s:e] for s, e in result.spans] == ["good"], result  # the only word that may be replaced


def test_mlm_replace_masks_whole_words_and_matches_case(char_mlm):
    model, tokenizer = char_mlm
    text = "Flight DELAYED again and again"
    for seed in range(5):
        (result,) = mlm_replace([text], model, tokenizer, seed=seed, mask_probability=0.5)
        # each masked word (several pieces) is one word now: one character, since every word-start token is one
        assert len(result.text.split()) == len(text.split())
        match = replaced_pattern(text, result.spans).fullmatch(result.text)
        assert match and all(len(new) == 1 for new in match.groups())
        for (start, end), new in zip(result.spans, match.groups(), strict=True):
            assert text[start:end] in text.split()  # whole words only
            if text[start:end].isupper() or text[start].isupper():
                assert new.isupper() or not new.isalpha()


def test_mlm_replace_needs_a_model(mlm, caplog):
    with caplog.at_level(logging.WARNING, logger="hfkd.augment"):
        made = augment(TEXTS, 1, seed=0)
    assert "mlm_replace is skipped" in caplog.text
    assert made and {a.method for a in made} == {"span_drop", "sentence_mix"}
    with pytest.raises(ValueError, match="needs mlm_model"):
        augment(TEXTS, 1, methods=("mlm_replace",))
    with pytest.raises(ValueError, match="tokenizer"):
        augment(TEXTS, 1, mlm_model=mlm[0])


def test_span_drop_keeps_a_subsequence_of_the_words():
    rng = np.random.default_rng(0)
    for text in TEXTS * 3:
        out = span_drop(text, rng)
        words, kept = text.split(), out.split()
        assert 1 <= len(kept) < len(words)
        remaining = iter(words)
        assert all(word in remaining for word in kept), (text, out)  # in order
    assert span_drop("alone", rng) is None


def test_sentence_mix_joins_a_beginning_and_an_end():
    rng = np.random.default_rng(0)
    first, second = "The flight was late. The crew was great! Bye.", "my phone is fine"
    for _ in range(10):
        out = sentence_mix(first, second, rng)
        assert out.startswith("The flight was late.") and out.endswith("is fine")
        assert out not in (first, second)
    assert sentence_mix("the flight was late", "my phone", rng) == "the flight phone"
    assert sentence_mix("one", "my phone", rng) is None


def test_methods_are_checked():
    with pytest.raises(ValueError, match="'backtranslate'"):
        augment_texts(TEXTS, 1, methods=("span_drop", "backtranslate"))
    with pytest.raises(ValueError, match="factor"):
        augment_texts(TEXTS, -1, methods=("span_drop",))
    assert check_methods("span_drop") == ("span_drop",)


def test_augmented_rows_are_unlabeled_and_concatenate_with_the_data():
    data = tiny_dataset(16)
    rows = augment_dataset(data, 2, methods=("span_drop", "sentence_mix"), seed=0, with_provenance=True)
    assert rows.num_rows >= 28 and set(rows["label"]) == {IGNORE_INDEX}
    assert rows.features["label"] == Value("int64")
    assert all(0 <= i < 16 for i in rows["augmented_from"])
    rows = rows.remove_columns(["augmented_from", "augmentation"])
    both = concatenate_datasets([data.cast_column("label", Value("int64")), rows])
    assert both.num_rows == 16 + rows.num_rows


def test_augmented_student_of_an_experiment_learns_soft_targets_on_more_text(opt_in_experiment):
    _, results = opt_in_experiment  # one augmented copy per text; the teacher and distilled student reused
    block = results["blocks"][0]
    stages = block["stages"]
    assert stages["teacher"]["reused"] and stages["distilled"]["reused"] and not stages["augmented"]["reused"]
    source_rows = results["data"]["rows"]["air"]["train"]
    made = stages["augmented"]["train"]["augmented_rows"]
    assert 0.8 * source_rows <= made <= source_rows  # one per text, fewer where a method found nothing new
    # the augmented rows are trained on: more optimizer steps than the distilled student, same batch size
    assert stages["augmented"]["train"]["global_step"] > stages["distilled"]["train"]["global_step"]
    assert ("augmented", "distilled") in {(c["a"], c["b"]) for c in block["comparisons"]}
    assert "augmented cop" in results["models"]["augmented"]["description"]
    with pytest.raises(ValueError, match="augment_methods has mlm_replace but augment_mlm_model is not set"):
        ExperimentArguments(models=["teacher", "augmented"], augment_methods=["mlm_replace"])
    with pytest.raises(ValueError, match="augment_methods has mlm_replace but augment_mlm_model is not set"):
        ExperimentArguments(models=["teacher", "adaptive_augmented"], augment_methods=["mlm_replace"])


def test_adaptive_augmented_student_augments_the_source_and_the_unlabeled_target_text(opt_in_experiment):
    _, results = opt_in_experiment
    block = results["blocks"][0]
    stages = block["stages"]
    both, adaptive, augmented = (stages[m]["train"] for m in ("adaptive_augmented", "adaptive", "augmented"))
    # the same unlabeled target rows as the adaptive student, and augmented copies of them besides the source's
    assert both["unlabeled_rows"] == adaptive["unlabeled_rows"]
    unlabeled = sum(both["unlabeled_rows"].values())
    assert unlabeled > 0
    assert augmented["augmented_rows"] + 0.8 * unlabeled <= both["augmented_rows"]
    assert both["augmented_rows"] <= augmented["augmented_rows"] + unlabeled
    assert both["global_step"] > max(adaptive["global_step"], augmented["global_step"])
    # a stage of its own (its key differs from both), compared with the adaptive student it extends
    assert len({stages[m]["hash"] for m in ("adaptive_augmented", "adaptive", "augmented")}) == 3
    assert ("adaptive_augmented", "adaptive") in {(c["a"], c["b"]) for c in block["comparisons"]}
    assert "target text" in results["models"]["adaptive_augmented"]["description"]
