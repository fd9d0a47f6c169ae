"""Domains for cross-domain text classification: the built-in tweets and 20 Newsgroups, local files and folders, Hub
datasets; one label space; near-duplicates removed and never split apart; the source splits a pipeline trains on;
long texts truncated or cut into windows, the same way everywhere."""

from .arguments import DataArguments
from .dedup import dedup_key, deduplicate_rows
from .domains import (
    EVALUATION_SPLIT,
    SPLITS,
    cap_eval_splits,
    concatenate_domains,
    domain_counts,
    evaluation_splits,
    format_domain_counts,
    load_domains,
    tokenize_domains,
)
from .long_text import LongTextOptions, average_windows, tokenize_texts, tokenize_windows
from .newsgroups import NEWSGROUP_DOMAINS, NEWSGROUPS_LABELS
from .source import SourceSplits, domain_label_names, load_data, tokenize_source_splits
from .streaming import stream_batches, stream_texts, tokenize_stream

__all__ = [
    "EVALUATION_SPLIT",
    "NEWSGROUPS_LABELS",
    "NEWSGROUP_DOMAINS",
    "SPLITS",
    "DataArguments",
    "LongTextOptions",
    "SourceSplits",
    "average_windows",
    "cap_eval_splits",
    "concatenate_domains",
    "dedup_key",
    "deduplicate_rows",
    "domain_counts",
    "domain_label_names",
    "evaluation_splits",
    "format_domain_counts",
    "load_data",
    "load_domains",
    "stream_batches",
    "stream_texts",
    "tokenize_domains",
    "tokenize_source_splits",
    "tokenize_stream",
    "tokenize_texts",
    "tokenize_windows",
]
