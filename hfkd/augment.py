"""More text for the soft targets: offline augmentation of distillation data (TinyBERT's lesson).

A student learns the teacher's function from the teacher's outputs on the texts it is shown; more (and more varied)
texts give more of that function to match, and they need no labels: the teacher labels them (Jiao et al., "TinyBERT",
Findings of EMNLP 2020, distil on an augmented corpus about 20 times the task data). [`augment_texts`] makes about
`factor` new texts per input text, deterministically for a seed, with three methods:

- `mlm_replace`: mask about 15-30 % of the words (whole words: a word of several word pieces becomes one mask) and
  write in a word a masked LM predicts there (sampled from its top `top_k`, never the word itself). Use a masked LM
  that was trained on this kind of text: an adapted folder from [`hfkd.adaptation.adapt_encoder`] (its `mlm/` model)
  or a checkpoint with a trained masked-LM head. Everything outside the masked words is kept character for character.
- `span_drop`: drop one or two random spans of words (the rest, in order, joined by single spaces).
- `sentence_mix`: the beginning of one text (its first sentences, or its first half of words when it has one sentence)
  joined to the end of another text of the same pool. Call it per domain, so that mixed texts stay in one domain.

An augmented text has no label; give it `IGNORE_INDEX` (as [`augment_dataset`] does) so that it only gets the
teacher's soft targets. A text equal to an input text or to an earlier augmented text (compared by
`hfkd.data.dedup.dedup_key`: case, spacing, links and @mentions do not count) is not kept; the method next in turn is
tried instead, so the count is `round(factor * len(texts))` unless no method can make a new text from some input
(e.g. a one-word text with `span_drop` alone).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from datasets import Dataset, Features, Value
from transformers import PreTrainedModel
from transformers.utils import logging

from .adaptation import load_masked_lm, masked_logits
from .data.dedup import dedup_key
from .losses import IGNORE_INDEX

logger = logging.get_logger(__name__)

METHODS = ("mlm_replace", "span_drop", "sentence_mix")
"""The augmentation methods, in the order each text takes its turns through them."""
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# words that are (part of) a link or an @mention: replacing them makes no new text (dedup_key ignores them)
_NOT_MASKED = re.compile(r"https?:\S*|www\.\S+|@\w+")
_ALNUM = re.compile(r"[^\W_]")  # a letter or digit
_APOSTROPHES = {"'", "\u2019"}


class Augmentation(NamedTuple):
    """One augmented text, where it came from and how."""

    text: str
    source: int
    """The index of the input text it was made from (for `sentence_mix`, the one whose beginning it keeps)."""
    method: str


class Replacement(NamedTuple):
    """What `mlm_replace` made of one text."""

    text: str
    spans: tuple[tuple[int, int], ...]
    """The character spans `(start, end)` of the *input* text whose words were replaced, in order."""


def check_methods(methods: Sequence[str] | str) -> tuple[str, ...]:
    """`methods` as a tuple of known names, without repeats; a `ValueError` names any unknown one."""
    if isinstance(methods, str):
        methods = (methods,)
    methods = tuple(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown augmentation method(s) {unknown}; valid methods are {list(METHODS)}.")
    if not methods:
        raise ValueError(f"methods is empty; name at least one of {list(METHODS)}.")
    return methods


def span_drop(text: str, rng: np.random.Generator, *, max_spans: int = 2, max_fraction: float = 0.3) -> str | None:
    """
    Drop one or two random spans of words (whitespace-separated) from `text`: at most `max_fraction` of its words in
    all and at least one word kept. The kept words, in order, are joined by single spaces.

    Returns:
        `str | None`: the shorter text, or `None` for a text of fewer than two words.
    """
    words = text.split()
    if len(words) < 2:
        return None
    budget = min(max(1, int(max_fraction * len(words))), len(words) - 1)
    spans = int(rng.integers(1, max_spans + 1)) if budget > 1 else 1
    drop = np.zeros(len(words), dtype=bool)
    for _ in range(spans):
        left = budget - int(drop.sum())
        if left < 1:
            break
        length = int(rng.integers(1, left + 1))
        start = int(rng.integers(0, len(words) - length + 1))
        drop[start : start + length] = True
    return " ".join(w for w, dropped in zip(words, drop, strict=True) if not dropped)


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def sentence_mix(first: str, second: str, rng: np.random.Generator) -> str | None:
    """
    The beginning of `first` joined to the end of `second` by a space: each cut at a random sentence boundary (at least
    one sentence from each) when it has two or more sentences, else `first` keeps the first half of its words and
    `second` gives the second half of its words.

    Returns:
        `str | None`: the mixed text, or `None` when either text has fewer than two words.
    """
    if len(first.split()) < 2 or len(second.split()) < 2:
        return None
    head, tail = _sentences(first), _sentences(second)
    if len(head) >= 2:
        head = head[: int(rng.integers(1, len(head)))]
    else:
        words = first.split()
        head = words[: math.ceil(len(words) / 2)]
    if len(tail) >= 2:
        tail = tail[int(rng.integers(1, len(tail))) :]
    else:
        words = second.split()
        tail = words[len(words) // 2 :]
    return " ".join(head + tail)


def _word_start_tokens(tokenizer, size: int) -> torch.Tensor:
    """`(size,)` booleans: the tokens that can stand alone as a word (no continuation piece such as `##ing`, no
    special or `[unused]` token, at least one letter or digit)."""
    vocab = tokenizer.get_vocab()
    allowed = torch.zeros(size, dtype=torch.bool)
    model = getattr(tokenizer, "backend_tokenizer", None)
    kind = type(model.model).__name__ if model is not None else ""
    prefix = getattr(model.model, "continuing_subword_prefix", None) if kind == "WordPiece" else None
    special = set(tokenizer.all_special_ids)
    for token, index in vocab.items():
        if index >= size or index in special or re.fullmatch(r"\[.*\]|<.*>", token) or not _ALNUM.search(token):
            continue
        if kind == "WordPiece":
            ok = not token.startswith(prefix or "##")
        else:  # byte-level BPE (RoBERTa: "Ġword") and SentencePiece ("▁word") mark the start of a word
            ok = token.startswith(("Ġ", "▁"))
        allowed[index] = ok
    return allowed


def _match_case(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


class _MaskPlan(NamedTuple):
    index: int
    text: str
    ids: list[int]  # the text's token ids with each chosen word as one mask token
    masks: list[int]  # where in `ids` the mask tokens are (a literal "[MASK]" in the text is not one of them)
    spans: list[tuple[int, int]]  # the chosen words' character spans, in text order
    words: list[str]  # the chosen words
    own_tokens: list[int]  # per chosen word, its token id when it is one piece (else -1)
    rng: np.random.Generator


def _mask_plan(text, encoded, i, tokenizer, seed, low, high, max_length) -> _MaskPlan | None:
    """Which words of the `i`-th text are masked (see `mlm_replace`), drawn from `(seed, i)`."""
    rng = np.random.default_rng([seed, i])
    ids = encoded["input_ids"][i]
    words: dict[int, list[int]] = {}  # word index -> its token positions
    for position, word in enumerate(encoded.word_ids(i)):
        if word is not None:
            words.setdefault(word, []).append(position)
    if len(ids) >= max_length and words:  # truncated: the last word may be cut, so it is not replaced
        words.pop(max(words))
    offsets = encoded["offset_mapping"][i]
    spans = {w: (offsets[p[0]][0], offsets[p[-1]][1]) for w, p in words.items()}
    blocked = [m.span() for m in _NOT_MASKED.finditer(text)]
    maskable = [
        w
        for w, (start, end) in spans.items()
        if _ALNUM.search(text[start:end])
        and not any(s < end and start < e for s, e in blocked)
        # a piece of a contraction ("don't", "year's") is no word of its own
        and text[start - 1 : start] not in _APOSTROPHES
        and text[end : end + 1] not in _APOSTROPHES
    ]
    if not maskable:
        return None
    share = float(rng.uniform(low, high)) if high > low else low
    count = min(max(1, round(share * len(maskable))), len(maskable))
    chosen = set(rng.choice(maskable, size=count, replace=False).tolist())
    first = {positions[0]: w for w, positions in words.items() if w in chosen}
    rest = {p for w in chosen for p in words[w][1:]}
    new_ids, masked, masks = [], [], []
    for position, token in enumerate(ids):
        if position in first:
            masks.append(len(new_ids))
            new_ids.append(tokenizer.mask_token_id)
            masked.append(first[position])
        elif position not in rest:
            new_ids.append(token)
    chosen_spans = [spans[w] for w in masked]
    own = [ids[words[w][0]] if len(words[w]) == 1 else -1 for w in masked]
    return _MaskPlan(i, text, new_ids, masks, chosen_spans, [text[s:e] for s, e in chosen_spans], own, rng)


@torch.inference_mode()
def mlm_replace(
    texts: Sequence[str],
    mlm_model: PreTrainedModel,
    tokenizer,
    *,
    seed: int = 42,
    mask_probability: float | tuple[float, float] = (0.15, 0.3),
    top_k: int = 20,
    max_length: int = 128,
    batch_size: int = 64,
) -> list[Replacement | None]:
    """
    Replace some whole words of each text with words a masked LM predicts in their place.

    Per text, a share of its words drawn from `mask_probability` (a float, or a range sampled per text) is chosen
    (at least one; only words with a letter or digit outside links and @mentions, within the first `max_length`
    tokens); each becomes one mask token, and all of a text's masks are predicted at once. Each is replaced by a word
    sampled from the `top_k` most likely whole-word tokens (by their probabilities), never the masked word itself, its
    capitalisation matched to the masked word. The rest of the text is kept character for character.

    Deterministic: the words masked and the words sampled for the text at position `i` depend on `(seed, i)` and the
    model alone (not on the batch it is in).

    Args:
        texts: the texts.
        mlm_model: a masked LM with a *trained* head (see [`hfkd.adaptation.load_masked_lm`]).
        tokenizer: its fast tokenizer (word boundaries and character offsets come from it).
        seed: the seed.
        mask_probability: the share of words masked, e.g. `0.2`, or a `(low, high)` range.
        top_k: how many of the most likely words are sampled from.
        max_length: tokens per text given to the model.
        batch_size: texts per forward pass.

    Returns:
        `list[Replacement | None]`: per text, the new text and the character spans of the input that were replaced;
        `None` for a text with no word to mask.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            "mlm_replace needs a fast tokenizer (word boundaries and offsets); load it with use_fast=True."
        )
    if tokenizer.mask_token_id is None:
        raise ValueError("mlm_replace needs a tokenizer with a mask token.")
    if isinstance(mask_probability, (int, float)):
        mask_probability = (float(mask_probability), float(mask_probability))
    low, high = mask_probability
    if not 0 < low <= high <= 1:
        raise ValueError(f"mask_probability must be in (0, 1] (or a range low <= high in it); got {mask_probability}.")
    device = next(mlm_model.parameters()).device
    vocab_size = mlm_model.get_output_embeddings().weight.shape[0]
    allowed = _word_start_tokens(tokenizer, vocab_size).to(device)
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, return_offsets_mapping=True)
    plans = [_mask_plan(text, encoded, i, tokenizer, seed, low, high, max_length) for i, text in enumerate(texts)]

    results: list[Replacement | None] = [None] * len(texts)
    order = sorted((i for i, plan in enumerate(plans) if plan is not None), key=lambda i: len(plans[i].ids))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    training = mlm_model.training
    mlm_model.eval()
    for start in logging.tqdm(range(0, len(order), batch_size), desc="mlm_replace", leave=False):
        batch = [plans[i] for i in order[start : start + batch_size]]
        width = max(len(plan.ids) for plan in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        positions = torch.zeros((len(batch), width), dtype=torch.bool)
        for row, plan in enumerate(batch):
            input_ids[row, : len(plan.ids)] = torch.tensor(plan.ids)
            attention[row, : len(plan.ids)] = 1
            positions[row, plan.masks] = True
        positions = positions.to(device)
        inputs = {"input_ids": input_ids.to(device), "attention_mask": attention.to(device)}
        logits = masked_logits(mlm_model, inputs, positions).float()  # one row per mask, texts in batch order
        logits[:, ~allowed] = -torch.inf
        never = [(row, token) for row, token in enumerate(t for plan in batch for t in plan.own_tokens) if token >= 0]
        if never:  # a masked one-piece word is never predicted back
            rows, tokens = zip(*never, strict=True)
            logits[list(rows), list(tokens)] = -torch.inf
        top = torch.topk(logits, k=min(top_k, int(allowed.sum())), dim=-1)
        probabilities = torch.softmax(top.values, dim=-1).cpu().numpy().astype(np.float64)
        candidates = top.indices.cpu().numpy()
        row = 0
        for plan in batch:
            text, pieces, cursor = plan.text, [], 0
            for (span_start, span_end), original in zip(plan.spans, plan.words, strict=True):
                p = probabilities[row] / probabilities[row].sum()
                token = int(candidates[row][plan.rng.choice(len(p), p=p)])
                word = tokenizer.convert_tokens_to_string([tokenizer.convert_ids_to_tokens(token)]).strip()
                pieces += [text[cursor:span_start], _match_case(word, original)]
                cursor = span_end
                row += 1
            pieces.append(text[cursor:])
            results[plan.index] = Replacement("".join(pieces), tuple(plan.spans))
    mlm_model.train(training)
    return results


def _resolve_mlm(mlm_model, tokenizer, methods: tuple[str, ...]) -> tuple[Any, Any, tuple[str, ...]]:
    if "mlm_replace" not in methods:
        return None, None, methods
    if mlm_model is None:
        rest = tuple(m for m in methods if m != "mlm_replace")
        if not rest:
            raise ValueError(
                "methods=('mlm_replace',) needs mlm_model: a masked LM with a trained head, e.g. the folder "
                "hfkd.adaptation.adapt_encoder wrote. Pass mlm_model=<that folder>, or choose other methods."
            )
        logger.warning(
            f"mlm_replace is skipped: no mlm_model was given (an untrained masked-LM head would write noise); using "
            f"{list(rest)}. Pass mlm_model=<folder from hfkd.adaptation.adapt_encoder>, or methods={rest} to silence "
            "this."
        )
        return None, None, rest
    if isinstance(mlm_model, str):
        mlm_model, loaded_tokenizer = load_masked_lm(mlm_model)
        tokenizer = tokenizer or loaded_tokenizer
    if tokenizer is None:
        raise ValueError("mlm_model was given as a model, so its tokenizer must be given too (tokenizer=...).")
    return mlm_model, tokenizer, methods


def augment(
    texts: Sequence[str],
    factor: float,
    *,
    methods: Sequence[str] = METHODS,
    mlm_model: PreTrainedModel | str | None = None,
    tokenizer=None,
    seed: int = 42,
    mask_probability: float | tuple[float, float] = (0.15, 0.3),
    top_k: int = 20,
    max_length: int = 128,
    batch_size: int = 64,
) -> list[Augmentation]:
    """
    About `factor` augmented texts per input text (see the module docstring), with their source and method.

    Each input text gets `floor(factor)` augmented texts, and a seeded random `factor - floor(factor)` share of the
    texts one more; the `k`-th of a text uses the method `k` steps after a seeded random first one in `methods`. A
    result that is no new text (`None`, or a duplicate of an input or an earlier result by `dedup_key`) is replaced
    by the next method's, up to one try per method.

    Args:
        texts: the pool of input texts (one domain).
        factor: augmented texts per input text (>= 0; a fraction is allowed).
        methods: any of `"mlm_replace"`, `"span_drop"`, `"sentence_mix"`.
        mlm_model: for `mlm_replace`: a masked LM with a trained head, or a folder (an adapted folder of
            [`hfkd.adaptation.adapt_encoder`], or a masked-LM checkpoint). Without it `mlm_replace` is skipped with a
            warning.
        tokenizer: the masked LM's tokenizer (loaded with it when `mlm_model` is a folder).
        seed: makes the result deterministic.
        mask_probability, top_k, max_length, batch_size: see [`mlm_replace`].

    Returns:
        `list[Augmentation]`: in the order of their source texts, then of their turn.
    """
    methods = check_methods(methods)
    if not (isinstance(factor, (int, float)) and factor >= 0 and math.isfinite(factor)):
        raise ValueError(f"factor must be a number >= 0 (augmented texts per input text); got {factor!r}.")
    mlm_model, tokenizer, methods = _resolve_mlm(mlm_model, tokenizer, methods)
    texts = [str(t) for t in texts]
    n = len(texts)
    if n == 0 or factor == 0:
        return []
    rng = np.random.default_rng(seed)
    whole, extra = int(factor), round((factor - int(factor)) * n)
    turns = np.full(n, whole)
    turns[rng.permutation(n)[:extra]] += 1
    first = rng.integers(0, len(methods), size=n)
    # jobs in the order of their source text, then of their turn; each tries its methods in turn
    jobs = [(i, k) for i in range(n) for k in range(int(turns[i]))]
    order = [[methods[(int(first[i]) + k + t) % len(methods)] for t in range(len(methods))] for i, k in jobs]
    seen = {dedup_key(t) for t in texts}
    accepted: dict[int, Augmentation] = {}
    pending = list(range(len(jobs)))
    for attempt in range(len(methods)):
        made: dict[int, str | None] = {}
        wanted = [j for j in pending if order[j][attempt] == "mlm_replace"]
        if wanted:
            replaced = mlm_replace(
                [texts[jobs[j][0]] for j in wanted],
                mlm_model,
                tokenizer,
                seed=seed + attempt,
                mask_probability=mask_probability,
                top_k=top_k,
                max_length=max_length,
                batch_size=batch_size,
            )
            made |= {j: (r.text if r is not None else None) for j, r in zip(wanted, replaced, strict=True)}
        for j in pending:
            i, k = jobs[j]
            method = order[j][attempt]
            job_rng = np.random.default_rng([seed, i, k, attempt])
            if method == "span_drop":
                made[j] = span_drop(texts[i], job_rng)
            elif method == "sentence_mix":
                made[j] = _mix_with_partner(texts, i, job_rng)
        failed = []
        for j in pending:  # in job order, so which duplicate is kept does not depend on the methods' order
            text = made.get(j)
            key = dedup_key(text) if text else None
            if key is None or not key or key in seen:
                failed.append(j)
                continue
            seen.add(key)
            accepted[j] = Augmentation(text, jobs[j][0], order[j][attempt])
        pending = failed
        if not pending:
            break
    if pending:
        logger.info(f"{len(pending)} of {len(jobs)} augmentations made no new text with any of {list(methods)}.")
    return [accepted[j] for j in sorted(accepted)]


def _mix_with_partner(texts: list[str], i: int, rng: np.random.Generator, tries: int = 5) -> str | None:
    if len(texts) < 2:
        return None
    own = dedup_key(texts[i])
    for _ in range(tries):
        j = int(rng.integers(0, len(texts) - 1))
        j += j >= i  # any text but the i-th
        if dedup_key(texts[j]) != own:
            return sentence_mix(texts[i], texts[j], rng)
    return None


def augment_texts(texts: Sequence[str], factor: float, **kwargs: Any) -> list[str]:
    """
    About `factor` new texts per text of `texts`, offline and deterministic for `seed` (see [`augment`] for the
    arguments: `methods`, `mlm_model`, `tokenizer`, `seed`, `mask_probability`, `top_k`, `max_length`,
    `batch_size`). None equals an input text or another output.

    Example:

    ```python
    >>> from hfkd.augment import augment_texts
    >>> augment_texts(["the flight was late. the crew was great.", "my phone is fine"], 2,
    ...               methods=("span_drop", "sentence_mix"))  # doctest: +SKIP
    ```
    """
    return [a.text for a in augment(texts, factor, **kwargs)]


def augment_dataset(
    dataset: Dataset,
    factor: float,
    *,
    text_column: str = "text",
    label_column: str = "label",
    with_provenance: bool = False,
    **kwargs: Any,
) -> Dataset:
    """
    The augmented rows of a dataset, to be concatenated with it: `text_column` and `label_column` (`IGNORE_INDEX`,
    int64: no label, so these rows get the teacher's soft targets only); with `with_provenance`, also `augmented_from`
    (the index of the source row) and `augmentation` (the method). See [`augment`] for `kwargs`.
    """
    if text_column not in dataset.column_names:
        raise ValueError(
            f"The dataset has no column {text_column!r} (columns: {dataset.column_names}); pass text_column."
        )
    made = augment(dataset[text_column], factor, **kwargs)
    columns: dict[str, list] = {text_column: [a.text for a in made], label_column: [IGNORE_INDEX] * len(made)}
    if with_provenance:
        columns |= {"augmented_from": [a.source for a in made], "augmentation": [a.method for a in made]}
    features = {text_column: Value("string"), label_column: Value("int64")}
    if with_provenance:
        features |= {"augmented_from": Value("int64"), "augmentation": Value("string")}
    return Dataset.from_dict(columns, features=Features(features))
