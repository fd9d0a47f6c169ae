import os

import pytest
import torch
from safetensors.torch import load_file
from transformers import DataCollatorWithPadding, DistilBertConfig, DistilBertForSequenceClassification

from hfkd import DistillationArguments, DistillationTrainer
from hfkd.losses import hard_label_ce, soft_target_kl

from .conftest import LABELS, tiny_bert


def make_args(tmp_path, **overrides):
    kwargs = dict(
        output_dir=str(tmp_path / "out"),
        report_to="none",
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        max_steps=2,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    kwargs.update(overrides)
    return DistillationArguments(**kwargs)


def make_trainer(tmp_path, tokenizer, train, teacher, student=None, **overrides):
    student = student if student is not None else tiny_bert(num_layers=1, seed=1)
    return DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=make_args(tmp_path, **overrides),
        train_dataset=train,
        eval_dataset=train,
        processing_class=tokenizer,
    )


def with_unlabeled(ds, every: int = 3):
    return ds.map(lambda ex, i: {"labels": -100 if i % every == 0 else ex["labels"]}, with_indices=True)


def test_compute_loss_matches_formula(tmp_path, tokenizer, tokenized, tiny_teacher):
    train = with_unlabeled(tokenized(16))
    trainer = make_trainer(tmp_path, tokenizer, train, tiny_teacher, temperature=3.0, alpha=0.25)
    batch = DataCollatorWithPadding(tokenizer)([train[i] for i in range(16)])
    student = trainer.model.eval()
    loss, outputs = trainer.compute_loss(student, dict(batch), return_outputs=True)
    with torch.no_grad():
        s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        t = tiny_teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = 0.25 * soft_target_kl(s, t, 3.0) + 0.75 * hard_label_ce(s, batch["labels"])
    assert torch.allclose(loss, expected, atol=1e-6)
    assert torch.allclose(outputs.logits, s, atol=1e-6)  # evaluation gets the student's logits


def _params_after_one_step(tmp_path, tokenizer, train, teacher, batch_size, accumulation):
    trainer = make_trainer(
        tmp_path / f"bs{batch_size}",
        tokenizer,
        train,
        teacher,
        student=tiny_bert(num_layers=1, seed=1),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        optim="sgd",
        learning_rate=1.0,
        weight_decay=0.0,
        max_grad_norm=0.0,
        lr_scheduler_type="constant",
    )
    trainer.train()
    return {k: v.detach().clone() for k, v in trainer.model.named_parameters()}, trainer


def test_gradient_accumulation_is_exact(tmp_path, tokenizer, tokenized, tiny_teacher):
    # Unlabeled rows are unevenly spread over the two halves, so a mean of per-micro-batch means would differ.
    train = tokenized(32).map(
        lambda ex, i: {"labels": -100 if (i < 16 and i % 2) else ex["labels"]}, with_indices=True
    )
    start = {k: v.clone() for k, v in tiny_bert(num_layers=1, seed=1).named_parameters()}
    one, _ = _params_after_one_step(tmp_path, tokenizer, train, tiny_teacher, 32, 1)
    two, _ = _params_after_one_step(tmp_path, tokenizer, train, tiny_teacher, 16, 2)
    moved = max((one[k] - start[k]).abs().max().item() for k in one)
    assert moved > 1e-3  # the step did something
    for k in one:
        torch.testing.assert_close(one[k], two[k], atol=1e-6, rtol=1e-5, msg=k)


def test_teacher_frozen_and_never_saved(tmp_path, tokenizer, tokenized, tiny_teacher):
    before = {k: v.clone() for k, v in tiny_teacher.state_dict().items()}
    trainer = make_trainer(tmp_path, tokenizer, tokenized(32), tiny_teacher, save_strategy="steps", save_steps=2)
    trainer.train()
    assert not trainer.teacher.training
    assert all(not p.requires_grad and p.grad is None for p in trainer.teacher.parameters())
    for k, v in tiny_teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    trainer.save_model()
    student_keys = set(trainer.model.state_dict())
    for folder in (tmp_path / "out", tmp_path / "out" / "checkpoint-2"):
        saved = load_file(str(folder / "model.safetensors"))
        assert set(saved) <= student_keys
        assert not any("teacher" in name for name in os.listdir(folder))
    # the student has one layer, the teacher two: a saved teacher layer would show up as layer.1
    assert not any(".layer.1." in k for k in saved)


def test_logs_show_loss_parts_and_eval_returns_them(tmp_path, tokenizer, tokenized, tiny_teacher):
    trainer = make_trainer(tmp_path, tokenizer, with_unlabeled(tokenized(32)), tiny_teacher, max_steps=4)
    trainer.train()
    train_logs = [log for log in trainer.state.log_history if "loss" in log]
    assert train_logs and all({"loss_kd", "loss_ce"} <= set(log) for log in train_logs)
    alpha = trainer.args.alpha
    for log in train_logs:  # the logged loss is the mix of its logged parts (same rows, one step per log)
        assert log["loss"] == pytest.approx(alpha * log["loss_kd"] + (1 - alpha) * log["loss_ce"], rel=0.05)
    metrics = trainer.evaluate()
    assert {"eval_loss", "eval_loss_kd", "eval_loss_ce"} <= set(metrics)
    assert metrics["eval_loss_kd"] > 0
    preds = trainer.predict(trainer.eval_dataset)
    assert preds.predictions.shape == (32, len(LABELS))


def test_label_space_mismatch_is_an_error(tmp_path, tokenizer, tokenized, tiny_teacher):
    other = ["bad", "ok", "good"]
    student = tiny_bert(1, id2label=dict(enumerate(other)), label2id={n: i for i, n in enumerate(other)})
    with pytest.raises(ValueError, match=r"label space(.|\n)*teacher: \['negative', 'neutral', 'positive'\]"):
        make_trainer(tmp_path, tokenizer, tokenized(8), tiny_teacher, student=student)


def test_permuted_label_order_is_mapped_by_name(tmp_path, tokenizer, tokenized, tiny_teacher):
    order = ["positive", "negative", "neutral"]
    student = tiny_bert(1, id2label=dict(enumerate(order)), label2id={n: i for i, n in enumerate(order)})
    train = tokenized(8)
    trainer = make_trainer(tmp_path, tokenizer, train, tiny_teacher, student=student)
    batch = DataCollatorWithPadding(tokenizer)(
        [{k: v for k, v in train[i].items() if k != "labels"} for i in range(8)]
    )
    mapped = trainer.teacher_logits(dict(batch))
    raw = tiny_teacher(**batch).logits
    assert torch.allclose(mapped, raw[:, [2, 0, 1]])


def test_vocabulary_mismatch_is_an_error(tmp_path, tokenizer, tokenized, tiny_teacher):
    student = tiny_bert(1, vocab_size=tiny_teacher.config.vocab_size + 7)
    with pytest.raises(ValueError, match="vocab_size: teacher"):
        make_trainer(tmp_path, tokenizer, tokenized(8), tiny_teacher, student=student)


def test_distilbert_student_keeps_teacher_columns(tmp_path, tokenizer, tokenized, tiny_teacher):
    # DistilBERT takes no token_type_ids; remove_unused_columns must still keep what the teacher reads.
    config = DistilBertConfig(
        vocab_size=tiny_teacher.config.vocab_size,
        dim=32,
        n_layers=1,
        n_heads=4,
        hidden_dim=37,
        max_position_embeddings=64,
        id2label=tiny_teacher.config.id2label,
        label2id=tiny_teacher.config.label2id,
    )
    student = DistilBertForSequenceClassification(config)
    train = tokenized(16).add_column("extra", ["x"] * 16)
    trainer = make_trainer(tmp_path, tokenizer, train, tiny_teacher, student=student)
    trainer.train()
    kept = trainer._remove_unused_columns(train).column_names
    assert "token_type_ids" in kept and "extra" not in kept
    assert trainer.state.log_history[-1]["train_loss"] > 0


def test_argument_errors_name_field_range_and_value(tmp_path):
    with pytest.raises(ValueError, match=r"temperature must be in \(0, inf\]; got temperature=0"):
        make_args(tmp_path, temperature=0)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]; got alpha=1.5"):
        make_args(tmp_path, alpha=1.5)
    with pytest.raises(ValueError, match="distillation_loss='nope'"):
        make_args(tmp_path, distillation_loss="nope")


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_unlabeled_rows_get_kl_only(tmp_path, tokenizer, tokenized, tiny_teacher):
    # Domain-adaptive distillation: target text without labels (-100) gets no hard-label loss, only the KL term.
    train = tokenized(12)
    unlabeled = train.map(lambda ex: {"labels": -100})
    trainer = make_trainer(tmp_path, tokenizer, unlabeled, tiny_teacher, alpha=0.5, temperature=2.0)
    student = trainer.model.train()
    collate = DataCollatorWithPadding(tokenizer)

    # a batch of unlabeled rows only: CE is zero, KL is not, and the gradient is exactly alpha * grad(KL)
    batch = dict(collate([unlabeled[i] for i in range(12)]))
    loss = trainer.compute_loss(student, batch)
    loss.backward()
    got = _grads(student)
    student.zero_grad()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        t = tiny_teacher(**inputs).logits
    kl = soft_target_kl(student(**inputs).logits, t, 2.0)
    assert kl > 0 and torch.allclose(loss, 0.5 * kl, atol=1e-6)
    (0.5 * kl).backward()
    want = _grads(student)
    assert set(got) == set(want) and any(g.abs().sum() > 0 for g in got.values())
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-6, rtol=1e-5)
    assert trainer._pop_loss_parts("train") == {"loss_kd": pytest.approx(kl.item(), rel=1e-5)}  # no loss_ce part

    # a mixed batch: the CE term averages over the labelled rows only; the unlabeled rows change only the KL term
    student.zero_grad()
    mixed = dict(collate([train[i] for i in range(6)] + [unlabeled[i] for i in range(6, 12)]))
    trainer.compute_loss(student, mixed).backward()
    got = _grads(student)
    student.zero_grad()
    inputs = {k: mixed[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    logits = student(**inputs).logits
    with torch.no_grad():
        t = tiny_teacher(**inputs).logits
    ce_labelled = hard_label_ce(logits[:6], mixed["labels"][:6])
    (0.5 * soft_target_kl(logits, t, 2.0) + 0.5 * ce_labelled).backward()
    for name, grad in _grads(student).items():
        torch.testing.assert_close(got[name], grad, atol=1e-6, rtol=1e-5)


def test_model_init_makes_a_fresh_student_for_every_train(tmp_path, tokenizer, tokenized, tiny_teacher):
    # hyperparameter search: Trainer calls model_init at the start of every train(); the checks against the teacher
    # run on one student it makes, and the loss parts logged by a train() are its own steps' only
    made = []

    def model_init():
        made.append(tiny_bert(num_layers=1, seed=1))
        return made[-1]

    trainer = DistillationTrainer(
        model_init=model_init,
        teacher_model=tiny_teacher,
        args=make_args(tmp_path),
        train_dataset=tokenized(16),
        processing_class=tokenizer,
    )
    trainer.train()
    first_logs = [log for log in trainer.state.log_history if "loss_kd" in log]
    trainer.train()
    assert len(made) >= 3 and trainer.model is made[-1]  # the probe, Trainer's own, one per train()
    second_logs = [log for log in trainer.state.log_history if "loss_kd" in log]
    assert second_logs[0]["loss_kd"] == pytest.approx(first_logs[0]["loss_kd"], rel=1e-5)  # same start, own sums
    with pytest.raises(ValueError, match="model_init .* does not take intermediate terms"):
        DistillationTrainer(
            model_init=model_init,
            teacher_model=tiny_teacher,
            args=make_args(tmp_path, hidden_weight=1.0),
            train_dataset=tokenized(16),
            processing_class=tokenizer,
        )
    with pytest.raises(ValueError, match="needs `model` .* or `model_init`"):
        DistillationTrainer(teacher_model=tiny_teacher, args=make_args(tmp_path), train_dataset=tokenized(16))
