"""Long texts (`hfkd/data/long_text.py`): head/tail/head_tail truncation, windows and their averaged logits, the
options' checks; and that prediction and tokenisation of the defaults are what they were."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from datasets import Dataset
from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertTokenizerFast

from hfkd.data import DataArguments, LongTextOptions, average_windows, tokenize_texts, tokenize_windows
from hfkd.data.long_text import WINDOW_ROW, special_token_layout, window_starts
from hfkd.inference import predict

from .conftest import LABELS, SPECIAL, WORDS, make_tokenizer, tiny_bert, write_vocab

CLS, SEP = SPECIAL.index("[CLS]"), SPECIAL.index("[SEP]")


def distilbert_tokenizer(folder) -> DistilBertTokenizerFast:
    return DistilBertTokenizerFast(vocab=write_vocab(folder), model_max_length=64)


@pytest.fixture(params=["bert", "distilbert"])
def any_tokenizer(request, tmp_path):
    """A BERT tokenizer (with token_type_ids) and a DistilBERT one (without)."""
    return make_tokenizer(tmp_path) if request.param == "bert" else distilbert_tokenizer(tmp_path)


def long_text(n: int, offset: int = 0) -> str:
    """`n` words of the tiny vocabulary, each one word piece, in a known order."""
    return " ".join(WORDS[(i + offset) % len(WORDS)] for i in range(n))


def pieces(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# ---- truncation -----------------------------------------------------------------------------------------------------


def test_head_is_the_tokenizers_own_truncation(any_tokenizer):
    texts = [long_text(40), long_text(3), long_text(17, 5)]
    expected = any_tokenizer(texts, truncation=True, max_length=12)
    for options in (None, LongTextOptions(), LongTextOptions(long_text="chunk", max_chunks=3)):
        assert dict(tokenize_texts(any_tokenizer, texts, 12, options)) == dict(expected)


def test_head_tail_keeps_the_first_k_and_the_last_word_pieces_with_special_tokens(any_tokenizer):
    text = long_text(50)
    ids = pieces(any_tokenizer, text)
    assert len(ids) == 50 and special_token_layout(any_tokenizer) == (1, 1)
    out = tokenize_texts(any_tokenizer, [text, long_text(5)], 20, LongTextOptions("head_tail", head_tokens=6))
    # 20 tokens: [CLS], the first 6 word pieces, the last 20 - 2 - 6 = 12, [SEP]
    assert out["input_ids"][0] == [CLS, *ids[:6], *ids[-12:], SEP]
    assert out["attention_mask"][0] == [1] * 20
    assert set(out) == set(any_tokenizer("x"))  # the same columns: token_type_ids only where the tokenizer has them
    if "token_type_ids" in out:
        assert out["token_type_ids"][0] == [0] * 20
    # a short text is not changed
    assert {k: v[1] for k, v in out.items()} == dict(any_tokenizer(long_text(5)))


def test_head_tail_default_head_is_a_quarter_and_tail_keeps_the_end(any_tokenizer):
    text = long_text(300)
    ids = pieces(any_tokenizer, text)
    out = tokenize_texts(any_tokenizer, [text], 128, LongTextOptions("head_tail"))["input_ids"][0]
    assert out == [CLS, *ids[:32], *ids[-94:], SEP]  # 126 = 32 + 94
    assert LongTextOptions("head_tail").head_length(510) == 128  # Sun et al.: 128 + 382 at 512
    tail = tokenize_texts(any_tokenizer, [text], 10, LongTextOptions("tail"))["input_ids"][0]
    assert tail == [CLS, *ids[-8:], SEP]
    assert (
        tokenize_texts(any_tokenizer, [text], 10, LongTextOptions("head_tail", head_tokens=0))["input_ids"][0] == tail
    )


def test_tokenize_domains_uses_the_truncation(tmp_path):
    from datasets import ClassLabel, DatasetDict, Features, Value

    from hfkd.data import tokenize_domains

    tokenizer = make_tokenizer(tmp_path)
    features = Features({"text": Value("string"), "label": ClassLabel(names=LABELS)})
    table = Dataset.from_dict({"text": [long_text(30), long_text(4)], "label": [0, 1]}, features=features)
    domains = {"d": DatasetDict({"train": table})}
    tail = tokenize_domains(domains, tokenizer, max_length=8, long_text_options=LongTextOptions("tail"))
    assert tail["d"]["train"]["input_ids"][0] == [CLS, *pieces(tokenizer, long_text(30))[-6:], SEP]
    head = tokenize_domains(domains, tokenizer, max_length=8)
    assert head["d"]["train"]["input_ids"][0] == tokenizer(long_text(30), truncation=True, max_length=8)["input_ids"]


# ---- windows --------------------------------------------------------------------------------------------------------


WINDOW_CASES = [(5, 10, 0, 8), (10, 10, 0, 8), (11, 10, 0, 8), (95, 10, 3, 8), (1000, 10, 0, 8), (35, 10, 2, None)]


@pytest.mark.parametrize("length, width, overlap, cap", [*WINDOW_CASES, (40, 10, 0, 1)])
def test_window_starts_cover_the_text_with_full_windows(length, width, overlap, cap):
    starts = window_starts(length, width, overlap, cap)
    assert starts[0] == 0 and starts == sorted(starts) and len(set(starts)) == len(starts)
    if length <= width:
        assert starts == [0]
        return
    if cap == 1:
        assert starts == [0]
        return
    assert starts[-1] == length - width  # every window full, the last ends at the end
    needed = -(-(length - overlap) // (width - overlap))
    assert len(starts) == min(needed, cap or needed)
    if cap is None or needed <= cap:  # neighbours share at least `overlap`: every word piece is covered
        assert all(b - a <= width - overlap for a, b in zip(starts, starts[1:], strict=False))


def test_windows_hold_the_whole_text_with_special_tokens(any_tokenizer):
    texts = [long_text(45), long_text(3, 2), long_text(18, 7)]
    out = tokenize_windows(any_tokenizer, texts, 12, LongTextOptions(long_text="chunk", chunk_overlap=2))
    assert out[WINDOW_ROW] == sorted(out[WINDOW_ROW]) and set(out[WINDOW_ROW]) == {0, 1, 2}
    for row, text in enumerate(texts):
        windows = [ids for ids, r in zip(out["input_ids"], out[WINDOW_ROW], strict=True) if r == row]
        ids = pieces(any_tokenizer, text)
        starts = window_starts(len(ids), 10, 2, 8)
        assert windows == [[CLS, *ids[s : s + 10], SEP] for s in starts]
        assert {i for s in starts for i in range(s, min(s + 10, len(ids)))} == set(range(len(ids)))
    short = out["input_ids"][out[WINDOW_ROW].index(1)]
    assert short == any_tokenizer(texts[1])["input_ids"]  # a text that fits is one ordinary input
    assert all(len(mask) == len(ids) for mask, ids in zip(out["attention_mask"], out["input_ids"], strict=True))


def test_average_windows_is_the_mean_of_logits():
    logits = np.array([[1.0, 2.0], [3.0, 0.0], [5.0, 5.0], [-1.0, 1.0]])
    np.testing.assert_allclose(average_windows(logits, [1, 0, 1, 2], 3), [[3, 0], [3, 3.5], [-1, 1]])
    with pytest.raises(ValueError, match="no window"):
        average_windows(logits, [0, 0, 2, 2], 3)


def tiny_distilbert(seed: int = 0) -> DistilBertForSequenceClassification:
    torch.manual_seed(seed)
    config = DistilBertConfig(
        vocab_size=len(SPECIAL) + len(WORDS),
        dim=32,
        n_layers=2,
        n_heads=4,
        hidden_dim=37,
        max_position_embeddings=64,
        dropout=0.0,
        attention_dropout=0.0,
        initializer_range=0.2,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={n: i for i, n in enumerate(LABELS)},
    )
    return DistilBertForSequenceClassification(config).eval()


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_chunked_prediction_is_the_mean_over_windows_in_row_order(tmp_path, kind):
    # initializer_range 0.2: logits that differ from text to text (at 0.02 they are all about the same)
    model = tiny_bert(seed=2, initializer_range=0.2).eval() if kind == "bert" else tiny_distilbert(seed=2)
    tokenizer = make_tokenizer(tmp_path) if kind == "bert" else distilbert_tokenizer(tmp_path)
    lengths = [40, 3, 25, 9, 60, 12, 1]  # shuffled lengths: prediction sorts by length, and must sort back
    texts = [long_text(n, offset=i) for i, n in enumerate(lengths)]
    table = Dataset.from_dict({"text": texts, "label": [i % 3 for i in range(len(texts))]})
    options = LongTextOptions(long_text="chunk", chunk_overlap=3, max_chunks=4)
    out = predict(model, tokenizer, table, label_names=LABELS, max_length=16, batch_size=3, long_text_options=options)
    assert out.logits.shape == (len(texts), 3) and out.labels.tolist() == table["label"]
    assert np.ptp(out.logits, axis=0).min() > 0.05  # the rows differ: a mix-up of rows would show
    for row, text in enumerate(texts):
        windows = tokenize_windows(tokenizer, [text], 16, options)
        with torch.no_grad():
            manual = [
                model(**{k: torch.tensor([v[w]]) for k, v in windows.items() if k != WINDOW_ROW}).logits[0].numpy()
                for w in range(len(windows["input_ids"]))
            ]
        # 14 word pieces fit in a window of 16 tokens; else the fewest windows sharing 3, at most 4
        assert len(manual) == (1 if lengths[row] <= 14 else min(4, -(-(lengths[row] - 3) // 11)))
        np.testing.assert_allclose(out.logits[row], np.mean(manual, axis=0), atol=1e-5)
    # a text that fits in one window gets exactly its truncated logits; without labels, -1
    plain = predict(model, tokenizer, table.remove_columns("label"), label_names=LABELS, max_length=16)
    fits = [i for i, n in enumerate(lengths) if n <= 14]
    np.testing.assert_allclose(out.logits[fits], plain.logits[fits], atol=1e-5)
    assert (plain.labels == -1).all()
    unlabeled = predict(
        model, tokenizer, table.remove_columns("label"), label_names=LABELS, max_length=16, long_text_options=options
    )
    assert (unlabeled.labels == -1).all()
    np.testing.assert_allclose(unlabeled.logits, out.logits, atol=1e-6)
    # sharded and gathered by an accelerator (one process here): the same rows
    gathered = predict(
        model,
        tokenizer,
        table,
        label_names=LABELS,
        max_length=16,
        accelerator=Accelerator(),
        long_text_options=options,
    )
    np.testing.assert_allclose(gathered.logits, out.logits, atol=1e-6)
    assert gathered.labels.tolist() == table["label"]


def test_default_prediction_is_unchanged_and_tail_reads_the_end(tmp_path):
    model, tokenizer = tiny_bert(seed=4, initializer_range=0.2).eval(), make_tokenizer(tmp_path)
    texts = [long_text(30, 1), "good", long_text(20, 9)]
    table = Dataset.from_dict({"text": texts, "label": [0, 1, 2]})
    run = dict(label_names=LABELS, max_length=10)
    before = predict(model, tokenizer, table, **run)
    np.testing.assert_array_equal(
        before.logits, predict(model, tokenizer, table, long_text_options=None, **run).logits
    )
    np.testing.assert_array_equal(
        before.logits, predict(model, tokenizer, table, long_text_options=LongTextOptions(), **run).logits
    )
    tail = predict(model, tokenizer, table, long_text_options=LongTextOptions("tail"), **run)
    ids = pieces(tokenizer, texts[0])
    with torch.no_grad():
        expected = model(input_ids=torch.tensor([[CLS, *ids[-8:], SEP]])).logits[0].numpy()
    np.testing.assert_allclose(tail.logits[0], expected, atol=1e-5)
    np.testing.assert_allclose(tail.logits[1], before.logits[1], atol=1e-6)  # a short text: the same input


# ---- options --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"truncation": "middle"},
            r"truncation='middle' is not valid; set truncation to one of \['head', 'head_tail'",
        ),
        ({"long_text": "window"}, r"long_text='window' is not valid; set long_text to one of \['chunk', 'truncate'\]"),
        ({"truncation": "head_tail", "head_tokens": 200}, r"head_tokens must be in \[0, 126\]; got head_tokens=200"),
        ({"head_tokens": -1}, r"head_tokens must be in \[0, 126\]; got head_tokens=-1"),
        ({"long_text": "chunk", "chunk_overlap": 126}, r"chunk_overlap must be in \[0, 125\]; got chunk_overlap=126"),
        ({"long_text": "chunk", "max_chunks": 0}, r"max_chunks must be in \[1, inf\]; got max_chunks=0"),
    ],
)
def test_bad_options_name_the_field_the_value_and_the_fix(kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        DataArguments(**kwargs)
    assert "set" in str(error.value)  # the fix


def test_options_beyond_the_tokenizer_name_the_field(tmp_path):
    tokenizer = make_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="head_tokens=9 is more than the 8 word pieces"):
        tokenize_texts(tokenizer, [long_text(30)], 10, LongTextOptions("head_tail", head_tokens=9))
    with pytest.raises(ValueError, match="max_length=2 leaves no room"):
        tokenize_texts(tokenizer, [long_text(30)], 2, LongTextOptions("tail"))
    with pytest.raises(ValueError, match="chunk_overlap=8 must be less than the 8"):
        tokenize_windows(tokenizer, [long_text(30)], 10, LongTextOptions(long_text="chunk", chunk_overlap=8))


def test_keys_are_empty_for_the_defaults_and_name_what_is_used(caplog):
    assert DataArguments().long_text_options == LongTextOptions()
    assert LongTextOptions().key() == LongTextOptions().prediction_key() == {}
    # options that are not used do not enter a key
    assert LongTextOptions(head_tokens=5).key() == {} and LongTextOptions(max_chunks=3).key() == {}
    chunk = LongTextOptions("tail", long_text="chunk")
    assert chunk.input_key() == {"truncation": "tail"}
    assert chunk.prediction_key() == {"long_text": "chunk", "chunk_overlap": 0, "max_chunks": 8}
    assert chunk.key() == chunk.input_key() | chunk.prediction_key()
    assert LongTextOptions("head_tail", head_tokens=5).prediction_key() == {
        "truncation": "head_tail",
        "head_tokens": 5,
    }
    DataArguments(head_tokens=5)
    assert "head_tokens=5 is used with truncation=head_tail only" in caplog.text
