"""`DataArguments`: which domains a command loads and how it tokenises them (every script has them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..arguments import check_range


@dataclass
class DataArguments:
    """Which domains to load and how to tokenise them."""

    dataset: str = field(
        default="tweets",
        metadata={
            "help": "Where the domains come from: 'tweets' (the built-in labelled tweets, needs the 'demo' extra), a "
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
        if self.validation_size + self.test_size >= 1:
            raise ValueError(
                f"validation_size + test_size must be < 1; got {self.validation_size} + {self.test_size}. "
                "Lower one of them so that some rows are left for training."
            )
