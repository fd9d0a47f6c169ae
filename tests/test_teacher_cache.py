"""The teacher-logit cache: exact against on-the-fly, provenance (stale detection), corruption, cross-tokenizer."""

import json
import os

import numpy as np
import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import BertTokenizerFast, DataCollatorWithPadding

from hfkd import DistillationArguments, DistillationTrainer, teacher_cache
from hfkd.teacher_cache import CACHE_RECORD, with_teacher_logits
from hfkd.trainer import TEACHER_LOGITS_COLUMN

from .conftest import LABELS, SPECIAL, WORDS, make_tokenizer, sentiment_of, tiny_bert, tiny_texts
from .test_scripts import TINY, load_script


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
    calls = []
    compute = teacher_cache.compute_teacher_logits
    monkeypatch.setattr(teacher_cache, "compute_teacher_logits", lambda *a, **k: calls.append(1) or compute(*a, **k))
    cache = tmp_path / "cache"
    table = raw(12)
    first = cached(table, teacher_dir, cache)
    again = cached(table, teacher_dir, cache)
    assert len(calls) == 1 and len(os.listdir(cache)) == 1  # reused, not recomputed
    np.testing.assert_array_equal(np.array(first[TEACHER_LOGITS_COLUMN]), np.array(again[TEACHER_LOGITS_COLUMN]))

    # another teacher in the same folder (retrained in place): detected, computed anew into a new folder
    weights = load_file(os.path.join(teacher_dir, "model.safetensors"))
    model = tiny_bert(seed=3)
    model.load_state_dict({k: v * 1.1 if k.startswith("classifier") else v for k, v in weights.items()}, strict=False)
    model.save_pretrained(teacher_dir)
    changed = cached(table, teacher_dir, cache)
    assert len(calls) == 2 and len(os.listdir(cache)) == 2
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
    assert len(calls) == 5 and len(os.listdir(cache)) == 5


def test_corrupt_cache_is_an_error_that_names_the_file(tmp_path, teacher_dir):
    cache = tmp_path / "cache"
    table = raw(10)
    cached(table, teacher_dir, cache)
    (folder,) = [cache / f for f in os.listdir(cache)]
    logits = np.array(Dataset.load_from_disk(str(folder))[TEACHER_LOGITS_COLUMN], dtype=np.float32)
    logits[3, 1] = np.nan
    record = json.loads((folder / CACHE_RECORD).read_text())
    teacher_cache._write_cache(str(folder), logits, record)
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
    assert len(os.listdir(tmp_path / "c")) == 3  # train, validation, test of the source domain
    (cache_weights, cache_metrics), (online_weights, online_metrics) = students["cache"], students["online"]
    for name in cache_weights:
        torch.testing.assert_close(cache_weights[name], online_weights[name], atol=1e-4, rtol=0)
    assert cache_metrics["eval_loss_kd"] == pytest.approx(online_metrics["eval_loss_kd"], abs=1e-5)
    assert cache_metrics["test_accuracy"] == online_metrics["test_accuracy"]
