import os

import pytest

from hfkd.data.arguments import DataArguments
from hfkd.distillation_config import DistillationArguments, StudentArguments
from hfkd.parser import HfkdParser, config_to_dict
from hfkd.pipelines.finetune import FinetuneArguments, ModelArguments

from .conftest import ROOT, load_script


def distill_parser():
    return HfkdParser((DataArguments, StudentArguments, DistillationArguments))


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


def test_yaml_sets_defaults_and_flags_override(tmp_path):
    cfg = write(
        tmp_path,
        "temperature: 3.0\nalpha: 0.2\nsource_domains: [airline, apple]\nlearning_rate: 5e-5\n"
        f"output_dir: {tmp_path / 'o'}\nstudent_num_layers: 3\n",
    )
    data, student, args = distill_parser().parse_args_and_config(["--config", cfg, "--temperature", "4"])
    assert args.temperature == 4.0  # the flag wins
    assert args.alpha == 0.2  # the YAML value
    assert args.learning_rate == 5e-5 and isinstance(args.learning_rate, float)  # YAML reads 5e-5 as a string
    assert data.source_domains == ["airline", "apple"]
    assert student.student_num_layers == 3


def test_every_shipped_config_parses(tmp_path):
    import glob

    parsers = {
        "teacher_tweets": HfkdParser((ModelArguments, DataArguments, StudentArguments, FinetuneArguments)),
        "distill_tweets": distill_parser(),
    }
    experiment = load_script("cross_domain").make_parser()
    paths = glob.glob(os.path.join(ROOT, "configs", "*.yaml"))
    assert len(paths) >= 6
    for path in paths:
        name = os.path.basename(path)[:-5]
        parser = experiment if name.startswith("experiment_") else parsers.get(name)
        candidates = [parser] if parser else list(parsers.values())  # tiny.yaml is shared by both scripts
        for p in candidates:
            p.parse_args_and_config(["--config", path, "--output_dir", str(tmp_path / name)])


def test_unknown_yaml_key_is_an_error_with_suggestion(tmp_path):
    cfg = write(tmp_path, "temprature: 3.0\n")
    with pytest.raises(ValueError, match=r"'temprature' \(did you mean 'temperature'"):
        distill_parser().parse_args_and_config(["--config", cfg])


def test_unknown_flag_exits_with_suggestion(tmp_path, capsys):
    with pytest.raises(SystemExit):
        distill_parser().parse_args_and_config(["--temprature", "3", "--output_dir", str(tmp_path)])
    assert "did you mean --temperature" in capsys.readouterr().err


def test_config_must_be_flat_mapping_and_exist(tmp_path):
    with pytest.raises(ValueError, match="flat"):
        distill_parser().parse_args_and_config(["--config", write(tmp_path, "trainer:\n  temperature: 2\n")])
    with pytest.raises(ValueError, match="no such file"):
        distill_parser().parse_args_and_config(["--config", str(tmp_path / "missing.yaml")])
    with pytest.raises(ValueError, match="not valid YAML"):
        distill_parser().parse_args_and_config(["--config", write(tmp_path, "a: [1,\n")])


def test_range_errors_through_the_parser(tmp_path):
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]; got alpha=2.0. Fix:"):
        distill_parser().parse_args_and_config(["--alpha", "2", "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match=r"validation_size \+ test_size must be < 1"):
        DataArguments(validation_size=0.5, test_size=0.5)
    with pytest.raises(ValueError, match="student_architecture='tiny'"):
        StudentArguments(student_architecture="tiny")
    with pytest.raises(ValueError, match="warmup_steps must be an integer"):
        FinetuneArguments(warmup_steps=2.5)


def test_config_to_dict_is_flat_and_serialisable(tmp_path):
    import json

    args = DistillationArguments(output_dir=str(tmp_path), hub_token="hf_secret")
    flat = config_to_dict(DataArguments(), args)
    json.dumps(flat)
    assert flat["temperature"] == 2.0 and flat["dataset"] == "tweets"
    from hfkd.run_files import redact

    assert "hf_secret" not in json.dumps(redact(flat))
