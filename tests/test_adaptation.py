"""hfkd.adaptation: a masked-LM head on a bare encoder, masked-LM training, and the adapted folder as a classifier."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch
from datasets import Dataset
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertForMaskedLM,
    BertModel,
    DataCollatorForTokenClassification,
    TrainingArguments,
)

from hfkd.adaptation import (
    MLM_SUBFOLDER,
    MaskedLMTrainer,
    adapt_encoder,
    load_masked_lm,
    masked_lm_from_encoder,
    masked_lm_loss,
    masked_logits,
    tokenize_for_mlm,
)
from hfkd.experiment import ExperimentArguments
from hfkd.models import load_classifier

from .conftest import LABELS, launch_ddp, make_tokenizer, run_experiment, tiny_bert_config, tiny_texts

REPEATED = ["the flight was late and the phone was bad"] * 32


def write_encoder(folder) -> str:
    """A bare tiny `BertModel` (no masked-LM head, like all-MiniLM-L6-v2) and its tokenizer."""
    os.makedirs(folder, exist_ok=True)
    make_tokenizer(folder).save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(tiny_bert_config(labels=None)).save_pretrained(folder)
    return str(folder)


def premasked(tokenizer, texts, seed=0) -> Dataset:
    """Rows with fixed masks (so two runs see the same masked tokens): labels -100 except at the masked tokens."""
    g = torch.Generator().manual_seed(seed)
    rows = {"input_ids": [], "labels": []}
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        chosen = (torch.rand(len(ids), generator=g) < 0.4).tolist()
        chosen[1] = True  # at least one
        rows["input_ids"].append([tokenizer.mask_token_id if c else t for t, c in zip(ids, chosen, strict=True)])
        rows["labels"].append([t if c else -100 for t, c in zip(ids, chosen, strict=True)])
    return Dataset.from_dict(rows)


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    """An encoder folder and the folder adapt_encoder made of it (a short run on repeated text)."""
    root = tmp_path_factory.mktemp("adaptation")
    base = write_encoder(root / "base")
    out = adapt_encoder(
        base,
        REPEATED,
        str(root / "adapted"),
        eval_texts=REPEATED[:8],
        max_length=32,
        max_steps=8,
        learning_rate=1e-2,
        warmup_steps=0,
        per_device_train_batch_size=8,
        logging_steps=4,
        cache_dir=str(root / "cache"),
        disable_tqdm=True,
    )
    return base, out


def test_new_head_is_tied_to_the_embeddings_and_its_parameters_are_logged(tmp_path, caplog):
    base = write_encoder(tmp_path / "base")
    with caplog.at_level(logging.INFO, logger="hfkd.adaptation"):
        model = masked_lm_from_encoder(base)
    assert isinstance(model, BertForMaskedLM)
    decoder, embeddings = model.cls.predictions.decoder.weight, model.bert.embeddings.word_embeddings.weight
    assert decoder is embeddings and decoder.data_ptr() == embeddings.data_ptr()
    assert model.cls.predictions.decoder.bias is model.cls.predictions.bias
    assert set(model.hfkd_new_parameters) >= {"cls.predictions.transform.dense.weight", "cls.predictions.bias"}
    assert not any(name.startswith("bert.") for name in model.hfkd_new_parameters)
    assert "has no masked-LM head" in caplog.text and "cls.predictions.transform.dense.weight" in caplog.text
    encoder = BertModel.from_pretrained(base)
    for name, tensor in model.bert.state_dict().items():
        assert torch.equal(tensor, encoder.state_dict()[name]), name


def test_a_checkpoint_with_a_head_keeps_it(tmp_path):
    tokenizer_folder = tmp_path / "mlm"
    tokenizer_folder.mkdir()
    make_tokenizer(tokenizer_folder).save_pretrained(tokenizer_folder)
    torch.manual_seed(1)
    saved = BertForMaskedLM(tiny_bert_config(labels=None))
    torch.nn.init.normal_(saved.cls.predictions.transform.dense.weight)
    saved.save_pretrained(tokenizer_folder)
    model = masked_lm_from_encoder(str(tokenizer_folder))
    assert model.hfkd_new_parameters == []
    assert torch.equal(model.cls.predictions.transform.dense.weight, saved.cls.predictions.transform.dense.weight)
    loaded, tokenizer = load_masked_lm(str(tokenizer_folder))
    assert not loaded.training and tokenizer.mask_token == "[MASK]"


def test_a_bare_encoder_is_refused_where_a_trained_head_is_needed(tmp_path):
    with pytest.raises(ValueError, match="no trained masked-LM head"):
        load_masked_lm(write_encoder(tmp_path / "base"))


def test_head_on_masked_positions_equals_the_full_forward(tmp_path):
    model = masked_lm_from_encoder(write_encoder(tmp_path / "base")).eval()
    tokenizer = make_tokenizer(tmp_path)
    batch = tokenizer(tiny_texts(4), padding=True, return_tensors="pt")
    positions = torch.rand(batch["input_ids"].shape, generator=torch.Generator().manual_seed(0)) < 0.3
    positions &= batch["attention_mask"].bool()
    with torch.no_grad():
        fast = masked_logits(model, dict(batch), positions)
        full = model(**batch).logits[positions]
    assert fast.shape == (int(positions.sum()), model.config.vocab_size)
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=1e-5)


def test_loss_is_the_mean_over_masked_tokens_or_divided_by_num_items(tmp_path):
    model = masked_lm_from_encoder(write_encoder(tmp_path / "base")).eval()
    tokenizer = make_tokenizer(tmp_path)
    rows = premasked(tokenizer, tiny_texts(4))
    batch = DataCollatorForTokenClassification(tokenizer)([rows[i] for i in range(4)])
    args = TrainingArguments(output_dir=str(tmp_path / "t"), report_to="none", use_cpu=True)
    trainer = MaskedLMTrainer(model=model, args=args)
    with torch.no_grad():
        reference = model(**batch).loss
        mean = trainer.compute_loss(model, dict(batch))
        summed = trainer.compute_loss(model, dict(batch), num_items_in_batch=torch.tensor(100))
    masked = int((batch["labels"] != -100).sum())
    torch.testing.assert_close(mean, reference)
    torch.testing.assert_close(summed, reference * masked / 100)


def test_a_new_head_gets_its_own_learning_rate(tmp_path):
    model = masked_lm_from_encoder(write_encoder(tmp_path / "base"))
    args = TrainingArguments(output_dir=str(tmp_path / "t"), learning_rate=1e-5, report_to="none", use_cpu=True)
    trainer = MaskedLMTrainer(
        model=model, args=args, head_parameters=model.hfkd_new_parameters, head_learning_rate=1e-3
    )
    optimizer = trainer.create_optimizer()
    rates = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert len(rates) == len(list(model.parameters()))  # every parameter once
    head = {n for n in model.hfkd_new_parameters if n != "cls.predictions.decoder.bias"}  # a tied alias
    for name, parameter in model.named_parameters():
        assert rates[id(parameter)] == (1e-3 if name in head else 1e-5), name
    # the decoder is the word embeddings: trained at the encoder's rate
    assert rates[id(model.cls.predictions.decoder.weight)] == 1e-5


def test_two_accumulated_batches_of_2_equal_one_batch_of_4(tmp_path):
    tokenizer = make_tokenizer(tmp_path)
    # micro-batches with different numbers of masked tokens: a per-micro-batch mean would weight them wrongly
    rows = premasked(tokenizer, ["good flight", "the plane was very late", "bad", "my phone is not so nice and fine"])
    weights = {}
    for batch_size, accumulation in ((4, 1), (2, 2)):
        torch.manual_seed(0)
        model = BertForMaskedLM(tiny_bert_config(labels=None))
        args = TrainingArguments(
            output_dir=str(tmp_path / f"run{batch_size}"),
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            max_steps=1,
            learning_rate=0.5,
            optim="sgd",
            warmup_steps=0,
            max_grad_norm=0,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            use_cpu=True,
        )
        collator = DataCollatorForTokenClassification(tokenizer)
        MaskedLMTrainer(model=model, args=args, train_dataset=rows, data_collator=collator).train()
        weights[batch_size] = {k: v.clone() for k, v in model.state_dict().items()}
    start = BertForMaskedLM(tiny_bert_config(labels=None)).state_dict()
    for name, tensor in weights[4].items():
        torch.testing.assert_close(weights[2][name], tensor, atol=1e-6, rtol=1e-5, msg=name)
    assert any(not torch.equal(weights[4][n], start[n]) for n in start)  # a step was taken


def test_masked_lm_loss_falls_on_repeated_text(adapted):
    _, out = adapted
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["global_step"] == 8 and metrics["train_rows"] == len(REPEATED)
    assert metrics["eval_mlm_loss_after"] < 0.8 * metrics["eval_mlm_loss_before"], metrics


def test_adapted_encoder_is_what_the_classifier_loads(adapted):
    base, out = adapted
    assert sorted(os.listdir(out)) == sorted(
        ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "metrics.json", MLM_SUBFOLDER]
    )  # no checkpoints folder left behind
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["architectures"] == ["BertModel"]  # no head: load_classifier makes one for the labels
    mlm = AutoModelForMaskedLM.from_pretrained(os.path.join(out, MLM_SUBFOLDER))
    original = BertModel.from_pretrained(base)
    for classifier in (
        AutoModelForSequenceClassification.from_pretrained(out, num_labels=3),
        load_classifier(out, label_names=LABELS),
    ):
        assert classifier.config.id2label[0] in ("LABEL_0", LABELS[0])
        loaded = classifier.bert.state_dict()
        for name, tensor in mlm.bert.state_dict().items():
            assert torch.equal(loaded[name], tensor), name
        # the pooler is not part of the masked LM: the checkpoint's own
        assert torch.equal(loaded["pooler.dense.weight"], original.pooler.dense.weight)
    changed = original.embeddings.word_embeddings.weight != mlm.bert.embeddings.word_embeddings.weight
    assert changed.any(), "training changed nothing"
    assert AutoTokenizer.from_pretrained(out).mask_token == "[MASK]"


def test_saved_masked_lm_reloads_tied(adapted):
    _, out = adapted
    mlm = AutoModelForMaskedLM.from_pretrained(os.path.join(out, MLM_SUBFOLDER))
    weight = mlm.cls.predictions.decoder.weight
    assert weight.data_ptr() == mlm.bert.embeddings.word_embeddings.weight.data_ptr()
    model, tokenizer = load_masked_lm(out)  # the adapted folder: its mlm/ subfolder
    assert model.hfkd_new_parameters == [] and tokenizer.mask_token == "[MASK]"


def test_masked_lm_loss_uses_the_same_masks_each_time(adapted):
    _, out = adapted
    model, tokenizer = load_masked_lm(out)
    texts = tiny_texts(16, seed=3)
    assert masked_lm_loss(model, tokenizer, texts, max_length=32, seed=1) == masked_lm_loss(
        model, tokenizer, texts, max_length=32, seed=1
    )


def test_tokenised_texts_are_cached(tmp_path):
    tokenizer = make_tokenizer(tmp_path)
    first = tokenize_for_mlm(tiny_texts(8), tokenizer, 32, str(tmp_path / "cache"))
    again = tokenize_for_mlm(tiny_texts(8), tokenizer, 32, str(tmp_path / "cache"))
    other = tokenize_for_mlm(tiny_texts(8), tokenizer, 16, str(tmp_path / "cache"))
    assert first.cache_files == again.cache_files and first.cache_files != other.cache_files
    assert "special_tokens_mask" in first.column_names and first[0]["input_ids"] == again[0]["input_ids"]


def test_no_texts_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no training texts"):
        adapt_encoder(write_encoder(tmp_path / "base"), ["", "  "], str(tmp_path / "out"))
    with pytest.raises(ValueError, match="no column 'sentence'"):
        adapt_encoder("unused", Dataset.from_dict({"text": ["a"]}), str(tmp_path / "o"), text_column="sentence")


@pytest.mark.slow
def test_adapt_encoder_under_two_process_cpu_ddp(tmp_path):
    base, out = write_encoder(tmp_path / "base"), str(tmp_path / "out")
    script = tmp_path / "adapt_ddp.py"
    script.write_text(
        "from hfkd.launch import prepare_launch_environment\n"
        "prepare_launch_environment()\n"
        "from hfkd.adaptation import adapt_encoder\n"
        f"adapt_encoder({base!r}, {REPEATED!r}, {out!r}, eval_texts={REPEATED[:8]!r}, max_length=32, max_steps=4,\n"
        f"    learning_rate=1e-2, per_device_train_batch_size=4, gradient_accumulation_steps=2,\n"
        f"    cache_dir={str(tmp_path / 'cache')!r}, disable_tqdm=True)\n"
    )
    launch_ddp(str(script))
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["global_step"] == 4 and metrics["eval_mlm_loss_after"] < metrics["eval_mlm_loss_before"]
    classifier = load_classifier(out, label_names=LABELS)
    mlm = AutoModelForMaskedLM.from_pretrained(os.path.join(out, MLM_SUBFOLDER))
    assert torch.equal(classifier.bert.embeddings.word_embeddings.weight, mlm.bert.embeddings.word_embeddings.weight)


def test_dapt_rows_adapt_the_encoder_then_fine_tune_and_distil_from_it(opt_in_experiment):
    tmp_path, results = opt_in_experiment  # dapt_student asked for (lr 5e-3, 2 epochs); dapt_teacher comes with it
    block = results["blocks"][0]
    stages = block["stages"]
    assert stages["teacher"]["reused"] and stages["adaptive"]["reused"]
    assert list(block["metrics"])[-2:] == ["dapt_teacher", "dapt_student"]
    encoder = stages["dapt_teacher"]["encoder"]
    trained = encoder["train"]
    # the masked LM saw the source text and the adaptive student's unlabeled target text, and learnt from it
    assert trained["train_rows"] == stages["adaptive"]["train"]["train_samples"]  # the adaptive student's rows
    assert trained["unlabeled_rows"] == stages["adaptive"]["train"]["unlabeled_rows"]
    assert trained["eval_mlm_loss_after"] < trained["eval_mlm_loss_before"]
    assert os.path.isdir(os.path.join(encoder["path"], MLM_SUBFOLDER))
    record = json.loads(open(os.path.join(stages["dapt_teacher"]["path"], "hfkd_stage.json")).read())
    assert record["key"]["adapted"] == encoder["hash"] and record["key"]["model"] == "builtin:tiny-bert"
    # the student is cut from and distilled by the adapted teacher, with the adaptive recipe
    student = json.loads(open(os.path.join(stages["dapt_student"]["path"], "hfkd_stage.json")).read())
    assert student["key"]["teacher"] == stages["dapt_teacher"]["hash"] and "unlabeled" in student["key"]
    config = json.loads(open(os.path.join(stages["dapt_student"]["path"], "config.json")).read())
    assert config["hfkd_student"]["teacher"] == stages["dapt_teacher"]["path"]
    # a teacher: in the tables, never the chosen student, no student card; its student is compared with adaptive
    assert results["models"]["dapt_teacher"]["role"] == "teacher"
    assert "dapt_teacher" not in block["chosen"]["candidates"] and block["teachers"] == ["teacher", "dapt_teacher"]
    assert "dapt_teacher" not in results["chosen"]["candidates"]
    assert not os.path.exists(os.path.join(stages["dapt_teacher"]["path"], "README.md"))
    assert os.path.exists(os.path.join(stages["dapt_student"]["path"], "README.md"))
    assert ("dapt_student", "adaptive") in {(c["a"], c["b"]) for c in block["comparisons"]}
    assert "masked LM" in results["models"]["dapt_teacher"]["description"]

    # a ready teacher cannot be adapted: one clear error
    with pytest.raises(ValueError, match="teacher_model_name_or_path gives one ready teacher"):
        run_experiment(
            tmp_path, "--models", "teacher", "dapt_teacher", "--teacher_model_name_or_path", stages["teacher"]["path"]
        )


def test_dapt_student_brings_its_teacher():
    models = ExperimentArguments(models=["teacher", "dapt_student"]).models
    assert models == ["teacher", "dapt_teacher", "dapt_student"]
    with pytest.raises(ValueError, match="dapt_mlm_probability"):
        ExperimentArguments(dapt_mlm_probability=1.5)
