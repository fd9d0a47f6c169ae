"""Shared fixtures: tiny BERT/DistilBERT models built from configs, a tiny WordPiece tokenizer, tiny datasets."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach the Hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast  # noqa: E402

LABELS = ["negative", "neutral", "positive"]
WORDS = (
    "good great love happy nice fine bad awful hate sad late delay flight plane phone apple car road music festival "
    "ball game the a is was my your not very so and but"
).split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
POSITIVE, NEGATIVE = {"good", "great", "love", "happy", "nice"}, {"bad", "awful", "hate", "sad", "late"}


def write_vocab(folder) -> str:
    path = os.path.join(folder, "vocab.txt")
    with open(path, "w") as f:
        f.write("\n".join(SPECIAL + WORDS) + "\n")
    return path


def make_tokenizer(folder) -> BertTokenizerFast:
    # transformers 5 ignores `vocab_file=` in the constructor; `vocab=` takes the file.
    tok = BertTokenizerFast(vocab=write_vocab(folder), model_max_length=64)
    assert tok.convert_tokens_to_ids("good") != tok.unk_token_id
    return tok


def tiny_bert_config(num_layers: int = 2, **overrides) -> BertConfig:
    kwargs = dict(
        vocab_size=len(SPECIAL) + len(WORDS),
        hidden_size=32,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)},
    )
    kwargs.update(overrides)
    return BertConfig(**kwargs)


def tiny_bert(num_layers: int = 2, seed: int = 0, **overrides) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(tiny_bert_config(num_layers, **overrides))


def sentiment_of(text: str) -> int:
    words = set(text.split())
    if words & POSITIVE:
        return 2
    if words & NEGATIVE:
        return 0
    return 1


def tiny_texts(n: int, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    texts = []
    for _ in range(n):
        length = int(torch.randint(2, 9, (1,), generator=g))
        idx = torch.randint(0, len(WORDS), (length,), generator=g).tolist()
        texts.append(" ".join(WORDS[i] for i in idx))
    return texts


def tiny_dataset(n: int = 32, seed: int = 0) -> Dataset:
    texts = tiny_texts(n, seed)
    return Dataset.from_dict({"text": texts, "label": [sentiment_of(t) for t in texts]})


@pytest.fixture
def tokenizer(tmp_path):
    return make_tokenizer(tmp_path)


@pytest.fixture
def tiny_teacher():
    return tiny_bert(num_layers=2, seed=0).eval()


@pytest.fixture
def tokenized(tokenizer):
    """A tiny tokenised training set with `labels` (some unlabeled rows are added by the tests that need them)."""

    def tokenize(n: int = 32, seed: int = 0) -> Dataset:
        ds = tiny_dataset(n, seed)
        ds = ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=32), batched=True)
        return ds.rename_column("label", "labels").remove_columns("text")

    return tokenize
