"""The source-domain splits a pipeline trains on: loaded from `DataArguments`, tokenised, one label space."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from datasets import Dataset, DatasetDict

from .arguments import DataArguments
from .domains import concatenate_domains, load_domains, tokenize_domains
from .long_text import LongTextOptions


@dataclass
class SourceSplits:
    """Tokenised train/validation/test of the source domain(s) and their label names (in id order)."""

    train: Dataset
    validation: Dataset
    test: Dataset
    label_names: list[str]
    domains: list[str]


_SOURCES = object()


def load_data(
    data_args: DataArguments, names: list[str] | None = _SOURCES, cap_eval: bool = True
) -> dict[str, DatasetDict]:
    """Domains of `data_args.dataset`, untokenised, with one shared label space: the configured source domains, or
    the domains `names` (`None`: every domain of the dataset). `cap_eval=False` keeps every validation and test row
    (`max_eval_samples` is then applied per role, see `hfkd.data.evaluation_splits`)."""
    return load_domains(
        data_args.dataset,
        data_args.source_domains if names is _SOURCES else names,
        dataset_config_name=data_args.dataset_config_name,
        text_column=data_args.text_column,
        label_column=data_args.label_column,
        domain_column=data_args.domain_column,
        label_names=data_args.class_names,
        encoding=data_args.encoding,
        validation_size=data_args.validation_size,
        test_size=data_args.test_size,
        split_seed=data_args.split_seed,
        deduplicate=data_args.deduplicate,
        max_train_samples=data_args.max_train_samples,
        max_eval_samples=data_args.max_eval_samples if cap_eval else None,
    )


def domain_label_names(domains: dict[str, DatasetDict]) -> list[str]:
    """The label names (in id order) that every domain shares."""
    return list(next(iter(domains.values()))["train"].features["label"].names)


def tokenize_source_splits(
    domains: dict[str, DatasetDict],
    tokenizer,
    max_length: int,
    main_process_first=None,
    keep_text: bool = False,
    long_text_options: LongTextOptions | None = None,
) -> SourceSplits:
    """Tokenise every domain and concatenate their train/validation/test splits.

    `main_process_first` is a context manager factory (e.g. `accelerator.main_process_first`): under several
    processes the main one tokenises first and writes the `datasets` cache that the others then read. `keep_text`
    keeps the raw `text` column (the teacher-logit cache tokenises it with the teacher's tokenizer).
    `long_text_options` (`DataArguments.long_text_options`) says which word pieces of a long text are kept.
    """
    guard = main_process_first or contextlib.nullcontext
    with guard():
        tokenized = tokenize_domains(
            domains, tokenizer, max_length=max_length, keep_text=keep_text, long_text_options=long_text_options
        )
    names = list(tokenized)
    return SourceSplits(
        train=concatenate_domains(tokenized, names, "train"),
        validation=concatenate_domains(tokenized, names, "validation"),
        test=concatenate_domains(tokenized, names, "test"),
        label_names=domain_label_names(domains),
        domains=names,
    )
