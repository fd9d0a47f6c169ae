"""Near-duplicate texts: one normalised key per text, de-duplication by it, and splits assigned by its seeded hash.

Two texts with the same key (`dedup_key`) count as one: of the rows that share a key the first is kept, and none when
their labels disagree (`deduplicate_rows`). Splits are assigned by a seeded SHA-256 hash of the key (`split_key`,
`hash_split`), so a key never straddles two splits.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

# What near-copies of a text differ in (retweets, other people's names, other links); see `dedup_key`.
_RETWEET_PREFIX = re.compile(r"^(?:rt @\w+:?\s*)+")
_URL = re.compile(r"https?:\S*|www\.\S+")  # also links cut short ("http://t.co/...", "http:/")
_MENTION = re.compile(r"@\w+")


def dedup_key(text: str) -> str:
    """
    The normalised text that de-duplication and the split hash use, so that near-copies of a text share one.

    The text is lower-cased, a leading retweet prefix `RT @name:` (also repeated, or without the colon) is cut off,
    every link (`http...`, `www....`) becomes `http`, every @mention `@user`, and whitespace is collapsed.

    Example:

    ```python
    >>> dedup_key("RT @a: RT @b: Great  flight http://t.co/x")
    'great flight http'
    >>> dedup_key("@jetblue great flight https://t.co/y") == dedup_key("@United Great flight http://t.co/z")
    True
    ```
    """
    key = " ".join(str(text).lower().split())
    key = _RETWEET_PREFIX.sub("", key)
    key = _MENTION.sub("@user", _URL.sub("http", key))  # links first: "@" may occur in a link
    return " ".join(key.split())


def deduplicate_rows(keys: Sequence, labels: Sequence) -> tuple[list[int], int, int]:
    """
    Which rows de-duplication keeps: of the rows that share a key, the first; none of them when their labels disagree
    (which one is right is unknown, and any one kept would be taught as the truth).

    Args:
        keys (`Sequence`): per row, its key (e.g. [`dedup_key`] of its text).
        labels (`Sequence`): per row, its label (any hashable value).

    Returns:
        `tuple[list[int], int, int]`: the indices of the kept rows in their order, the number of rows dropped as copies
        of a kept row, and the number of rows dropped because the labels of their key disagree.
    """
    labels_of: dict = {}
    for key, label in zip(keys, labels, strict=True):
        labels_of.setdefault(key, set()).add(label)
    kept, seen, copies, conflicts = [], set(), 0, 0
    for i, key in enumerate(keys):
        if len(labels_of[key]) > 1:
            conflicts += 1
        elif key in seen:
            copies += 1
        else:
            seen.add(key)
            kept.append(i)
    return kept, copies, conflicts


def split_key(text: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the text and seed (sha256, so the same on every machine)."""
    return int(hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()[:12], 16) / 16**12


def hash_split(key: float, validation_size: float, test_size: float, present) -> str:
    """Where a train row goes: the split whose key range holds `key`, unless the source has that split already."""
    target = "test" if key < test_size else "validation" if key < test_size + validation_size else "train"
    return "train" if target in present else target
