"""Domains for cross-domain text classification: the built-in tweets, local files and folders, Hub datasets; one
label space; near-duplicates removed and never split apart; the source splits a pipeline trains on."""

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
from .source import SourceSplits, domain_label_names, load_data, tokenize_source_splits

__all__ = [
    "EVALUATION_SPLIT",
    "SPLITS",
    "DataArguments",
    "SourceSplits",
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
    "tokenize_domains",
    "tokenize_source_splits",
]
