"""Gradient health: layer groups, norms before clipping, the clipping rate, warnings, logs and the plot."""

import json
import logging

import pytest
import torch

from hfkd import DistillationArguments, DistillationTrainer
from hfkd.grad_health import PLOT_FILE, GradientHealth, add_gradient_health, group_of, parameter_groups

from .conftest import run_script, tiny_bert


def test_layer_groups():
    assert group_of("bert.embeddings.word_embeddings.weight") == "embeddings"
    assert group_of("bert.encoder.layer.3.attention.self.query.weight") == "layer_3"
    assert group_of("distilbert.transformer.layer.2.ffn.lin1.weight") == "layer_2"
    assert group_of("bert.pooler.dense.weight") == "head" and group_of("classifier.bias") == "head"
    assert group_of("hfkd_projection.layer_0.weight") == "projection"
    assert list(parameter_groups(tiny_bert(num_layers=2))) == ["embeddings", "layer_0", "layer_1", "head"]


def backward(model):
    ids = torch.randint(5, 30, (4, 7))
    model(input_ids=ids, labels=torch.tensor([0, 1, 2, 0])).loss.backward()


def test_norms_clipping_count_and_warnings(caplog):
    model = tiny_bert(num_layers=2)
    backward(model)
    health = GradientHealth(model, max_grad_norm=1.0, vanishing_threshold=1e-3, patience=2)
    norms = health.group_norms()
    want = torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for n, p in model.named_parameters() if ".layer.1." in n])
    )
    assert norms["layer_1"] == pytest.approx(want.item(), rel=1e-5)
    for total in (0.5, 2.0, torch.tensor(3.0), 0.9):
        health.count_step(total)
    assert health.clip_fraction() == 0.5
    with caplog.at_level(logging.WARNING, logger="hfkd"):
        health.record(10, {"layer_0": 1e-5, "layer_1": 0.3}, 0.3)
        assert "vanishing" not in caplog.text  # once is not yet a pattern
        logs = health.record(20, {"layer_0": 1e-6, "layer_1": float("nan")}, float("nan"))
    assert "layer_0 has stayed below 0.001 for 2 logging steps (step 20): vanishing" in caplog.text
    assert "gradient norm of layer_1 is nan at step 20 (exploding)" in caplog.text
    assert logs["grad_norm/layer_0"] == 1e-6 and logs["grad_clip_fraction"] == 0.5


@pytest.mark.parametrize("max_grad_norm, fraction", [(1e-4, 1.0), (1e6, 0.0)])
def test_trainer_logs_group_norms_before_clipping(tmp_path, tokenizer, tokenized, max_grad_norm, fraction):
    args = DistillationArguments(
        output_dir=str(tmp_path), report_to="none", max_steps=6, logging_steps=2, per_device_train_batch_size=8,
        eval_strategy="no", save_strategy="no", max_grad_norm=max_grad_norm, disable_tqdm=True,
    )  # fmt: skip
    trainer = DistillationTrainer(
        model=tiny_bert(num_layers=1, seed=1), teacher_model=tiny_bert(seed=0), args=args,
        train_dataset=tokenized(48), processing_class=tokenizer,
    )  # fmt: skip
    add_gradient_health(trainer)
    trainer.train()
    logs = [log for log in trainer.state.log_history if "grad_norm/layer_0" in log]
    assert len(logs) == 3
    for log in logs:
        groups = [log[f"grad_norm/{g}"] for g in ("embeddings", "layer_0", "head")]
        # the groups' norms are the pre-clip ones: together they make up the global norm the Trainer logs
        assert sum(v * v for v in groups) ** 0.5 == pytest.approx(log["grad_norm"], rel=1e-3)
        assert log["grad_clip_fraction"] == fraction
    assert (tmp_path / PLOT_FILE).read_bytes()[:4] == b"\x89PNG"


def test_finetune_loop_logs_group_norms_and_draws_the_plot(tmp_path):
    out = tmp_path / "teacher"
    run_script(
        "finetune", "--model_name_or_path", "builtin:tiny-bert", "--output_dir", str(out), "--max_grad_norm", "1e-4"
    )
    history = json.loads((out / "log_history.json").read_text())
    logged = [h for h in history if "grad_norm/head" in h]
    assert logged and all(h["grad_clip_fraction"] == 1.0 for h in logged)
    assert all(h["grad_norm"] > 1e-4 for h in logged)  # before clipping
    assert (out / PLOT_FILE).stat().st_size > 0


def test_plain_trainer_counts_clipping_without_the_trainer_norm(tmp_path, tokenizer, tokenized):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=str(tmp_path), report_to="none", max_steps=5, logging_steps=5, per_device_train_batch_size=8,
        save_strategy="no", max_grad_norm=1e-4, disable_tqdm=True, use_cpu=True,
    )  # fmt: skip
    trainer = Trainer(
        model=tiny_bert(num_layers=1), args=args, train_dataset=tokenized(40), processing_class=tokenizer
    )
    callback = add_gradient_health(trainer)
    assert callback.grad_norm_of is None  # a plain Trainer keeps no pre-clip norm: the callback measures it
    trainer.train()
    assert callback.health.clip_fraction() == 1.0 and callback.health._steps == 5
    assert any("grad_norm/layer_0" in log for log in trainer.state.log_history)
