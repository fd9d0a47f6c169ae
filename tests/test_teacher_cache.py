"""The teacher-logit cache: exact against on-the-fly, provenance (stale detection), corruption, cross-tokenizer."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import BertTokenizerFast, DataCollatorWithPadding

from hfkd import DistillationArguments, DistillationTrainer, teacher_logits
from hfkd.fingerprints import content_hash
from hfkd.models import load_teacher
from hfkd.teacher_logits import (
    CACHE_RECORD,
    TEACHER_LOGITS_COLUMN,
    autocast_dtype,
    cache_provenance,
    teacher_fingerprint,
    tokenizer_fingerprint,
    with_teacher_logits,
)

from .conftest import (
    LABELS,
    SPECIAL,
    TINY,
    WORDS,
    launch_ddp,
    load_script,
    make_tokenizer,
    sentiment_of,
    tiny_bert,
    tiny_texts,
)


@pytest.fixture
def teacher_dir(tmp_path):
    folder = tmp_path / "teacher"
    tiny_bert(seed=3).save_pretrained(folder)
    make_tokenizer(folder).save_pretrained(folder)
    return str(folder)


def raw(n=24, seed=0) -> Dataset:
    texts = tiny_texts(n, seed)
    return Dataset.from_dict({"text": texts, "label": [sentiment_of(t) for t in texts]})


def tokenized_for(tokenizer, table: Dataset, keep_text: bool) -> Dataset:
    out = table.map(lambda b: tokenizer(b["text"], truncation=True, max_length=32), batched=True)
    out = out.rename_column("label", "labels")
    return out if keep_text else out.remove_columns("text")


def cached(table, teacher_dir, cache_dir, **kwargs):
    return with_teacher_logits(table, teacher_dir, LABELS, max_length=32, cache_dir=str(cache_dir), **kwargs)


def cache_folders(cache) -> list[str]:
    """The cache folders (not the `.locks` folder, nor a hidden temporary one)."""
    return sorted(entry for entry in os.listdir(cache) if not entry.startswith("."))


def count_computes(monkeypatch) -> list:
    calls = []
    compute = teacher_logits.compute_teacher_logits
    monkeypatch.setattr(teacher_logits, "compute_teacher_logits", lambda *a, **k: calls.append(1) or compute(*a, **k))
    return calls


def args(tmp_path, **kwargs):
    base = dict(
        output_dir=str(tmp_path / "out"), report_to="none", per_device_train_batch_size=8, seed=0, eval_strategy="no"
    )
    return DistillationArguments(**(base | kwargs))


def test_cached_loss_and_gradients_equal_online(tmp_path, teacher_dir):
    tokenizer = make_tokenizer(tmp_path)
    teacher = tiny_bert(seed=3).eval()  # the same weights as teacher_dir
    table = tokenized_for(tokenizer, raw(16), keep_text=True)
    with_cache = cached(table, teacher_dir, tmp_path / "cache")
    assert TEACHER_LOGITS_COLUMN in with_cache.column_names and "text" not in with_cache.column_names
    online = table.remove_columns("text")
    collate = DataCollatorWithPadding(tokenizer)
    results = []
    for dataset, teacher_model in ((online, teacher), (with_cache, None)):
        student = tiny_bert(seed=1).train()
        trainer = DistillationTrainer(
            model=student, teacher_model=teacher_model, args=args(tmp_path), train_dataset=dataset
        )
        batch = dict(collate([dataset[i] for i in range(16)]))
        loss = trainer.compute_loss(student, batch)
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in student.named_parameters()}))
        assert (trainer.teacher is None) == (teacher_model is None)
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b, atol=1e-5, rtol=0)
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], atol=1e-5, rtol=0)


def test_cache_is_reused_and_recomputed_when_teacher_tokenizer_or_data_change(tmp_path, teacher_dir, monkeypatch):
    calls = count_computes(monkeypatch)
    cache = tmp_path / "cache"
    table = raw(12)
    first = cached(table, teacher_dir, cache)
    again = cached(table, teacher_dir, cache)
    assert len(calls) == 1 and len(cache_folders(cache)) == 1  # reused, not recomputed
    np.testing.assert_array_equal(np.array(first[TEACHER_LOGITS_COLUMN]), np.array(again[TEACHER_LOGITS_COLUMN]))

    # another teacher in the same folder (retrained in place): detected, computed anew into a new folder
    weights = load_file(os.path.join(teacher_dir, "model.safetensors"))
    model = tiny_bert(seed=3)
    model.load_state_dict({k: v * 1.1 if k.startswith("classifier") else v for k, v in weights.items()}, strict=False)
    model.save_pretrained(teacher_dir)
    changed = cached(table, teacher_dir, cache)
    assert len(calls) == 2 and len(cache_folders(cache)) == 2
    assert not np.allclose(np.array(changed[TEACHER_LOGITS_COLUMN]), np.array(first[TEACHER_LOGITS_COLUMN]))
    # changed data (one text), another max_length, another tokenizer: each recomputed
    cached(
        table.map(lambda row, i: {"text": row["text"] + (" good" if i == 0 else "")}, with_indices=True),
        teacher_dir,
        cache,
    )
    with_teacher_logits(table, teacher_dir, LABELS, max_length=8, cache_dir=str(cache))
    tokenizer = make_tokenizer(tmp_path)
    tokenizer.do_lower_case = False
    tokenizer.backend_tokenizer.normalizer = None
    cached(table, teacher_dir, cache, teacher_tokenizer=tokenizer)
    assert len(calls) == 5 and len(cache_folders(cache)) == 5


def test_corrupt_cache_is_an_error_that_names_the_file(tmp_path, teacher_dir):
    cache = tmp_path / "cache"
    table = raw(10)
    cached(table, teacher_dir, cache)
    (folder,) = [cache / f for f in cache_folders(cache)]
    logits = np.array(Dataset.load_from_disk(str(folder))[TEACHER_LOGITS_COLUMN], dtype=np.float32)
    logits[3, 1] = np.nan
    record = json.loads((folder / CACHE_RECORD).read_text())
    shutil.rmtree(folder)  # the writer never replaces an existing folder
    assert teacher_logits._write_cache(str(folder), logits, record)
    with pytest.raises(ValueError, match=rf"{folder}.* 1 rows with NaN or inf logits; delete"):
        cached(table, teacher_dir, cache)
    (folder / CACHE_RECORD).write_text(json.dumps(record | {"rows": 11}))
    with pytest.raises(ValueError, match=rf"{folder}/{CACHE_RECORD} does not match this run \(rows differ\)"):
        cached(table, teacher_dir, cache)
    (folder / CACHE_RECORD).write_text("{not json")
    with pytest.raises(ValueError, match=rf"{folder}/{CACHE_RECORD} is unreadable"):
        cached(table, teacher_dir, cache)


def test_cross_tokenizer_student_trains_on_cached_logits(tmp_path, teacher_dir):
    # a student with another vocabulary (other ids for the same words): impossible online, fine with the cache
    folder = tmp_path / "student_tok"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(SPECIAL + ["extra"] + WORDS[::-1]) + "\n")
    student_tokenizer = BertTokenizerFast(vocab=str(folder / "vocab.txt"), model_max_length=64)
    student = tiny_bert(seed=1, vocab_size=len(SPECIAL) + 1 + len(WORDS))
    table = tokenized_for(student_tokenizer, raw(32), keep_text=True)
    teacher_tokenizer = make_tokenizer(tmp_path)
    assert student_tokenizer("good")["input_ids"] != teacher_tokenizer("good")["input_ids"]

    with pytest.raises(ValueError, match="do not share a vocabulary"):
        DistillationTrainer(
            model=student,
            teacher_model=tiny_bert(seed=3),
            args=args(tmp_path),
            train_dataset=table.remove_columns("text"),
            processing_class=student_tokenizer,
            teacher_processing_class=teacher_tokenizer,
        )
    sharp = tiny_bert(seed=3)  # a confident teacher, so that there is something to learn
    sharp.classifier.weight.data *= 40
    sharp.save_pretrained(teacher_dir)
    train = cached(table, teacher_dir, tmp_path / "cache")
    trainer = DistillationTrainer(
        model=student,
        teacher_model=None,
        args=args(tmp_path, max_steps=24, learning_rate=5e-3, logging_steps=4, save_strategy="no"),
        train_dataset=train,
        processing_class=student_tokenizer,
    )
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    trainer.train()
    logs = [log for log in trainer.state.log_history if "loss_kd" in log]
    assert len(logs) == 6 and all(np.isfinite(log["loss_kd"]) for log in logs)
    assert logs[-1]["loss_kd"] < logs[0]["loss_kd"]
    assert any(not torch.equal(before[n], p) for n, p in student.named_parameters())


def test_trainer_without_teacher_or_cached_logits_is_a_clear_error(tmp_path):
    tokenizer = make_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="needs `teacher_model`, or a train_dataset with a precomputed"):
        DistillationTrainer(
            model=tiny_bert(),
            teacher_model=None,
            args=args(tmp_path),
            train_dataset=tokenized_for(tokenizer, raw(4), False),
        )


def test_distill_script_cache_and_online_give_the_same_student(tmp_path, teacher_dir):
    script = load_script("distill")
    students = {}
    for mode in ("cache", "online"):
        out = tmp_path / mode
        argv = ["--config", TINY, "--teacher_model_name_or_path", teacher_dir, "--student_num_layers", "1"]
        argv += ["--output_dir", str(out), "--teacher_logits", mode, "--teacher_logits_cache_dir", str(tmp_path / "c")]
        metrics = script.main(*script.make_parser().parse_args_and_config(argv))
        students[mode] = (load_file(str(out / "model.safetensors")), metrics)
    assert len(cache_folders(tmp_path / "c")) == 3  # train, validation, test of the source domain
    (cache_weights, cache_metrics), (online_weights, online_metrics) = students["cache"], students["online"]
    for name in cache_weights:
        torch.testing.assert_close(cache_weights[name], online_weights[name], atol=1e-4, rtol=0)
    assert cache_metrics["eval_loss_kd"] == pytest.approx(online_metrics["eval_loss_kd"], abs=1e-5)
    assert cache_metrics["test_accuracy"] == online_metrics["test_accuracy"]


def test_tokenizer_fingerprint_ignores_earlier_calls_and_leaves_tokenizer_alone(tmp_path, teacher_dir, monkeypatch):
    fresh = make_tokenizer(tmp_path)
    used = make_tokenizer(tmp_path)
    # what tokenising the student's data / evaluating leaves behind in the backend
    used(tiny_texts(4), truncation=True, max_length=5, padding="max_length")
    backend = used.backend_tokenizer
    state = (backend.to_str(), backend.truncation, backend.padding)
    assert backend.truncation is not None and backend.padding is not None
    assert tokenizer_fingerprint(used) == tokenizer_fingerprint(fresh)
    assert (backend.to_str(), backend.truncation, backend.padding) == state  # fingerprinting changed nothing
    used.truncation_side = "left"  # keeps other tokens of a long text: other logits
    assert tokenizer_fingerprint(used) != tokenizer_fingerprint(fresh)
    used.truncation_side = "right"

    # so a run whose tokenizer has been called before (the experiment, scripts/distill.py) finds a fresh run's cache
    calls = count_computes(monkeypatch)
    cache = tmp_path / "cache"
    first = cached(raw(12), teacher_dir, cache, teacher_tokenizer=fresh)
    again = cached(raw(12), teacher_dir, cache, teacher_tokenizer=used)
    assert len(calls) == 1 and len(cache_folders(cache)) == 1
    np.testing.assert_array_equal(np.array(first[TEACHER_LOGITS_COLUMN]), np.array(again[TEACHER_LOGITS_COLUMN]))


def test_the_autocast_dtype_actually_used_is_part_of_the_key(tmp_path):
    assert autocast_dtype("bf16", "cuda") == torch.bfloat16 and autocast_dtype("fp16", "cuda") == torch.float16
    # predict() does not autocast elsewhere, so a bf16 run on a CPU computes (and may share) fp32 logits
    assert autocast_dtype("no", "cuda") is None and autocast_dtype(None, "cuda") is None
    assert autocast_dtype("bf16", "cpu") is None
    tokenizer = make_tokenizer(tmp_path)

    def key(precision, device):
        return cache_provenance(tiny_texts(8), "t", tokenizer, LABELS, 32, autocast=autocast_dtype(precision, device))

    fp32, bf16, fp16, bf16_on_cpu = key("no", "cuda"), key("bf16", "cuda"), key("fp16", "cuda"), key("bf16", "cpu")
    assert fp32["autocast"] == bf16_on_cpu["autocast"] == "no" and bf16["autocast"] == "bfloat16"
    assert len({content_hash(fp32), content_hash(bf16), content_hash(fp16)}) == 3  # three folders
    assert content_hash(bf16_on_cpu) == content_hash(fp32)


def fake_hub_snapshot(hub, repo_id: str, commit: str, model, tokenizer) -> None:
    """The Hub cache's layout (`models--org--name/{refs/main,snapshots/<commit>/}`), `main` pointing at `commit`."""
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    model.save_pretrained(repo / "snapshots" / commit)
    tokenizer.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)


def test_hub_teacher_not_yet_loaded_is_keyed_by_its_resolved_commit(tmp_path, monkeypatch):
    from huggingface_hub import constants

    hub = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    repo_id, old, new = "hfkd-test/teacher", "a" * 40, "b" * 40
    tokenizer = make_tokenizer(tmp_path)
    fake_hub_snapshot(hub, repo_id, old, tiny_bert(seed=3), tokenizer)

    assert teacher_fingerprint(repo_id) == f"{repo_id}@{old}"  # offline: the cache's refs/main
    loaded = load_teacher(repo_id, LABELS)
    assert teacher_fingerprint(repo_id, loaded) == teacher_fingerprint(repo_id)  # loaded or not: the same key

    calls = count_computes(monkeypatch)
    cache = tmp_path / "cache"
    first = with_teacher_logits(raw(12), repo_id, LABELS, max_length=32, cache_dir=str(cache))
    cached_again = with_teacher_logits(raw(12), repo_id, LABELS, max_length=32, cache_dir=str(cache), teacher=loaded)
    assert len(calls) == 1 and len(cache_folders(cache)) == 1
    np.testing.assert_allclose(
        np.array(first[TEACHER_LOGITS_COLUMN]), np.array(cached_again[TEACHER_LOGITS_COLUMN]), atol=1e-6
    )
    # a new commit on `main` (another teacher under the same name): a new folder, computed with the new weights
    fake_hub_snapshot(hub, repo_id, new, tiny_bert(seed=4), tokenizer)
    assert teacher_fingerprint(repo_id) == f"{repo_id}@{new}"
    changed = with_teacher_logits(raw(12), repo_id, LABELS, max_length=32, cache_dir=str(cache))
    assert len(calls) == 2 and len(cache_folders(cache)) == 2
    assert not np.allclose(np.array(changed[TEACHER_LOGITS_COLUMN]), np.array(first[TEACHER_LOGITS_COLUMN]))


def test_writer_keeps_a_folder_another_run_finished_first(tmp_path):
    folder = str(tmp_path / "cache" / "0123456789")
    record = {"format": teacher_logits.CACHE_FORMAT, "rows": 4}
    theirs = np.arange(12, dtype=np.float32).reshape(4, 3)
    teacher_logits._write_cache(folder, theirs, record)
    ours_written = teacher_logits._write_cache(folder, theirs + 1, record)  # already there: success, theirs kept
    kept = np.array(Dataset.load_from_disk(folder)[TEACHER_LOGITS_COLUMN], dtype=np.float32)
    np.testing.assert_array_equal(kept, theirs)
    assert ours_written is False
    assert os.listdir(tmp_path / "cache") == ["0123456789"]  # no temporary folder left behind


# One run of with_teacher_logits in a fresh process: both start it together (a file barrier) and the teacher's pass
# takes a second, so that without a lock both would compute and write the same folder at once.
_CONCURRENT_RUN = """
import json, os, sys, time
import numpy as np
from datasets import Dataset
from hfkd import teacher_logits
from hfkd.teacher_logits import TEACHER_LOGITS_COLUMN

work, teacher_dir, cache, name = sys.argv[1:5]
spec = json.load(open(os.path.join(work, "spec.json")))
compute = teacher_logits.compute_teacher_logits

def slow_compute(*args, **kwargs):
    open(os.path.join(work, f"computed-{name}"), "w").close()
    time.sleep(1.0)
    return compute(*args, **kwargs)

teacher_logits.compute_teacher_logits = slow_compute
open(os.path.join(work, f"ready-{name}"), "w").close()
deadline = time.time() + 60
while sum(f.startswith("ready-") for f in os.listdir(work)) < 2 and time.time() < deadline:
    time.sleep(0.01)
table = Dataset.from_dict({"text": spec["texts"]})
out = teacher_logits.with_teacher_logits(table, teacher_dir, spec["labels"], max_length=32, cache_dir=cache)
np.save(os.path.join(work, f"logits-{name}.npy"), np.array(out[TEACHER_LOGITS_COLUMN], dtype=np.float32))
"""


@pytest.mark.slow
def test_two_runs_filling_the_same_cache_at_once_both_succeed(tmp_path, teacher_dir):
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    (work / "spec.json").write_text(json.dumps({"texts": tiny_texts(20), "labels": LABELS}))
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env |= {"OMP_NUM_THREADS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT_RUN, str(work), teacher_dir, str(cache), name],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("a", "b")
    ]
    for run in runs:
        output, _ = run.communicate(timeout=240)
        assert run.returncode == 0, output
    assert len([f for f in os.listdir(work) if f.startswith("computed-")]) == 1  # one computed, one waited
    np.testing.assert_array_equal(np.load(work / "logits-a.npy"), np.load(work / "logits-b.npy"))
    assert len(cache_folders(cache)) == 1 and set(os.listdir(cache)) == {*cache_folders(cache), ".locks"}
    # and it is the cache a later run in this process finds (the same provenance)
    reused = cached(Dataset.from_dict({"text": tiny_texts(20)}), teacher_dir, cache)
    np.testing.assert_array_equal(np.array(reused[TEACHER_LOGITS_COLUMN]), np.load(work / "logits-a.npy"))


def test_a_failed_pass_leaves_no_cache_behind(tmp_path, teacher_dir, monkeypatch):
    # the teacher's pass dies part-way (a killed process, an OOM): nothing is written that a later run could take for
    # a whole cache, and the lock is free again for the next run, which computes the cache
    def dies(*args, **kwargs):
        raise RuntimeError("killed")

    compute = teacher_logits.compute_teacher_logits
    monkeypatch.setattr(teacher_logits, "compute_teacher_logits", dies)
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="killed"):
        cached(raw(12), teacher_dir, cache)
    assert cache_folders(cache) == [] and set(os.listdir(cache)) <= {".locks"}
    monkeypatch.setattr(teacher_logits, "compute_teacher_logits", compute)
    assert cached(raw(12), teacher_dir, cache).num_rows == 12 and len(cache_folders(cache)) == 1


# One process of a 2-process CPU DDP run: it records the rows it computed, fills a fresh cache (sharded), reads it
# again, and reads a cache that one process wrote before the launch.
_DDP_RUN = """
import json, os, sys
from hfkd.launch import prepare_launch_environment

prepare_launch_environment()
import numpy as np
from accelerate import Accelerator
from datasets import Dataset
from hfkd import teacher_logits
from hfkd.teacher_logits import TEACHER_LOGITS_COLUMN, with_teacher_logits

work, teacher_dir = sys.argv[1:3]
spec = json.load(open(os.path.join(work, "spec.json")))
state = Accelerator().state  # as a training script sets it up first (CPU DDP: gloo)
computed = []
compute = teacher_logits.compute_teacher_logits

def counting(teacher, tokenizer, texts, *args, **kwargs):
    computed.append(list(texts))
    return compute(teacher, tokenizer, texts, *args, **kwargs)

teacher_logits.compute_teacher_logits = counting
table = Dataset.from_dict({"text": spec["texts"]})
for name, cache in (("fresh", "ddp"), ("again", "ddp"), ("single", "single")):
    cache_dir = os.path.join(work, cache)
    dataset = with_teacher_logits(table, teacher_dir, spec["labels"], max_length=32, cache_dir=cache_dir)
    logits = np.array(dataset[TEACHER_LOGITS_COLUMN], dtype=np.float32)
    np.save(os.path.join(work, f"{name}-{state.process_index}.npy"), logits)
with open(os.path.join(work, f"rank-{state.process_index}.json"), "w") as f:
    json.dump({"processes": state.num_processes, "computed": computed}, f)
"""


@pytest.mark.slow
def test_two_processes_each_compute_their_shard_of_the_same_cache(tmp_path, monkeypatch):
    teacher_dir = str(tmp_path / "teacher")  # initializer_range 0.2: logits that differ from text to text
    tiny_bert(seed=3, initializer_range=0.2).save_pretrained(teacher_dir)
    make_tokenizer(teacher_dir).save_pretrained(teacher_dir)
    texts = tiny_texts(37, seed=5)  # an odd number: the shards differ by one row
    work = tmp_path / "work"
    work.mkdir()
    (work / "spec.json").write_text(json.dumps({"texts": texts, "labels": LABELS}))
    table = Dataset.from_dict({"text": texts})
    single = np.array(cached(table, teacher_dir, work / "single")[TEACHER_LOGITS_COLUMN], dtype=np.float32)
    assert np.ptp(single, axis=0).min() > 1e-2  # the rows differ: the comparisons below can fail

    script = tmp_path / "ddp_cache.py"
    script.write_text(_DDP_RUN)
    launch_ddp(str(script), str(work), teacher_dir)

    ranks = [json.loads((work / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["processes"] for r in ranks] == [2, 2]
    # each process computed once, for the fresh cache only: its own contiguous shard; together every row exactly once
    assert [len(r["computed"]) for r in ranks] == [1, 1]
    shards = [r["computed"][0] for r in ranks]
    assert [len(shard) for shard in shards] == [19, 18] and shards[0] + shards[1] == texts
    for rank in (0, 1):
        fresh, again = np.load(work / f"fresh-{rank}.npy"), np.load(work / f"again-{rank}.npy")
        np.testing.assert_allclose(fresh, single, atol=1e-5, rtol=0)  # as one process computes it
        np.testing.assert_array_equal(again, fresh)
        np.testing.assert_array_equal(np.load(work / f"single-{rank}.npy"), single)  # 1 process wrote, 2 read
    # the same key (folder name and record) as one process's, one folder, no shard or temporary folder left behind
    assert cache_folders(work / "ddp") == cache_folders(work / "single") and len(cache_folders(work / "ddp")) == 1
    (folder,) = cache_folders(work / "ddp")
    record = json.loads((work / "ddp" / folder / CACHE_RECORD).read_text())
    assert record == json.loads((work / "single" / folder / CACHE_RECORD).read_text())
    assert set(os.listdir(work / "ddp")) == {folder, ".locks"}
    # 2 processes wrote, 1 reads: reused, not recomputed
    calls = count_computes(monkeypatch)
    reread = cached(table, teacher_dir, work / "ddp")
    assert calls == []
    reread = np.array(reread[TEACHER_LOGITS_COLUMN], dtype=np.float32)
    np.testing.assert_array_equal(reread, np.load(work / "fresh-0.npy"))


# ---- long texts: the options in the key, the teacher reading whole texts --------------------------------------------


def long_texts(n: int = 10) -> list[str]:
    """Texts of 3 to 57 words (one word piece each): most longer than the max_length of 16 used below."""
    return [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(3 + 6 * i)) for i in range(n)]


def test_long_text_options_enter_the_cache_key_only_when_not_the_default(tmp_path):
    from hfkd.data import LongTextOptions

    tokenizer = make_tokenizer(tmp_path)

    def key(options):
        return cache_provenance(tiny_texts(8), "t", tokenizer, LABELS, 32, long_text_options=options)

    default = key(None)
    assert "long_text" not in default and key(LongTextOptions()) == default  # caches made before stay valid
    assert key(LongTextOptions(head_tokens=5, max_chunks=2)) == default  # unused options change nothing
    tail, head_tail = key(LongTextOptions("tail")), key(LongTextOptions("head_tail", head_tokens=4))
    chunk, chunk_2 = key(LongTextOptions(long_text="chunk")), key(LongTextOptions(long_text="chunk", max_chunks=2))
    assert chunk["long_text"] == {"long_text": "chunk", "chunk_overlap": 0, "max_chunks": 8}
    assert len({content_hash(k) for k in (default, tail, head_tail, chunk, chunk_2)}) == 5
    # windows do not depend on the truncation of a single input
    assert key(LongTextOptions("tail", long_text="chunk")) == chunk


def test_chunked_teacher_logits_average_the_windows_of_the_whole_text(tmp_path, monkeypatch):
    from hfkd.data import LongTextOptions
    from hfkd.inference import predict

    teacher_dir = str(tmp_path / "teacher")  # initializer_range 0.2: logits that differ from text to text
    tiny_bert(seed=3, initializer_range=0.2).save_pretrained(teacher_dir)
    make_tokenizer(teacher_dir).save_pretrained(teacher_dir)
    calls = count_computes(monkeypatch)
    cache = tmp_path / "cache"
    table = Dataset.from_dict({"text": long_texts()})
    options = LongTextOptions(long_text="chunk", chunk_overlap=2, max_chunks=3)
    run = dict(max_length=16, cache_dir=str(cache))
    chunked = with_teacher_logits(table, teacher_dir, LABELS, long_text_options=options, **run)
    truncated = with_teacher_logits(table, teacher_dir, LABELS, **run)
    assert len(calls) == 2 and len(cache_folders(cache)) == 2  # one folder each
    teacher, tokenizer = load_teacher(teacher_dir, LABELS), make_tokenizer(tmp_path)
    expected = predict(teacher, tokenizer, table, label_names=LABELS, max_length=16, long_text_options=options)
    chunk_logits, head_logits = np.array(chunked[TEACHER_LOGITS_COLUMN]), np.array(truncated[TEACHER_LOGITS_COLUMN])
    np.testing.assert_allclose(chunk_logits, expected.logits, atol=1e-5)
    np.testing.assert_allclose(chunk_logits[:2], head_logits[:2], atol=1e-5)  # 3 and 9 words: one window
    assert (np.abs(chunk_logits[2:] - head_logits[2:]).max(axis=1) > 1e-2).all()  # longer: the whole text counts
    again = with_teacher_logits(table, teacher_dir, LABELS, long_text_options=options, **run)
    assert len(calls) == 2  # reused
    np.testing.assert_array_equal(np.array(again[TEACHER_LOGITS_COLUMN]), chunk_logits)
