"""Texts longer than `max_length`: which word pieces a truncated input keeps, and windows over the whole text.

Every place that tokenises text for a model (training splits, the adaptive student's unlabeled rows, the
teacher-logit cache, evaluation) goes through [`tokenize_texts`] or, for `long_text="chunk"`, [`tokenize_windows`],
so the options cannot diverge between them. [`LongTextOptions`] holds the options (`DataArguments.long_text_options`
builds it from a config):

- `truncation`: which `max_length - <special tokens>` word pieces of a long text one input keeps: `head` (the first,
  the tokenizer's own truncation and hfkd's behaviour before this option), `tail` (the last) or `head_tail` (the first
  `head_tokens` and the last ones; Sun et al., "How to Fine-Tune BERT for Text Classification?", CCL 2019, found
  128 + 382 best at 512). `[CLS]`/`[SEP]` are kept; `token_type_ids` and `attention_mask` are cut alike.
- `long_text`: `truncate` (one input per text, as above) or `chunk`: the text is cut into windows of `max_length`
  tokens that share at least `chunk_overlap` word pieces, at most `max_chunks` of them, and the model's logits on the
  windows are averaged into one row ([`average_windows`]). Used by prediction (evaluation) and by the teacher-logit
  cache; a student is always trained on one truncated input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import BatchEncoding

from ..arguments import check_choice, check_range

TRUNCATIONS: tuple[str, ...] = ("head", "tail", "head_tail")
LONG_TEXT_MODES: tuple[str, ...] = ("truncate", "chunk")
DEFAULT_MAX_CHUNKS = 8
DEFAULT_CHUNK_OVERLAP = 0
WINDOW_ROW = "row"
"""The column of [`tokenize_windows`]' output that holds, per window, the index of its text."""


@dataclass(frozen=True)
class LongTextOptions:
    """
    How a text longer than `max_length` is fed to a model (see the module docstring). The defaults are hfkd's
    behaviour before these options: the first `max_length` tokens, one input per text.

    Args:
        truncation (`str`, *optional*, defaults to `"head"`): `head`, `tail` or `head_tail`.
        head_tokens (`int`, *optional*): with `head_tail`, the word pieces kept from the start; by default a quarter of
            the content length (`max_length` minus the special tokens), rounded: 32 at 128, 128 at 512. The rest of
            the content length is taken from the end.
        long_text (`str`, *optional*, defaults to `"truncate"`): `truncate` or `chunk` (windows, logits averaged).
        chunk_overlap (`int`, *optional*, defaults to 0): with `chunk`, the least number of word pieces consecutive
            windows share (the windows are spread evenly, all `max_length` long, so they often share more).
        max_chunks (`int`, *optional*, defaults to 8): with `chunk`, at most this many windows per text (cost grows
            with it); a longer text gets `max_chunks` windows spread evenly from its start to its end (the first and
            the last always among them, gaps between them).
    """

    truncation: str = "head"
    head_tokens: int | None = None
    long_text: str = "truncate"
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP
    max_chunks: int = DEFAULT_MAX_CHUNKS

    def __post_init__(self):
        check_choice("truncation", self.truncation, TRUNCATIONS)
        check_choice("long_text", self.long_text, LONG_TEXT_MODES)
        check_range("head_tokens", self.head_tokens, 0)
        check_range("chunk_overlap", self.chunk_overlap, 0)
        check_range("max_chunks", self.max_chunks, 1)

    @property
    def chunked(self) -> bool:
        return self.long_text == "chunk"

    def input_key(self) -> dict[str, Any]:
        """What one truncated input depends on, when it is not the default (`{}` for `head`, so keys made before
        these options stay the same)."""
        if self.truncation == "head":
            return {}
        key: dict[str, Any] = {"truncation": self.truncation}
        if self.truncation == "head_tail" and self.head_tokens is not None:
            key["head_tokens"] = self.head_tokens
        return key

    def window_key(self) -> dict[str, Any]:
        """What the windows of `long_text="chunk"` depend on (`{}` for `truncate`)."""
        if not self.chunked:
            return {}
        return {"long_text": "chunk", "chunk_overlap": self.chunk_overlap, "max_chunks": self.max_chunks}

    def prediction_key(self) -> dict[str, Any]:
        """What a model's logits on a text depend on besides the model and `max_length`: the windows with `chunk`,
        else the truncation (`{}` for the defaults)."""
        return self.window_key() if self.chunked else self.input_key()

    def key(self) -> dict[str, Any]:
        """Every option that is not the default (`{}` for the defaults)."""
        return self.input_key() | self.window_key()

    def head_length(self, budget: int) -> int:
        """The word pieces `head_tail` keeps from the start, of a content length of `budget`."""
        if self.head_tokens is None:
            return (budget + 2) // 4  # a quarter, rounded half up: 32 of 126, 128 of 510 (Sun et al.)
        if self.head_tokens > budget:
            raise ValueError(
                f"head_tokens={self.head_tokens} is more than the {budget} word pieces an input holds besides its "
                f"special tokens (max_length minus them); set head_tokens to at most {budget}, or unset it (a "
                "quarter)."
            )
        return self.head_tokens


DEFAULT_OPTIONS = LongTextOptions()


def special_token_layout(tokenizer) -> tuple[int, int]:
    """How many special tokens the tokenizer puts before and after the word pieces of one text (BERT: 1 and 1)."""
    for probe in ("a", "x", "1", "hello"):
        bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
        full = tokenizer(probe)["input_ids"]
        if not bare:  # dropped by this tokenizer: try another word
            continue
        for start in range(len(full) - len(bare) + 1):
            if full[start : start + len(bare)] == bare:
                return start, len(full) - start - len(bare)
    raise ValueError(
        f"Cannot tell where {type(tokenizer).__name__} puts its special tokens (it encodes {probe!r} as {full}, "
        f"{bare} without them); use truncation: head and long_text: truncate with this tokenizer."
    )


def content_budget(tokenizer, max_length: int) -> tuple[int, int, int]:
    """`(prefix, suffix, budget)`: the special tokens before and after the content, and the word pieces of content
    an input of `max_length` tokens holds."""
    prefix, suffix = special_token_layout(tokenizer)
    budget = max_length - prefix - suffix
    if budget < 1:
        raise ValueError(
            f"max_length={max_length} leaves no room for text besides the {prefix + suffix} special tokens; set "
            f"max_length to at least {prefix + suffix + 1}."
        )
    return prefix, suffix, budget


def _encode_whole(tokenizer, texts: Sequence[str]) -> BatchEncoding:
    # verbose=False: a text longer than the model's limit is expected here (it is cut below), not worth a warning
    return tokenizer(list(texts), truncation=False, verbose=False)


def _select(encoded: BatchEncoding, i: int, positions) -> dict[str, list]:
    return {key: [values[i][p] for p in positions] for key, values in encoded.items()}


def tokenize_texts(
    tokenizer, texts: Sequence[str], max_length: int, options: LongTextOptions | None = None
) -> BatchEncoding:
    """
    One input of at most `max_length` tokens per text, as `options.truncation` says (see [`LongTextOptions`]).

    With `head` (the default) this is exactly `tokenizer(texts, truncation=True, max_length=max_length)`. With `tail`
    or `head_tail` the texts are tokenised whole and the word pieces cut: the special tokens stay, and every column
    the tokenizer returns (`input_ids`, `attention_mask`, `token_type_ids` where it has them) is cut at the same
    positions. A text that fits is not changed.

    Args:
        tokenizer ([`PreTrainedTokenizerBase`]): the model's tokenizer.
        texts (`Sequence[str]`): the texts (single sequences, no pairs).
        max_length (`int`): the most tokens of one input, special tokens included.
        options ([`LongTextOptions`], *optional*): the truncation; the defaults when not given.

    Returns:
        `BatchEncoding`: per column, one list of ids per text (unpadded).
    """
    options = options or DEFAULT_OPTIONS
    if options.truncation == "head":
        return tokenizer(list(texts), truncation=True, max_length=max_length)
    prefix, suffix, budget = content_budget(tokenizer, max_length)
    head = options.head_length(budget) if options.truncation == "head_tail" else 0
    encoded = _encode_whole(tokenizer, texts)
    out: dict[str, list] = {key: [] for key in encoded}
    for i, ids in enumerate(encoded["input_ids"]):
        n = len(ids)
        if n - prefix - suffix <= budget:
            row = {key: list(values[i]) for key, values in encoded.items()}
        else:
            tail = budget - head
            positions = [*range(prefix + head), *range(n - suffix - tail, n)]
            row = _select(encoded, i, positions)
        for key, values in row.items():
            out[key].append(values)
    return BatchEncoding(out)


def window_starts(length: int, width: int, overlap: int = 0, max_chunks: int | None = DEFAULT_MAX_CHUNKS) -> list[int]:
    """
    Where the windows of `width` word pieces over a content of `length` start.

    A content that fits is one window. Otherwise every window is `width` long (a short last window would count as
    much as a full one in the average while seeing little text), the first starts at 0 and the last ends at the end,
    and the fewest windows whose neighbours share at least `overlap` word pieces are spread evenly between: so
    neighbours often share more. With more than `max_chunks` of them, `max_chunks` are spread evenly instead (gaps
    between them; the first and last windows still among them).
    """
    if length <= width:
        return [0]
    if overlap >= width:
        raise ValueError(
            f"chunk_overlap={overlap} must be less than the {width} word pieces a window holds besides its special "
            f"tokens; set chunk_overlap to at most {width - 1}."
        )
    count = math.ceil((length - overlap) / (width - overlap))
    if max_chunks is not None:
        count = min(count, max_chunks)
    if count == 1:
        return [0]
    span = length - width
    return [round(i * span / (count - 1)) for i in range(count)]


def tokenize_windows(
    tokenizer, texts: Sequence[str], max_length: int, options: LongTextOptions | None = None
) -> BatchEncoding:
    """
    The windows of every text (see [`window_starts`]): each `max_length` tokens at most, with the tokenizer's
    special tokens around its word pieces, every column cut alike. A text that fits gets one window, equal to
    [`tokenize_texts`]' input of it with `truncation="head"`.

    Returns:
        `BatchEncoding`: per column, one list of ids per window, texts in order and each text's windows in order;
        the column `WINDOW_ROW` (`"row"`) holds the index of each window's text in `texts`.
    """
    options = options or DEFAULT_OPTIONS
    prefix, suffix, budget = content_budget(tokenizer, max_length)
    encoded = _encode_whole(tokenizer, texts)
    out: dict[str, list] = {key: [] for key in encoded} | {WINDOW_ROW: []}
    for i, ids in enumerate(encoded["input_ids"]):
        n = len(ids)
        length = n - prefix - suffix
        for start in window_starts(length, budget, options.chunk_overlap, options.max_chunks):
            end = min(length, start + budget)
            positions = [*range(prefix), *range(prefix + start, prefix + end), *range(n - suffix, n)]
            for key, values in _select(encoded, i, positions).items():
                out[key].append(values)
            out[WINDOW_ROW].append(i)
    return BatchEncoding(out)


def average_windows(logits: np.ndarray, rows: Sequence[int], num_rows: int) -> np.ndarray:
    """
    One row of logits per text: the mean of the logits of its windows.

    The mean of the *logits*, not of the log-probabilities: after a softmax they are the same distribution (a window's
    log-probabilities are its logits minus a constant per window, and the mean of those constants is one constant per
    class row, which a softmax ignores, at any temperature), the normalised geometric mean of the windows'
    probabilities (a product of experts: a class that one window rules out stays unlikely). The mean of logits keeps
    the scale of the model's own logits, so a text of one window gets exactly the logits of its one input (logit-MSE
    distillation and cached logits of short texts are unchanged); the mean of probabilities would be another,
    flatter distribution.

    Args:
        logits (`np.ndarray`): `(windows, classes)`, in any order.
        rows (`Sequence[int]`): per window, the index of its text.
        num_rows (`int`): the number of texts; each must have at least one window.

    Returns:
        `np.ndarray`: `(num_rows, classes)` float32.
    """
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.int64)
    sums = np.zeros((num_rows, logits.shape[-1]), dtype=np.float64)
    np.add.at(sums, rows, logits)
    counts = np.bincount(rows, minlength=num_rows)
    if (counts == 0).any():
        raise ValueError(f"average_windows: {int((counts == 0).sum())} of {num_rows} texts have no window.")
    return (sums / counts[:, None]).astype(np.float32)
