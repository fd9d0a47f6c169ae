"""Streaming an unlabeled pool: the rows and token ids of the in-memory path, padded batches, a share per process,
a Trainer fed from the stream, and clear errors for bad files."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from datasets import Dataset

from hfkd import DistillationArguments, DistillationTrainer
from hfkd.data import LongTextOptions, stream_batches, stream_texts, tokenize_stream, tokenize_texts
from hfkd.data import streaming as streaming_module
from hfkd.data.reading import read_file

from .conftest import WORDS, load_script, make_tokenizer, tiny_bert, tiny_texts

ROWS = 3000


def pool_texts(n: int = ROWS) -> list[str]:
    texts = tiny_texts(n, seed=7)
    texts[5] = "NA"  # stays text, not a missing value
    texts[6] = " ".join(WORDS * 3)  # longer than max_length: truncated
    return texts


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """The same texts as jsonl, csv and parquet (with a column that is not the text)."""
    folder = tmp_path_factory.mktemp("pool")
    texts = pool_texts()
    with open(folder / "pool.jsonl", "w") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"id": i, "text": text}) + "\n")
    with open(folder / "pool.csv", "w") as f:
        f.write("id,text\n" + "".join(f"{i},{text}\n" for i, text in enumerate(texts)))
    Dataset.from_dict({"id": list(range(len(texts))), "text": texts}).to_parquet(folder / "pool.parquet")
    return {"folder": folder, "texts": texts, "tokenizer": make_tokenizer(folder)}


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
@pytest.mark.parametrize("options", [None, LongTextOptions("head_tail", head_tokens=3)], ids=["head", "head_tail"])
def test_stream_gives_the_rows_and_token_ids_of_the_in_memory_path(pool, suffix, options):
    path, tokenizer = pool["folder"] / f"pool.{suffix}", pool["tokenizer"]
    stream = tokenize_stream(stream_texts(path), tokenizer, 16, long_text_options=options, batch_size=256)
    rows = list(stream)
    in_memory = read_file(path, cache_dir=str(pool["folder"] / "hf_cache")).map(
        lambda batch: tokenize_texts(tokenizer, batch["text"], 16, options), batched=True
    )
    assert len(rows) == in_memory.num_rows == ROWS
    assert set(rows[0]) == {"input_ids", "token_type_ids", "attention_mask", "labels"}  # "id" and "text" dropped
    for column in ("input_ids", "token_type_ids", "attention_mask"):
        assert [row[column] for row in rows] == in_memory[column]
    assert {row["labels"] for row in rows} == {-100}  # unlabeled: the KD term only
    assert max(len(row["input_ids"]) for row in rows) == 16
    assert rows[5]["input_ids"] == tokenizer("NA")["input_ids"]


def test_stream_keeps_the_text_when_asked(pool):
    stream = tokenize_stream(stream_texts(pool["folder"] / "pool.jsonl"), pool["tokenizer"], 16, keep_text=True)
    assert [row["text"] for row in stream.take(4)] == pool["texts"][:4]


def test_stream_batches_are_padded_and_hold_every_row_once(pool):
    stream = tokenize_stream(stream_texts(pool["folder"] / "pool.jsonl"), pool["tokenizer"], 16)
    batches = list(stream_batches(stream, pool["tokenizer"], batch_size=64, pad_to_multiple_of=8))
    assert len(batches) == math.ceil(ROWS / 64)
    assert sum(len(b["input_ids"]) for b in batches) == ROWS
    assert all(b["input_ids"].shape[1] % 8 == 0 and b["input_ids"].shape == b["attention_mask"].shape for b in batches)
    lengths = torch.cat([b["attention_mask"].sum(1) for b in batches]).tolist()
    expected = [len(ids) for ids in tokenize_texts(pool["tokenizer"], pool["texts"], 16)["input_ids"]]
    assert lengths == expected  # in file order, padding masked


def test_each_process_reads_its_own_part_of_the_stream(pool, monkeypatch):
    tokenizer = pool["tokenizer"]
    ids = []
    for rank in (0, 1):  # what split_dataset_by_node gives each of 2 processes
        state = SimpleNamespace(num_processes=2, process_index=rank)
        monkeypatch.setattr(streaming_module, "PartialState", lambda state=state: state)
        stream = tokenize_stream(stream_texts(pool["folder"] / "pool.jsonl"), tokenizer, 16)
        ids.append([row["input_ids"] for batch in stream_batches(stream, tokenizer, 100) for row in _rows(batch)])
    assert len(ids[0]) == len(ids[1]) == ROWS // 2
    expected = tokenize_texts(tokenizer, pool["texts"], 16)["input_ids"]
    assert sorted(ids[0] + ids[1]) == sorted(expected)
    assert ids[0] == expected[0::2] and ids[1] == expected[1::2]  # one file: every other row each


def _rows(batch) -> list[dict]:
    mask = batch["attention_mask"].bool()
    return [{"input_ids": batch["input_ids"][i][mask[i]].tolist()} for i in range(len(mask))]


def test_distillation_trainer_trains_on_a_stream(pool, tmp_path):
    tokenizer = pool["tokenizer"]
    stream = tokenize_stream(stream_texts(pool["folder"] / "pool.csv"), tokenizer, 16)
    student = tiny_bert(seed=1)
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    args = DistillationArguments(
        output_dir=str(tmp_path / "out"), report_to="none", per_device_train_batch_size=32, max_steps=3,
        logging_steps=1, save_strategy="no", eval_strategy="no", learning_rate=1e-2, seed=0,
        dataloader_pin_memory=False,
    )  # fmt: skip
    trainer = DistillationTrainer(
        model=student, teacher_model=tiny_bert(seed=3), args=args, train_dataset=stream, processing_class=tokenizer
    )
    trainer.train()
    logs = [log for log in trainer.state.log_history if "loss_kd" in log]
    assert len(logs) == 3 and all(np.isfinite(log["loss_kd"]) for log in logs)
    assert any(not torch.equal(before[n], p) for n, p in student.named_parameters())


def test_bad_files_are_clear_errors(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"sentence": "good"}) + "\n")
    (tmp_path / "b.csv").write_text("text\ngood\n")
    (tmp_path / "empty.csv").write_text("text\n")
    (tmp_path / "notes.txt").write_text("good\n")
    with pytest.raises(ValueError, match=r"text_column='text' is not a column .*\['sentence'\]\); set `text_column`"):
        stream_texts(tmp_path / "a.jsonl")
    assert next(iter(stream_texts(tmp_path / "a.jsonl", text_column="sentence")))["sentence"] == "good"
    with pytest.raises(ValueError, match="no such file .*missing.jsonl"):
        stream_texts(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match=r"files of format \['.csv', '.jsonl'\] cannot be streamed together"):
        stream_texts([tmp_path / "a.jsonl", tmp_path / "b.csv"])
    with pytest.raises(ValueError, match=r"format \['.txt'\]"):
        stream_texts(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="holds no rows"):
        stream_texts(tmp_path / "empty.csv")
    with pytest.raises(ValueError, match="max_length must be at least 1"):
        tokenize_stream(stream_texts(tmp_path / "b.csv"), make_tokenizer(tmp_path), 0)


def test_several_files_are_several_shards(tmp_path):
    tokenizer = make_tokenizer(tmp_path)
    texts = tiny_texts(40, seed=2)
    for part in range(2):
        Dataset.from_dict({"text": texts[part * 20 : (part + 1) * 20]}).to_json(tmp_path / f"part{part}.jsonl")
    stream = stream_texts([tmp_path / "part0.jsonl", tmp_path / "part1.jsonl"])
    assert stream.num_shards == 2
    assert [row["input_ids"] for row in tokenize_stream(stream, tokenizer, 32)] == tokenizer(texts)["input_ids"]


def test_scale_benchmark_feeds_the_same_rows_on_every_path(tmp_path):
    script = load_script("scale_benchmark")
    tokenizer_dir = tmp_path / "tokenizer"
    tokenizer_dir.mkdir()
    make_tokenizer(tokenizer_dir).save_pretrained(tokenizer_dir)
    argv = ["--num_rows", "300", "--tokenizer", str(tokenizer_dir), "--fresh_processes", "false"]
    argv += ["--file_format", "csv", "--work_dir", str(tmp_path / "work"), "--output_dir", str(tmp_path / "out")]
    (bench,) = script.make_parser().parse_args_into_dataclasses(argv)
    results = script.main(bench)
    assert json.loads((tmp_path / "out" / "scale_benchmark.json").read_text()) == results
    assert list(results["modes"]) == ["memory", "arrow", "stream"] and results["same_rows_and_ids"]
    assert all(m["rows"] == 300 and m["tokens"] > 300 * 4 for m in results["modes"].values())
    assert results["modes"]["arrow"]["disk_mb"] > 0 and results["modes"]["stream"]["disk_mb"] == 0
    with pytest.raises(ValueError, match="modes=\\['disk'\\] is not valid"):
        script.make_parser().parse_args_into_dataclasses(["--modes", "disk"])
