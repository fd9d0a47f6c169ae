"""Hidden-state, attention and embedding distillation: the losses, layer maps, training, projections and resume."""

import json
import math
import os

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from hfkd import DistillationArguments, DistillationTrainer
from hfkd.intermediate import PROJECTION_ATTR, IntermediateTerms, ProjectedStudent
from hfkd.losses import attention_loss, hidden_state_loss, resolve_layer_map
from hfkd.students import student_from_teacher

from .conftest import TINY, launch_ddp, load_script, run_script, tiny_bert
from .conftest import run_experiment as run


def attention_maps(batch, heads, length, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(batch, heads, length, length, generator=g), dim=-1)


MASK = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]])


@pytest.mark.parametrize("kind", ["mse", "cosine"])
def test_hidden_state_loss_zero_for_equal_inputs_and_blind_to_padding(kind):
    s, t = torch.randn(3, 6, 8), torch.randn(3, 6, 8)
    assert hidden_state_loss(t, t, MASK, kind).item() == pytest.approx(0.0, abs=1e-6)
    base = hidden_state_loss(s, t, MASK, kind, reduction="none")
    assert base.shape == (3,) and (base > 0).all()
    s2, t2 = s.clone(), t.clone()
    s2[MASK == 0] = 100.0  # padded positions changed on both sides
    t2[MASK == 0] = -7.0
    torch.testing.assert_close(hidden_state_loss(s2, t2, MASK, kind, reduction="none"), base)
    with pytest.raises(ValueError, match="project the student's to the teacher's width"):
        hidden_state_loss(torch.randn(3, 6, 4), t, MASK, kind)


@pytest.mark.parametrize("kind", ["kl", "mse"])
def test_attention_loss_zero_for_equal_maps_and_blind_to_padding(kind):
    s, t = attention_maps(3, 2, 6, 0), attention_maps(3, 2, 6, 1)
    assert attention_loss(t, t, MASK, kind).item() == pytest.approx(0.0, abs=1e-6)
    base = attention_loss(s, t, MASK, kind, reduction="none")
    assert (base > 0).all()
    s2, t2 = s.clone(), t.clone()
    pad = MASK == 0
    s2.permute(0, 2, 1, 3)[pad] = 0.5  # padded queries
    t2.permute(0, 3, 1, 2)[pad] = 0.3  # padded keys
    torch.testing.assert_close(attention_loss(s2, t2, MASK, kind, reduction="none"), base)
    with pytest.raises(ValueError, match="same number of heads"):
        attention_loss(attention_maps(3, 4, 6, 0), t, MASK, kind)


def test_layer_maps_and_their_errors():
    assert resolve_layer_map("uniform", 3, 6) == [(0, 1), (1, 3), (2, 5)]
    assert resolve_layer_map("uniform", 4, 6) == [(0, 1), (1, 2), (2, 4), (3, 5)]  # rounded half up
    assert resolve_layer_map("uniform", 2, 2) == [(0, 0), (1, 1)]
    assert resolve_layer_map("last", 3, 6) == [(2, 5)]
    assert resolve_layer_map("0,3,5", 3, 6) == [(0, 0), (1, 3), (2, 5)]
    assert resolve_layer_map([1, 1], 2, 6) == [(0, 1), (1, 1)]
    with pytest.raises(ValueError, match=r"layer_map='0,3' is not valid for a 3-layer student .* e.g. '1,3,5'"):
        resolve_layer_map("0,3", 3, 6)
    with pytest.raises(ValueError, match=r"teacher layers in \[0, 5\]"):
        resolve_layer_map("0,3,6", 3, 6)
    with pytest.raises(ValueError, match="not valid"):
        resolve_layer_map("middle", 3, 6)
    with pytest.raises(ValueError, match="no deeper than the teacher"):
        resolve_layer_map("uniform", 4, 2)


def test_auto_layer_map_uses_the_recorded_teacher_layers_else_uniform():
    assert resolve_layer_map("auto", 3, 6, [0, 3, 5]) == [(0, 0), (1, 3), (2, 5)]
    assert resolve_layer_map("auto", 3, 6) == resolve_layer_map("uniform", 3, 6) == [(0, 1), (1, 3), (2, 5)]
    assert resolve_layer_map("auto", 3, 6, [0, 3]) == [(0, 1), (1, 3), (2, 5)]  # a record that does not fit
    assert resolve_layer_map("auto", 3, 6, [0, 3, 6]) == [(0, 1), (1, 3), (2, 5)]
    assert resolve_layer_map("uniform", 3, 6, [0, 3, 5]) == [(0, 1), (1, 3), (2, 5)]  # explicit: record ignored
    assert resolve_layer_map("last", 3, 6, [0, 3, 5]) == [(2, 5)]
    assert resolve_layer_map("1,2,3", 3, 6, [0, 3, 5]) == [(0, 1), (1, 2), (2, 3)]
    with pytest.raises(ValueError, match=r"use 'auto', 'uniform', 'last', or 3 .* e.g. '0,3,5'"):
        resolve_layer_map("0,3", 3, 6, [0, 3, 5])  # the example is what 'auto' would pick
    with pytest.raises(ValueError, match=r"layer_map='auto' .* no deeper than the teacher.* e.g. '0,1,1,1'"):
        resolve_layer_map("auto", 4, 2)


def pairs_of(tmp_path, student, teacher, **kwargs):
    args = DistillationArguments(output_dir=str(tmp_path), hidden_weight=1.0, report_to="none", **kwargs)
    return IntermediateTerms(args, student, teacher).pairs


def test_default_layer_map_pairs_a_cut_student_with_the_layers_it_was_cut_from(tmp_path):
    teacher = tiny_bert(num_layers=6, seed=0).eval()
    student = student_from_teacher(teacher, layer_ids=[0, 3, 5])
    assert DistillationArguments(output_dir=str(tmp_path)).layer_map == "auto"
    assert pairs_of(tmp_path, student, teacher) == [(0, 0), (1, 3), (2, 5)]
    assert pairs_of(tmp_path, student, teacher, layer_map="uniform") == [(0, 1), (1, 3), (2, 5)]  # as before
    # the record is part of the config, so a saved student keeps it
    student.save_pretrained(tmp_path / "student")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student")
    assert reloaded.config.hfkd_student["layer_ids"] == [0, 3, 5]
    assert pairs_of(tmp_path, reloaded, teacher) == [(0, 0), (1, 3), (2, 5)]
    # no record, or a record of a teacher of another depth: uniform
    assert pairs_of(tmp_path, tiny_bert(num_layers=3, seed=1), teacher) == [(0, 1), (1, 3), (2, 5)]
    deeper = tiny_bert(num_layers=8, seed=0).eval()
    assert pairs_of(tmp_path, student, deeper) == resolve_layer_map("uniform", 3, 8)


def test_config_refuses_cache_with_intermediate_terms(tmp_path):
    args = DistillationArguments(output_dir=str(tmp_path), hidden_weight=1.0, report_to="none")
    assert args.uses_intermediate_terms and not args.uses_logit_cache  # auto: online
    with pytest.raises(ValueError, match="teacher_logits='cache' cannot serve hidden_weight"):
        DistillationArguments(output_dir=str(tmp_path), attention_weight=1.0, teacher_logits="cache")
    with pytest.raises(ValueError, match="hidden_weight must be in"):
        DistillationArguments(output_dir=str(tmp_path), hidden_weight=-1.0)


def fixed_batch(tokenized, n=8):
    return tokenized(n, seed=5)


def make(tmp_path, tokenizer, train, teacher, student, **kwargs):
    base = dict(
        output_dir=str(tmp_path / "out"), report_to="none", per_device_train_batch_size=8, eval_strategy="no",
        save_strategy="no", logging_steps=1, learning_rate=5e-3, seed=0, alpha=0.5, hidden_weight=1.0,
        attention_weight=1.0, embedding_weight=1.0, disable_tqdm=True,
    )  # fmt: skip
    args = DistillationArguments(**(base | kwargs))
    return DistillationTrainer(
        model=student, teacher_model=teacher, args=args, train_dataset=train, processing_class=tokenizer
    )


def test_every_term_decreases_on_a_fixed_batch_with_a_narrower_student(tmp_path, tokenizer, tokenized):
    teacher = tiny_bert(num_layers=2, seed=0).eval()
    teacher.classifier.weight.data *= 40  # confident soft targets: something for the KD term to learn
    student = tiny_bert(num_layers=1, seed=1, hidden_size=16, intermediate_size=20)  # narrower: projections
    train = fixed_batch(tokenized)
    trainer = make(
        tmp_path, tokenizer, train, teacher, student, max_steps=40, learning_rate=2e-3, alpha=0.9, temperature=1.0
    )
    projection = getattr(student, PROJECTION_ATTR)
    assert set(projection) == {"layer_0", "embeddings"}
    assert projection["layer_0"].weight.shape == (32, 16)  # student width 16 -> teacher width 32
    assert trainer.intermediate.pairs == [(0, 1)]
    trainer.train()
    # training called the student and its projections as one module (what DDP wraps); everything else sees the student
    assert trainer.model is student
    wrapped = trainer.accelerator.unwrap_model(trainer.model_wrapped)
    assert isinstance(wrapped, ProjectedStudent) and wrapped.student is student
    logs = [log for log in trainer.state.log_history if "loss_hidden" in log]
    assert len(logs) == 40
    for term in ("loss_kd", "loss_hidden", "loss_attention", "loss_embedding"):
        first, last = logs[0][term], logs[-1][term]
        assert last < 0.7 * first, (term, first, last)

    trainer.save_model()
    saved = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert not [k for k in saved if PROJECTION_ATTR in k]  # not part of the saved student
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert not hasattr(reloaded, PROJECTION_ATTR) and reloaded.config.hidden_size == 16
    assert hasattr(student, PROJECTION_ATTR)  # and still there for more training


def test_resume_restores_the_projections(tmp_path, tokenizer, tokenized):
    train = tokenized(32, seed=2)

    def run(out, **kwargs):
        teacher = tiny_bert(num_layers=2, seed=0).eval()
        student = tiny_bert(num_layers=1, seed=1, hidden_size=16, intermediate_size=20)
        trainer = make(
            tmp_path / out, tokenizer, train, teacher, student, max_steps=8, save_strategy="steps", save_steps=4,
            save_total_limit=None, attention_weight=0.0, **kwargs,
        )  # fmt: skip
        trainer.train(resume_from_checkpoint=kwargs.get("resume_from_checkpoint"))
        return student

    full = run("full")
    checkpoint = tmp_path / "full" / "out" / "checkpoint-4"
    keys = load_file(str(checkpoint / "model.safetensors"))
    assert any(PROJECTION_ATTR in k for k in keys)  # checkpoints keep them
    resumed = run("resumed", resume_from_checkpoint=str(checkpoint))
    for (name, a), (_, b) in zip(full.named_parameters(), resumed.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)


def test_distill_script_with_intermediate_terms_runs_online(tmp_path, caplog):

    teacher = tmp_path / "teacher"
    run_script("finetune", "--model_name_or_path", "builtin:tiny-bert", "--output_dir", str(teacher))
    out = tmp_path / "student"
    script = load_script("distill")
    argv = ["--config", TINY, "--teacher_model_name_or_path", str(teacher), "--student_num_layers", "1"]
    argv += ["--hidden_weight", "1", "--attention_weight", "1", "--layer_map", "last", "--output_dir", str(out)]
    argv += ["--teacher_logits_cache_dir", str(tmp_path / "cache")]
    argv += ["--max_length", "64", "--per_device_eval_batch_size", "4"]  # eval batches of different lengths
    with caplog.at_level("WARNING", logger="hfkd"):
        metrics = script.main(*script.make_parser().parse_args_and_config(argv))
    assert "runs the teacher online" in caplog.text
    assert not os.path.exists(tmp_path / "cache")  # no logit cache with intermediate terms
    assert metrics["eval_loss_hidden"] > 0 and metrics["eval_loss_attention"] > 0  # each term reported
    assert "eval_loss_embedding" not in metrics  # only the terms that are on
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_hidden_layers == 1


def test_experiment_compares_logits_only_with_intermediate_terms(tmp_path):

    results = run(tmp_path, "--models", "teacher", "distilled", "intermediate", "--intermediate_attention_weight", "2")
    block = results["blocks"][0]
    assert list(block["metrics"]) == ["teacher", "distilled", "intermediate"]
    assert block["stages"]["intermediate"]["path"] != block["stages"]["distilled"]["path"]
    assert "attention (kl, weight 2.0)" in results["models"]["intermediate"]["description"]
    report = (tmp_path / "exp" / "report.md").read_text()
    assert "| intermediate |" in report
    card = (tmp_path / "exp" / "air").glob("intermediate-*/README.md")
    text = next(card).read_text()
    assert "| intermediate-layer terms | hidden (mse) × 1.0, attention (kl) × 2.0; layer map auto |" in text


def narrower_student_of(teacher_dir, folder, **overrides):
    """A 1-layer student with half the teacher's width, the teacher's vocabulary, labels and tokenizer, as a folder."""
    config = AutoConfig.from_pretrained(teacher_dir)
    config.update(dict(num_hidden_layers=1, hidden_size=16, intermediate_size=20) | overrides)
    torch.manual_seed(1)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(teacher_dir).save_pretrained(folder)
    return str(folder)


@pytest.mark.slow
def test_narrower_student_with_projections_trains_under_two_process_ddp(tmp_path):
    # The projections are parameters of the student that used to run outside DDP's forward, which DDP (with
    # find_unused_parameters) rejects on the first backward: "Expected to mark a variable ready only once".

    teacher, out = tmp_path / "teacher", tmp_path / "student"
    run_script("finetune", "--model_name_or_path", "builtin:tiny-bert", "--output_dir", str(teacher))
    student = narrower_student_of(teacher, tmp_path / "narrow")
    launch_ddp(
        "scripts/distill.py", "--config", TINY, "--teacher_model_name_or_path", str(teacher),
        "--student_model_name_or_path", student, "--output_dir", str(out), "--num_train_epochs", "1",
        "--hidden_weight", "1", "--attention_weight", "1", "--embedding_weight", "1", "--teacher_logits", "online",
        "--gradient_accumulation_steps", "2", "--logging_steps", "1",
    )  # fmt: skip
    saved = load_file(str(out / "model.safetensors"))
    assert saved and not [k for k in saved if PROJECTION_ATTR in k]  # the student alone
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.hidden_size == 16 and not hasattr(model, PROJECTION_ATTR)
    # 64 rows / (2 processes x batch 8 x 2 accumulated) = 2 optimizer steps
    checkpoint = out / "checkpoint-2"
    keys = load_file(str(checkpoint / "model.safetensors"))
    assert {k for k in keys if PROJECTION_ATTR in k} == {
        f"{PROJECTION_ATTR}.{name}.{p}" for name in ("layer_0", "embeddings") for p in ("weight", "bias")
    }
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    logs = [log for log in history if "loss" in log]
    assert len(logs) == 2
    for log in logs:
        for term in ("loss", "loss_kd", "loss_hidden", "loss_attention", "loss_embedding"):
            assert math.isfinite(log[term]) and log[term] > 0, (term, log)


def test_a_student_narrowed_from_the_teacher_trains_with_the_hidden_term(tmp_path, tokenizer, tokenized):
    teacher = tiny_bert(num_layers=2, seed=0).eval()
    teacher.classifier.weight.data *= 40  # confident soft targets
    student = student_from_teacher(teacher, num_layers=1, hidden_size=16)  # 2 of 4 heads, FFN 18 of 37
    assert student.config.intermediate_size == 18 and student.config.num_attention_heads == 2
    train = fixed_batch(tokenized)
    trainer = make(
        tmp_path, tokenizer, train, teacher, student, max_steps=15, attention_weight=0.0, alpha=0.9, grad_health=False
    )
    projection = getattr(student, PROJECTION_ATTR)
    kept = student.config.hfkd_student["hidden_dims"]
    for linear in projection.values():  # starts by putting the kept dimensions back in their teacher places
        expected = torch.zeros(32, 16)
        expected[kept, torch.arange(16)] = 1.0
        assert torch.equal(linear.weight, expected) and not linear.bias.any()
    # one step's gradients reach every parameter of the student and of its projections
    trainer.model.train()
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    trainer.compute_loss(trainer._projected_student, batch).backward()
    missing = [n for n, p in student.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == [], missing
    student.zero_grad(set_to_none=True)
    trainer.train()
    logs = [log for log in trainer.state.log_history if "loss_hidden" in log]
    for term in ("loss_kd", "loss_hidden", "loss_embedding"):
        assert logs[-1][term] < 0.8 * logs[0][term], (term, logs[0][term], logs[-1][term])
    trainer.save_model()
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert reloaded.config.hidden_size == 16 and not hasattr(reloaded, PROJECTION_ATTR)
    with pytest.raises(ValueError, match="student_hidden_size below the teacher's keeps fewer heads"):
        make(tmp_path, tokenizer, train, teacher, student_from_teacher(teacher, num_layers=1, hidden_size=16))
