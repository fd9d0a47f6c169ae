"""Vocabulary trimming: keep the word pieces some texts use, and only their embedding rows.

A small BERT-class classifier spends most of its parameters on word embeddings (all-MiniLM-L6-v2: 30,522 rows of
384, 11.7 M of 22.7 M parameters; two thirds of a 3-layer student). A classifier for a few domains reads a small part
of that vocabulary. [`trim_vocabulary`] keeps the special tokens, every token the given texts tokenise to and (by
default) the single characters and their `##` forms, rebuilds the fast WordPiece tokenizer with that vocabulary (in the
original relative order, so `[PAD]` = 0 stays 0) and slices the model's embedding rows (and a tied or untied output
layer over the vocabulary) to match. On the texts it was trimmed on, the trimmed pair computes exactly what the
untrimmed pair computed: every token id is the remap of the old one.

A word the kept vocabulary cannot spell becomes `[UNK]` (WordPiece maps the whole word): with the characters kept
that happens only to a word with a character none of the texts had; without them, to any word whose pieces the texts
did not use. [`unknown_rate`] measures it on other text. The result is a normal Hugging Face folder once saved: no
hfkd is needed to load it.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel
from transformers.utils import logging

from .inference import count_parameters, safetensors_size
from .models import resolve_model_name_or_path

logger = logging.get_logger(__name__)

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
_VOCAB_FILE = "vocab.txt"
_BATCH = 1000  # texts per tokenizer call when counting


@dataclass
class VocabularyReport:
    """What [`trim_vocabulary`] kept.

    Attributes:
        original_size (`int`): the tokenizer's vocabulary before (model vocabulary plus added tokens).
        kept_size (`int`): the vocabulary after: the new `config.vocab_size`.
        special_tokens (`int`): special and added tokens (always kept).
        used_tokens (`int`): the distinct other tokens the texts tokenise to.
        character_tokens (`int`): rows kept only for `keep_characters` (single characters and `##` characters the
            texts do not use): the cost of spelling unseen words.
        extra_tokens (`int`): rows kept only because `keep_tokens` or the model config named them.
        texts (`int`): the number of texts counted.
        hidden_size (`int`): the width of an embedding row.
        removed_parameters (`int`): embedding parameters removed (an untied output layer over the vocabulary counts).
        kept_ids (`list[int]`): the old id of each new id (`kept_ids[new] == old`), increasing.
    """

    original_size: int
    kept_size: int
    special_tokens: int
    used_tokens: int
    character_tokens: int
    extra_tokens: int
    texts: int
    hidden_size: int
    removed_parameters: int
    kept_ids: list[int] = field(repr=False)

    def to_dict(self) -> dict[str, int]:
        """The counts (without `kept_ids`), for `metrics.json` or a report."""
        return {k: v for k, v in asdict(self).items() if k != "kept_ids"}

    def remap(self) -> dict[int, int]:
        """`{old id: new id}` of the kept tokens."""
        return {old: new for new, old in enumerate(self.kept_ids)}


def tokenizer_json(tokenizer) -> dict[str, Any]:
    """The `tokenizers` serialisation of a fast WordPiece tokenizer (BERT's, DistilBERT's, ...), as a dict.

    Raises a `ValueError` for a slow tokenizer or another model type (BPE, Unigram): only WordPiece is trimmed.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(
            f"Vocabulary trimming needs a fast (tokenizers-backed) tokenizer; got {type(tokenizer).__name__}. Load "
            "it with AutoTokenizer.from_pretrained(...) (fast by default), or keep student_vocabulary: full."
        )
    data = json.loads(backend.to_str())
    kind = (data.get("model") or {}).get("type")
    if kind != "WordPiece":
        raise ValueError(
            f"Vocabulary trimming supports WordPiece tokenizers (BERT, DistilBERT, MiniLM, ELECTRA); this tokenizer's "
            f"model is {kind!r}. Keep student_vocabulary: full for this model."
        )
    return data


def token_counts(tokenizer, texts: Iterable[str]) -> Counter:
    """How often each token id occurs in the tokenisation of `texts` (whole texts, no special tokens)."""
    counts: Counter = Counter()
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == _BATCH:
            for ids in tokenizer(batch, add_special_tokens=False, truncation=False)["input_ids"]:
                counts.update(ids)
            batch = []
    if batch:
        for ids in tokenizer(batch, add_special_tokens=False, truncation=False)["input_ids"]:
            counts.update(ids)
    return counts


def character_token_ids(vocab: dict[str, int], prefix: str = "##") -> set[int]:
    """The ids of the single-character tokens and of their continuation forms (`##a`)."""
    return {
        i
        for token, i in vocab.items()
        if len(token) == 1 or (token.startswith(prefix) and len(token) == len(prefix) + 1)
    }


def _config_token_ids(model: PreTrainedModel) -> dict[str, Any]:
    """The `*_token_id` entries of the model's text config that hold ids (pad, bos, eos, sep, cls, ...)."""
    config = model.config.get_text_config()
    found = {}
    for name, value in config.to_dict().items():
        if not name.endswith("_token_id") or value is None:
            continue
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            or (isinstance(value, list) and all(isinstance(v, int) for v in value))
        ):
            found[name] = value
    return found


def _as_list(value) -> list[int]:
    return list(value) if isinstance(value, list) else [value]


def trim_vocabulary(
    model: PreTrainedModel,
    tokenizer,
    texts: Iterable[str],
    *,
    keep_characters: bool = True,
    keep_tokens: Sequence[str] = (),
    min_count: int = 1,
) -> tuple[PreTrainedModel, Any, VocabularyReport]:
    """
    A copy of `model` and `tokenizer` whose vocabulary is the tokens `texts` use (plus the special tokens).

    Kept: every special or added token, every token id the config names (`pad_token_id`, ...), each token that
    occurs at least `min_count` times in the tokenisation of `texts`, `keep_tokens`, and with `keep_characters` every
    single-character token and its `##` form (so that an unseen word is spelled out in characters rather than
    becoming `[UNK]`). The kept tokens keep their relative order, so new id `i` is old id `report.kept_ids[i]` and
    `[PAD]` = 0 stays 0. The model's word-embedding rows (and those of an output layer over the vocabulary, tied or
    not) are sliced to the kept ids; `config.vocab_size` and every `*_token_id` of the config are remapped. The inputs
    are not modified.

    On `texts` the trimmed tokenizer gives exactly the remapped ids of the original, so the trimmed model's outputs are
    the original's. A word of other text that the kept pieces cannot spell (a character none of `texts` had, or any
    unused piece without `keep_characters`) becomes `[UNK]` (see [`unknown_rate`]).

    Args:
        model (`PreTrainedModel`): the model whose input embeddings the tokenizer's ids index.
        tokenizer: its fast WordPiece tokenizer (BERT, DistilBERT, MiniLM, ELECTRA).
        texts (`Iterable[str]`): the text the model is meant for (e.g. the training and unlabeled text of its domains).
        keep_characters (`bool`, *optional*, defaults to `True`): also keep every single-character token and `##`
            form (about 2,000 rows for BERT's uncased vocabulary, fewer the more of them `texts` already use).
        keep_tokens (`Sequence[str]`, *optional*): more tokens to keep (each must be in the vocabulary).
        min_count (`int`, *optional*, defaults to `1`): keep a used token only if it occurs this often.

    Returns:
        `(model, tokenizer, report)`: the trimmed copies and a [`VocabularyReport`].
    """
    if min_count < 1:
        raise ValueError(f"min_count must be at least 1; got min_count={min_count}. Use 1 to keep every used token.")
    data = tokenizer_json(tokenizer)
    wordpiece = data["model"]
    vocab: dict[str, int] = dict(wordpiece["vocab"])
    added = {entry["content"]: entry["id"] for entry in data.get("added_tokens") or []}
    full = vocab | added
    original_size = len(set(full.values()))
    embeddings = model.get_input_embeddings()
    rows, hidden = embeddings.weight.shape
    too_big = sorted(i for i in full.values() if i >= rows)
    if too_big:
        raise ValueError(
            f"The tokenizer has ids up to {too_big[-1]} but the model has {rows} embedding rows: they do not belong "
            "together. Pass the tokenizer saved with this model."
        )
    outside = sorted(i for i in added.values() if i not in vocab.values() and i < max(vocab.values()))
    if outside:
        raise ValueError(
            f"Added tokens with ids {outside[:5]} sit inside the WordPiece vocabulary's id range without being in it; "
            "this tokenizer layout is not supported for trimming. Keep student_vocabulary: full."
        )
    texts = list(texts)
    special = set(added.values()) | {i for i in tokenizer.all_special_ids if i is not None}
    config_ids = {i for value in _config_token_ids(model).values() for i in _as_list(value) if 0 <= i < rows}
    counts = token_counts(tokenizer, texts)
    used = {i for i, n in counts.items() if n >= min_count} - special
    prefix = wordpiece.get("continuing_subword_prefix") or "##"
    characters = character_token_ids(vocab, prefix) - special - used if keep_characters else set()
    missing = [t for t in keep_tokens if t not in full]
    if missing:
        raise ValueError(f"keep_tokens {missing[:5]} are not in the tokenizer's vocabulary; give tokens it has.")
    extra = ({full[t] for t in keep_tokens} | config_ids) - special - used - characters
    kept_ids = sorted(special | used | characters | extra)
    report = VocabularyReport(
        original_size=original_size,
        kept_size=len(kept_ids),
        special_tokens=len(special),
        used_tokens=len(used),
        character_tokens=len(characters),
        extra_tokens=len(extra),
        texts=len(texts),
        hidden_size=hidden,
        removed_parameters=0,
        kept_ids=kept_ids,
    )
    new_tokenizer = trim_tokenizer(tokenizer, kept_ids)
    new_model = copy.deepcopy(model)
    report.removed_parameters = trim_embeddings(new_model, kept_ids)
    new_model.config.hfkd_vocabulary = {
        "original_vocab_size": rows,
        "vocab_size": len(kept_ids),
        "texts": len(texts),
        "keep_characters": keep_characters,
    }
    logger.info(
        f"Vocabulary trimmed from {original_size} to {len(kept_ids)} tokens ({len(used)} used by {len(texts)} texts, "
        f"{len(characters)} characters, {len(special)} special, {len(extra)} other): "
        f"{report.removed_parameters:,} embedding parameters removed."
    )
    return new_model, new_tokenizer, report


def _remap_processor(processor: dict[str, Any] | None, token_id: dict[str, int]) -> None:
    """Point the post-processor's special tokens at their new ids (TemplateProcessing, Bert/Roberta, Sequence)."""
    if not processor:
        return
    kind = processor.get("type")
    if kind == "Sequence":
        for inner in processor.get("processors") or []:
            _remap_processor(inner, token_id)
    elif kind == "TemplateProcessing":
        for entry in (processor.get("special_tokens") or {}).values():
            entry["ids"] = [token_id[token] for token in entry["tokens"]]
    else:  # BertProcessing, RobertaProcessing: "sep": [token, id], "cls": [token, id]
        for name in ("sep", "cls"):
            if isinstance(processor.get(name), list):
                token = processor[name][0]
                processor[name] = [token, token_id[token]]


def trimmed_tokenizer_json(data: dict[str, Any], kept_ids: Sequence[int]) -> dict[str, Any]:
    """A `tokenizers` serialisation (see [`tokenizer_json`]) reduced to `kept_ids` (increasing old ids; new id `i`
    is old id `kept_ids[i]`): the WordPiece vocabulary, added tokens, post-processor and padding remapped."""
    data = copy.deepcopy(data)
    remap = {old: new for new, old in enumerate(kept_ids)}
    vocab = data["model"]["vocab"]
    data["model"]["vocab"] = {t: remap[i] for t, i in sorted(vocab.items(), key=lambda kv: kv[1]) if i in remap}
    unk = data["model"].get("unk_token")
    if unk is not None and unk in vocab and vocab[unk] not in remap:
        raise ValueError(f"The unknown token {unk!r} must be kept; add it to the kept ids.")
    for entry in data.get("added_tokens") or []:
        entry["id"] = remap[entry["id"]]
    token_id = dict(data["model"]["vocab"]) | {e["content"]: e["id"] for e in data.get("added_tokens") or []}
    _remap_processor(data.get("post_processor"), token_id)
    padding = data.get("padding")
    if padding and padding.get("pad_token") in token_id:
        padding["pad_id"] = token_id[padding["pad_token"]]
    return data


def trim_tokenizer(tokenizer, kept_ids: Sequence[int]):
    """A copy of a fast WordPiece `tokenizer` with only the tokens `kept_ids` (increasing old ids).

    The copy is built the way a user loads it: the tokenizer is saved, its `tokenizer.json` (and the
    `added_tokens_decoder` of `tokenizer_config.json`, where present) rewritten, and the folder loaded with the
    tokenizer's own class, so that `save_pretrained` / `AutoTokenizer.from_pretrained` give it back unchanged.
    """
    data = trimmed_tokenizer_json(tokenizer_json(tokenizer), kept_ids)
    remap = {old: new for new, old in enumerate(kept_ids)}
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        with open(os.path.join(folder, TOKENIZER_JSON), "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)
        vocab_file = os.path.join(folder, _VOCAB_FILE)
        if os.path.exists(vocab_file):  # the same vocabulary in BERT's text form, one token per line by id
            with open(vocab_file, "w", encoding="utf-8") as f:
                f.write("".join(f"{t}\n" for t in data["model"]["vocab"]))
        config_file = os.path.join(folder, TOKENIZER_CONFIG)
        with open(config_file, encoding="utf-8") as f:
            config = json.load(f)
        if isinstance(config.get("added_tokens_decoder"), dict):
            config["added_tokens_decoder"] = {
                str(remap[int(i)]): entry for i, entry in config["added_tokens_decoder"].items() if int(i) in remap
            }
            with open(config_file, "w", encoding="utf-8") as f:
                json.dump(config, f, ensure_ascii=False, indent=2)
        trimmed = type(tokenizer).from_pretrained(folder)
        trimmed.name_or_path = tokenizer.name_or_path
        trimmed.init_kwargs.pop("vocab_file", None)  # the temporary folder's file: save_pretrained must not copy it
        if hasattr(trimmed, "vocab_file"):
            trimmed.vocab_file = None
    return trimmed


def _replace_parameter(model: nn.Module, old: nn.Parameter, new: nn.Parameter) -> None:
    """Put `new` wherever `old` is registered (tied weights share one Parameter object)."""
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is old:
                module._parameters[name] = new


@torch.no_grad()
def trim_embeddings(model: PreTrainedModel, kept_ids: Sequence[int]) -> int:
    """Keep only the embedding rows `kept_ids` (increasing) of `model`, in place: its input embeddings, an output
    layer over the vocabulary (tied or not, with its bias), `config.vocab_size` and the config's `*_token_id`s.

    Returns the number of parameters removed.
    """
    index = torch.as_tensor(list(kept_ids), dtype=torch.long)
    remap = {old: new for new, old in enumerate(kept_ids)}
    config = model.config.get_text_config()
    embeddings = model.get_input_embeddings()
    rows = embeddings.weight.shape[0]
    before = sum(p.numel() for p in model.parameters())
    output = model.get_output_embeddings()
    output_weight = getattr(output, "weight", None) if output is not None else None
    if output_weight is None or output_weight.shape[0] != rows:
        output = None  # no output layer over the vocabulary
    old_weight = embeddings.weight
    new_weight = nn.Parameter(old_weight.index_select(0, index.to(old_weight.device)).clone())
    new_weight.requires_grad_(old_weight.requires_grad)
    _replace_parameter(model, old_weight, new_weight)  # a tied output layer gets it too
    embeddings.num_embeddings = len(index)
    if embeddings.padding_idx is not None:
        embeddings.padding_idx = remap.get(embeddings.padding_idx)
    if output is not None:
        if output_weight is not old_weight:  # untied: slice its own rows
            weight = output_weight
            _replace_parameter(model, weight, nn.Parameter(weight.index_select(0, index.to(weight.device)).clone()))
        bias = getattr(output, "bias", None)
        if bias is not None and bias.shape[0] == rows:
            _replace_parameter(model, bias, nn.Parameter(bias.index_select(0, index.to(bias.device)).clone()))
        if hasattr(output, "out_features"):
            output.out_features = len(index)
    for name, value in _config_token_ids(model).items():
        new = [remap.get(i) for i in _as_list(value)]
        setattr(config, name, new if isinstance(value, list) else new[0])
    config.vocab_size = len(index)
    return before - sum(p.numel() for p in model.parameters())


def unknown_rate(tokenizer, texts: Iterable[str]) -> dict[str, float | int]:
    """How often `tokenizer` falls back to its unknown token on `texts` (whole texts, no special tokens).

    Returns `{"tokens", "unknown", "rate", "texts", "texts_with_unknown"}`: word pieces, `[UNK]` pieces among them,
    their ratio, and how many texts have at least one.
    """
    unk = tokenizer.unk_token_id
    tokens = unknown = rows = with_unknown = 0
    texts = list(texts)
    for start in range(0, len(texts), _BATCH):
        for ids in tokenizer(texts[start : start + _BATCH], add_special_tokens=False, truncation=False)["input_ids"]:
            n = sum(1 for i in ids if i == unk)
            tokens, unknown, rows, with_unknown = tokens + len(ids), unknown + n, rows + 1, with_unknown + (n > 0)
    return {
        "tokens": tokens,
        "unknown": unknown,
        "rate": unknown / tokens if tokens else 0.0,
        "texts": rows,
        "texts_with_unknown": with_unknown,
    }


def tokenization_changes(
    tokenizer, trimmed_tokenizer, kept_ids: Sequence[int], texts: Iterable[str]
) -> dict[str, int]:
    """How a trimmed tokenizer reads `texts` differently from the original: `{"texts", "texts_changed",
    "tokens_before", "tokens_after"}` (a text is changed when its ids are not the remap of the original's, e.g. an
    unseen word spelled in characters or mapped to `[UNK]`; whole texts, no special tokens)."""
    remap = {old: new for new, old in enumerate(kept_ids)}
    counts = dict.fromkeys(("texts", "texts_changed", "tokens_before", "tokens_after"), 0)
    texts = list(texts)
    for start in range(0, len(texts), _BATCH):
        batch = texts[start : start + _BATCH]
        before = tokenizer(batch, add_special_tokens=False, truncation=False)["input_ids"]
        after = trimmed_tokenizer(batch, add_special_tokens=False, truncation=False)["input_ids"]
        for old_ids, new_ids in zip(before, after, strict=True):
            counts["texts"] += 1
            counts["texts_changed"] += [remap.get(i, -1) for i in old_ids] != new_ids
            counts["tokens_before"] += len(old_ids)
            counts["tokens_after"] += len(new_ids)
    return counts


# ---- a saved model folder, trimmed (what scripts/trim_vocabulary.py runs) ------------------------------------------

VOCABULARY_FILE = "vocabulary.json"


@dataclass
class TrimArguments:
    """What `scripts/trim_vocabulary.py` trims, and where the result goes (the texts come from `DataArguments`:
    the training split of its `source_domains`, or of every domain when none are named)."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "The saved classifier to trim (e.g. a distilled student's folder)."}
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Where the trimmed model folder is written (new folder)."}
    )
    keep_characters: bool = field(
        default=True,
        metadata={
            "help": "Also keep every single-character token and its ## form, so that an unseen word is spelled in "
            "characters instead of becoming [UNK] (about 2,000 rows for BERT's uncased vocabulary)."
        },
    )
    min_count: int = field(default=1, metadata={"help": "Keep a used token only if it occurs this often."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace an existing output_dir (otherwise an error)."}
    )

    def __post_init__(self):
        for name in ("model_name_or_path", "output_dir"):
            if not getattr(self, name):
                raise ValueError(f"{name} is required; pass --{name}.")
        if self.min_count < 1:
            raise ValueError(
                f"min_count must be at least 1; got min_count={self.min_count}. Use 1 to keep every used token."
            )


def trim_model_folder(
    model_name_or_path: str,
    texts: Sequence[str],
    output_dir: str,
    *,
    keep_characters: bool = True,
    min_count: int = 1,
    eval_texts: dict[str, Sequence[str]] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Trim a saved classifier folder to the vocabulary of `texts` and save it (model, tokenizer) to `output_dir`,
    with `vocabulary.json`: the [`VocabularyReport`] counts, parameters and safetensors bytes before and after, and
    per entry of `eval_texts` the `[UNK]` rate of the original and of the trimmed tokenizer ([`unknown_rate`]) and
    how many texts the trimmed tokenizer reads differently ([`tokenization_changes`]).

    Returns what `vocabulary.json` holds. The folder loads with `AutoModelForSequenceClassification` /
    `AutoTokenizer` / `pipeline("text-classification")` alone.
    """
    folder = resolve_model_name_or_path(model_name_or_path)
    if os.path.exists(os.path.join(output_dir, "config.json")) and not overwrite:
        raise ValueError(
            f"output_dir={output_dir!r} already holds a model; pass another output_dir or --overwrite_output_dir true."
        )
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    trimmed, trimmed_tokenizer, report = trim_vocabulary(
        model, tokenizer, texts, keep_characters=keep_characters, min_count=min_count
    )
    os.makedirs(output_dir, exist_ok=True)
    trimmed.save_pretrained(output_dir)
    trimmed_tokenizer.save_pretrained(output_dir)
    before, after = safetensors_size(folder) or {}, safetensors_size(output_dir) or {}
    record: dict[str, Any] = {
        "model": model_name_or_path,
        "report": report.to_dict(),
        "keep_characters": keep_characters,
        "min_count": min_count,
        "parameters": {"before": count_parameters(model), "after": count_parameters(trimmed)},
        "weights_bytes": {"before": before.get("bytes"), "after": after.get("bytes")},
        "unknown": {
            name: {"before": unknown_rate(tokenizer, rows), "after": unknown_rate(trimmed_tokenizer, rows)}
            for name, rows in (eval_texts or {}).items()
        },
        "changed": {
            name: tokenization_changes(tokenizer, trimmed_tokenizer, report.kept_ids, rows)
            for name, rows in (eval_texts or {}).items()
        },
    }
    with open(os.path.join(output_dir, VOCABULARY_FILE), "w") as f:
        json.dump(record, f, indent=2)
    return record
