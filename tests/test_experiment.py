"""scripts/cross_domain.py end to end with tiny models on tiny domains: outputs, stage reuse, leave-one-out."""

import json
import logging
import math
import os
import re

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from hfkd.evaluation.report import format_ratio, format_score, render_report
from hfkd.experiment.cross_domain import unlabeled_target_rows
from hfkd.experiment.stages import run_stage

from .conftest import DOMAINS, LABELS, ROOT, launch_ddp, load_script, write_domains
from .conftest import run_experiment as run


def table_row(report: str, heading: str, model: str) -> tuple[list[str], list[str]]:
    """The header and the row of `model` in the first table after `heading`."""
    section = report[report.index(heading) :]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0].strip("*") == model:
            return header, cells
    raise AssertionError(f"no row {model!r} under {heading!r}")


def test_experiment_writes_every_output(experiment):
    tmp_path, results = experiment
    out = tmp_path / "exp"
    for name in ("results.json", "report.md", "heatmap.png", "retention.png", "comparison.png", "hfkd_run.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "heatmap.png").read_bytes()[:8] == (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "results.json").read_text())
    assert saved["blocks"][0]["metrics"] == results["blocks"][0]["metrics"]
    block = saved["blocks"][0]
    assert block["source_domains"] == ["air"] and block["target_domains"] == ["car", "phone"]
    assert list(block["metrics"]) == ["teacher", "baseline", "distilled", "adaptive"]
    for model, cells in block["metrics"].items():
        assert set(cells) == set(DOMAINS)
        for cell in cells.values():
            assert 0 <= cell["accuracy"] <= 1 and 0 <= cell["macro_f1"] <= 1 and cell["n"] > 0
            assert ("agreement" in cell) == (model != "teacher")
    for name, stage in block["stages"].items():
        assert os.path.isfile(os.path.join(stage["path"], "model.safetensors")), name
        assert json.loads(open(os.path.join(stage["path"], "hfkd_stage.json")).read())["status"] == "done"
    # the adaptive student saw the targets' unlabeled training text, as many rows as the source has
    source_rows = saved["data"]["rows"]["air"]["train"]
    assert sum(block["stages"]["adaptive"]["train"]["unlabeled_rows"].values()) == source_rows
    assert saved["versions"]["transformers"] and saved["wall_time_s"] > 0 and saved["seeds"]["seed"] == 0


def test_report_agrees_with_results(experiment):
    tmp_path, _ = experiment
    out = tmp_path / "exp"
    results = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    block = results["blocks"][0]
    for model in block["metrics"]:
        for heading, key in (("Macro-F1", "macro_f1"), ("Accuracy", "accuracy")):
            header, row = table_row(report, heading, model)
            for domain in block["domains"]:
                column = next(i for i, h in enumerate(header) if re.sub(r"\s*\(source\)", "", h) == domain)
                cell = block["metrics"][model][domain]
                interval = cell["intervals"][key]
                expected = f"{format_score(cell[key])} [{interval['ci_low']:.2f}, {interval['ci_high']:.2f}]"
                assert row[column].strip("*") == expected
                assert interval["ci_low"] <= cell[key] <= interval["ci_high"] and interval["n_seeds"] == 1
                assert (row[column].startswith("**")) == (block["best"][f"{key}@{domain}"] == model)
        if model != "teacher":
            header, row = table_row(report, "Retention", model)
            for domain in block["domains"]:
                column = next(i for i, h in enumerate(header) if re.sub(r"\s*\(source\)", "", h) == domain)
                assert row[column].strip("*") == format_ratio(block["summary"][model]["retention_macro_f1"][domain])


def test_rerun_reuses_stages_and_overwrite_redoes_them(experiment):
    tmp_path, first = experiment
    stages = first["blocks"][0]["stages"]
    weights = {n: os.path.getmtime(os.path.join(s["path"], "model.safetensors")) for n, s in stages.items()}
    again = run(tmp_path)
    assert all(s["reused"] for s in again["blocks"][0]["stages"].values())
    assert {n: os.path.getmtime(os.path.join(s["path"], "model.safetensors")) for n, s in stages.items()} == weights
    assert again["blocks"][0]["metrics"] == first["blocks"][0]["metrics"]

    # a changed setting redoes only the stages it touches; the old folder is kept
    changed = run(tmp_path, "--unlabeled_ratio", "0.5")
    reused = {n: s["reused"] for n, s in changed["blocks"][0]["stages"].items()}
    assert reused == {"teacher": True, "baseline": True, "distilled": True, "adaptive": False}
    assert os.path.isdir(stages["adaptive"]["path"])
    assert changed["blocks"][0]["stages"]["adaptive"]["path"] != stages["adaptive"]["path"]

    redone = run(tmp_path, "--overwrite", "true", "--models", "teacher", "distilled")
    assert not any(s["reused"] for s in redone["blocks"][0]["stages"].values())
    assert list(redone["blocks"][0]["metrics"]) == ["teacher", "distilled"]


def test_leave_one_out_has_one_block_per_domain(loo_experiment):
    tmp_path, results = loo_experiment  # teacher, distilled and multi_teacher
    blocks = results["blocks"]
    assert [b["name"] for b in blocks] == ["holdout-air", "holdout-car", "holdout-phone"]
    for block in blocks:
        (held_out,) = block["target_domains"]
        assert sorted(block["source_domains"] + [held_out]) == sorted(DOMAINS)
    mean = sum(b["summary"]["distilled"]["target_mean_macro_f1"] for b in blocks) / 3
    assert results["overall"]["distilled"]["target_mean_macro_f1"] == pytest.approx(mean)
    # the mean over the held-out domains carries its interval (one bootstrap over every block's rows) and verdicts
    interval = results["overall"]["distilled"]["intervals"]["target_mean_macro_f1"]
    assert interval["ci_low"] <= mean <= interval["ci_high"] and interval["ci_low"] < interval["ci_high"]
    overall = {(c["a"], c["b"]): c for c in results["comparisons"] if c["metric"] == "target_mean_macro_f1"}
    assert set(overall) == {("distilled", "teacher"), ("multi_teacher", "teacher"), ("multi_teacher", "distilled")}
    overall = overall[("distilled", "teacher")]
    assert 0 < overall["p"] <= 1
    teacher_mean = results["overall"]["teacher"]["target_mean_macro_f1"]
    assert overall["diff"] == pytest.approx(mean - teacher_mean)
    report = (tmp_path / "exp" / "report.md").read_text()
    assert all(f"Held out: {d}" in report for d in DOMAINS)
    assert "Paired comparisons over all held-out domains" in report


def test_bad_plans_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="source_domains is not set"):
        run(tmp_path, source=None)
    with pytest.raises(ValueError, match=r"both sources and targets"):
        run(tmp_path, "--target_domains", "air", "car")
    with pytest.raises(ValueError, match="No student is configured"):
        script = load_script("cross_domain")
        script.main(*script.make_parser().parse_args_and_config(["--source_domains", "air", "--report_to", "none"]))


def test_unlabeled_target_rows_mix():
    features = Features({"text": Value("string"), "label": ClassLabel(names=LABELS)})

    def dom(prefix, n):
        table = Dataset.from_dict({"text": [f"{prefix} {i}" for i in range(n)], "label": [0] * n}, features=features)
        test = Dataset.from_dict({"text": [f"{prefix} test"], "label": [0]}, features=features)
        return DatasetDict(train=table, validation=test, test=test)

    domains = {"s": dom("s", 40), "a": dom("a", 100), "b": dom("b", 10)}
    rows, counts = unlabeled_target_rows(domains, ["s"], ["a", "b"], ratio=0.5, seed=0)
    assert counts == {"a": 10, "b": 10} and len(rows) == 20
    assert set(rows["label"]) == {-100}
    assert not any(t.endswith("test") for t in rows["text"])  # never the targets' test text
    _, counts = unlabeled_target_rows(domains, ["s"], ["a", "b"], ratio=1.0, weights={"a": 3, "b": 1}, seed=0)
    assert counts == {"a": 30, "b": 10}
    _, counts = unlabeled_target_rows(domains, ["s"], ["a", "b"], ratio=1.0, weights={"a": 1, "b": 3}, seed=0)
    assert counts == {"a": 10, "b": 10}  # b has only 10 training rows (a warning says so)
    with pytest.raises(ValueError, match=r"target_domain_weights names \['zz'\]"):
        unlabeled_target_rows(domains, ["s"], ["a", "b"], ratio=1.0, weights={"zz": 1.0})


def test_evaluate_script_reproduces_the_experiment_matrix(experiment, tmp_path):
    exp_path, results = experiment
    block = results["blocks"][0]
    script = load_script("evaluate_models")
    paths = [f"{name}={block['stages'][name]['path']}" for name in ("teacher", "distilled")]
    args = ["--model_paths", *paths, "--dataset", str(exp_path / "domains"), "--source_domains", "air"]
    args += ["--max_length", "32", "--output_dir", str(tmp_path / "eval")]
    again = script.main(*script.make_parser().parse_args_and_config(args))
    for name in ("teacher", "distilled"):
        for domain in DOMAINS:
            want = block["metrics"][name][domain]
            got = again["blocks"][0]["metrics"][name][domain]
            assert got["macro_f1"] == want["macro_f1"] and got["n"] == want["n"]
            assert got.get("kl") == pytest.approx(want.get("kl"), abs=1e-6)
    assert again["blocks"][0]["summary"]["distilled"]["retention_target_mean_macro_f1"] == pytest.approx(
        block["summary"]["distilled"]["retention_target_mean_macro_f1"]
    )
    assert {"results.json", "report.md", "heatmap.png", "retention.png"} <= set(os.listdir(tmp_path / "eval"))


def test_evaluate_script_estimates_a_domain_without_labels(experiment, tmp_path):
    # a file of text without labels: each model's accuracy and macro-F1 there, estimated (ATC) and written
    exp_path, results = experiment
    block = results["blocks"][0]
    script = load_script("evaluate_models")
    texts = [json.loads(line)["text"] for line in open(exp_path / "domains" / "phone.jsonl")]
    (tmp_path / "new.csv").write_text("text\n" + "\n".join(texts) + "\n")
    paths = [f"{name}={block['stages'][name]['path']}" for name in ("teacher", "distilled")]
    args = ["--model_paths", *paths, "--dataset", str(exp_path / "domains"), "--source_domains", "air"]
    args += ["--max_length", "32", "--output_dir", str(tmp_path / "est")]
    unlabeled = ["--unlabeled_files", f"new={tmp_path}/new.csv"]
    out = script.main(*script.make_parser().parse_args_and_config(args + unlabeled))
    written = json.loads((tmp_path / "est" / "label_free.json").read_text())
    assert written == json.loads(json.dumps(out)) and set(written["estimates"]) == {"teacher", "distilled"}
    for estimate in written["estimates"].values():
        assert estimate["new"]["n"] == len(texts) and 0 <= estimate["new"]["accuracy"] <= 1
        assert 0 <= estimate["new"]["macro_f1"] <= 1
    with pytest.raises(ValueError, match="needs source_domains"):
        bad = [a for a in args if a not in ("--source_domains", "air")]
        script.main(*script.make_parser().parse_args_and_config(bad + unlabeled))


def test_own_domains_config_plans_one_block_per_file(tmp_path):
    # configs/experiment_folder.yaml works on any folder of <domain>.jsonl files without naming a domain
    from hfkd.experiment.cross_domain import Experiment

    folder = write_domains(tmp_path / "mine")
    script = load_script("cross_domain")
    config = os.path.join(ROOT, "configs", "experiment_folder.yaml")
    parsed = script.make_parser().parse_args_and_config(["--config", config, "--dataset", str(folder)])
    exp_args, _, data_args, *_ = parsed
    assert exp_args.mode == "leave_one_out" and data_args.dataset == str(folder) and not data_args.source_domains
    plan = Experiment(*parsed).blocks(sorted(DOMAINS))
    assert [(name, targets) for name, _, targets in plan] == [(f"holdout-{d}", [d]) for d in sorted(DOMAINS)]


def test_given_teacher_is_used_and_fingerprinted(experiment, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    _, first = experiment
    teacher = tmp_path / "my_teacher"
    shutil.copytree(first["blocks"][0]["stages"]["teacher"]["path"], teacher, ignore=shutil.ignore_patterns("chec*"))
    args = ("--teacher_model_name_or_path", str(teacher), "--models", "teacher", "distilled")
    results = run(tmp_path, *args)
    stages = results["blocks"][0]["stages"]
    assert stages["teacher"]["given"] and stages["teacher"]["path"] == str(teacher)
    for domain, cell in results["blocks"][0]["metrics"]["teacher"].items():
        assert cell["macro_f1"] == pytest.approx(first["blocks"][0]["metrics"]["teacher"][domain]["macro_f1"])
    assert run(tmp_path, *args)["blocks"][0]["stages"]["distilled"]["reused"]

    # the teacher folder retrained in place (other weights, same path): the student is redone, not reused
    weights = load_file(teacher / "model.safetensors")
    save_file({k: v * 1.01 for k, v in weights.items()}, teacher / "model.safetensors", metadata={"format": "pt"})
    assert not run(tmp_path, *args)["blocks"][0]["stages"]["distilled"]["reused"]


@pytest.mark.slow
def test_experiment_under_two_process_ddp(tmp_path):
    # Several stages in one launch: no stage may tear down the process group that the next one needs.

    folder = write_domains(tmp_path / "domains", n=32)
    out = launch_ddp(
        "scripts/cross_domain.py", "--dataset", str(folder), "--source_domains", "air",
        "--model_name_or_path", "builtin:tiny-bert", "--student_num_layers", "1", "--max_length", "32",
        "--num_train_epochs", "1", "--per_device_train_batch_size", "4", "--learning_rate", "1e-3",
        "--report_to", "none", "--disable_tqdm", "true", "--output_dir", str(tmp_path / "exp"),
    )  # fmt: skip
    assert out.count("Report: ") == 1  # the main process alone prints and writes
    results = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert results["hardware"]["num_processes"] == 2
    block = results["blocks"][0]
    assert list(block["metrics"]) == ["teacher", "baseline", "distilled", "adaptive"]
    # gather_for_metrics: every scored row is counted once, whatever the sharding (targets: validation + test)
    rows = results["data"]["rows"]
    assert block["metrics"]["adaptive"]["air"]["n"] == rows["air"]["test"]
    assert all(block["metrics"]["adaptive"][d]["n"] == rows[d]["validation"] + rows[d]["test"] for d in DOMAINS[1:])


def test_killed_stage_is_resumed_from_its_checkpoint(tmp_path):
    first = run(tmp_path, "--models", "teacher", "distilled", "--save_total_limit", "2")
    stage = first["blocks"][0]["stages"]["distilled"]
    folder = stage["path"]
    # what a kill after the last epoch's checkpoint leaves: a running record, checkpoints, no final model
    record_path = os.path.join(folder, "hfkd_stage.json")
    record = json.loads(open(record_path).read())
    with open(record_path, "w") as f:
        json.dump(record | {"status": "running"}, f)
    os.remove(os.path.join(folder, "model.safetensors"))
    assert any(d.startswith("checkpoint-") for d in os.listdir(folder))

    again = run(tmp_path, "--models", "teacher", "distilled", "--save_total_limit", "2")
    stages = again["blocks"][0]["stages"]
    assert stages["teacher"]["reused"] and not stages["distilled"]["reused"] and stages["distilled"]["resumed"]
    assert stages["distilled"]["path"] == folder and os.path.isfile(os.path.join(folder, "model.safetensors"))
    for domain, cell in again["blocks"][0]["metrics"]["distilled"].items():
        want = first["blocks"][0]["metrics"]["distilled"][domain]
        assert cell["macro_f1"] == want["macro_f1"] and cell["kl"] == pytest.approx(want["kl"], abs=1e-6)


def test_baseline_takes_as_many_optimizer_steps_as_the_distilled_student(tmp_path):
    # 1.5 epochs in batches of 8: the Trainer takes ceil(1.5 * steps per epoch); the baseline must take as many (it
    # used to train round(1.5) = 2 whole epochs).
    results = run(tmp_path, "--num_train_epochs", "1.5", "--models", "teacher", "baseline", "distilled")
    stages = results["blocks"][0]["stages"]
    steps_per_epoch = math.ceil(results["data"]["rows"]["air"]["train"] / 8)
    assert stages["distilled"]["train"]["global_step"] == math.ceil(1.5 * steps_per_epoch) < 2 * steps_per_epoch
    assert stages["baseline"]["train"]["global_step"] == stages["distilled"]["train"]["global_step"]
    description = results["models"]["baseline"]["description"]
    assert "head" in description and "no teacher term" in description


def test_results_carry_intervals_and_paired_comparisons(experiment):
    tmp_path, results = experiment
    block = results["blocks"][0]
    assert results["schema_version"] == 2 and block["uncertainty"]["n_resamples"] == 1000
    for model, summary in block["summary"].items():
        for figure in ("in_domain_macro_f1", "target_mean_macro_f1", "transfer_gap_macro_f1"):
            estimate = summary["intervals"][figure]
            assert estimate["mean"] == pytest.approx(summary[figure])  # one seed: the point is the figure itself
            assert estimate["ci_low"] <= estimate["mean"] <= estimate["ci_high"]
        if model != "teacher":  # retention of the target mean: the ratio of the means
            ratio = summary["target_mean_macro_f1"] / block["summary"]["teacher"]["target_mean_macro_f1"]
            assert summary["retention_target_mean_macro_f1"] == pytest.approx(ratio)
            assert summary["intervals"]["retention_target_mean_macro_f1"]["mean"] == pytest.approx(ratio)
    pairs = {(c["a"], c["b"]) for c in block["comparisons"]}
    students = {"baseline", "distilled", "adaptive"}
    assert {(s, "teacher") for s in students} | {("distilled", "baseline"), ("adaptive", "distilled")} == pairs
    for c in block["comparisons"]:
        assert c["ci_low"] <= c["diff"] <= c["ci_high"] and 0 < c["p"] <= 1
        assert c["verdict"] in ("better", "worse", "no significant difference")
        assert (c["verdict"] != "no significant difference") == (c["p"] < 0.05)
    report = (tmp_path / "exp" / "report.md").read_text()
    assert "Paired comparisons" in report and "target-mean macro-F1" in report
    # the label-free estimate on every target (never on the source), and its measured error
    for model, cells in block["metrics"].items():
        assert "label_free" not in cells["air"] and {"phone", "car"} == {
            d for d, c in cells.items() if "label_free" in c
        }
        errors = block["summary"][model]["label_free"]
        expected = sum(abs(cells[d]["label_free"]["macro_f1"] - cells[d]["macro_f1"]) for d in ("phone", "car")) / 2
        assert errors["mean_abs_error_macro_f1"] == pytest.approx(expected)
    assert "Label-free estimates" in report
    # class counts per domain and split, and of the rows each domain was scored on; the tiny domains' classes are all
    # below 20 scored rows, and said so
    counts = results["data"]["class_counts"]
    assert set(counts) == set(DOMAINS) and set(counts["air"]["test"]) == set(results["label_names"])
    assert sum(counts["air"]["test"].values()) == results["data"]["rows"]["air"]["test"]
    scored = block["evaluation_rows"]["domains"]
    assert scored["air"]["splits"] == ["test"] and scored["car"]["splits"] == ["validation", "test"]
    for d in DOMAINS:
        assert sum(scored[d]["class_counts"].values()) == scored[d]["n"] == block["metrics"]["teacher"][d]["n"]
        expected = {c: sum(counts[d][s][c] for s in scored[d]["splits"]) for c in results["label_names"]}
        assert scored[d]["class_counts"] == expected
    assert len(results["data"]["small_classes"]) == 3 * len(results["label_names"])
    assert "Few evaluation rows of a class" in report
    # the student to ship is named from what needs no target label: source validation macro-F1 (the default)
    chosen = results["chosen"]
    assert chosen == block["chosen"] and chosen["by"] == "source_validation"
    students = {m: block["summary"][m]["source_validation_macro_f1"] for m in ("baseline", "distilled", "adaptive")}
    assert chosen["candidates"] == students and chosen["model"] == max(students, key=students.get)
    assert all(0 <= v <= 1 for v in students.values()) and "teacher" not in chosen["candidates"]
    # (report.md on disk may be a rerun's, by other tests of this module)
    assert f"**{chosen['model']}**" in render_report(results).split("## Chosen student")[1].split("##")[0]


def test_seeds_train_every_stage_per_seed_and_are_reused(tmp_path):
    # two seeds: a teacher and students per seed, figures averaged over the seeds with intervals over seeds and rows;
    # the first seed's stages are those of a one-seed run with that seed (same folders), and a rerun reuses them all
    args = ["--models", "teacher", "distilled", "--seed", "0"]
    one = run(tmp_path, *args)
    two = run(tmp_path, *args, "--seeds", "0", "1")
    block = two["blocks"][0]
    for model in ("teacher", "distilled"):
        stage = block["stages"][model]
        assert [s["seed"] for s in stage["seeds"]] == [0, 1]
        assert stage["seeds"][0]["path"] == one["blocks"][0]["stages"][model]["path"] and stage["seeds"][0]["reused"]
        assert stage["seeds"][1]["path"] != stage["seeds"][0]["path"] and not stage["seeds"][1]["reused"]
        for domain, cell in block["metrics"][model].items():
            interval = cell["intervals"]["macro_f1"]
            assert interval["n_seeds"] == 2 and cell["macro_f1"] == pytest.approx(sum(interval["per_seed"]) / 2)
            assert interval["per_seed"][0] == pytest.approx(one["blocks"][0]["metrics"][model][domain]["macro_f1"])
    assert two["seeds"]["seeds"] == [0, 1]
    again = run(tmp_path, *args, "--seeds", "0", "1")
    assert all(s["reused"] for stage in again["blocks"][0]["stages"].values() for s in stage["seeds"])
    assert "distilled (seed 1)" in (tmp_path / "exp" / "report.md").read_text()


def test_compare_two_runs_on_the_same_rows_and_refuse_other_rows(experiment, tmp_path, capsys):
    from hfkd import cli
    from hfkd.evaluation.compare import compare_runs

    exp_path, _ = experiment
    run_a = str(exp_path / "exp")
    # another run of the same plan with another seed: same rows, other models
    other = run(tmp_path / "b", "--models", "teacher", "distilled", "--seed", "1")
    run_b = str(tmp_path / "b" / "exp")
    report = compare_runs(run_a, run_b)
    assert {c["model"] for c in report["comparisons"]} == {"teacher", "distilled"}
    figures = {c["metric"] for c in report["comparisons"]}
    assert {"target_mean_macro_f1", "in_domain_macro_f1"} <= figures and "macro_f1@air" in figures
    for c in report["comparisons"]:
        assert c["ci_low"] <= c["diff"] <= c["ci_high"] and 0 < c["p"] <= 1
        if c["metric"] == "target_mean_macro_f1":
            cells = other["blocks"][0]["summary"][c["model"]]
            assert c["diff"] == pytest.approx(-cells["target_mean_macro_f1"] + _summary(run_a, c["model"]))
    # a run compared with itself: no difference anywhere
    assert all(c["diff"] == 0 and c["p"] == 1.0 for c in compare_runs(run_a, run_a)["comparisons"])
    assert cli.main(["compare", run_a, run_b, "--output", str(tmp_path / "c.json")]) == 0
    assert "A − B" in capsys.readouterr().out and json.loads((tmp_path / "c.json").read_text())["comparisons"]
    # other rows: refused with the reason, one error line through the CLI
    run(tmp_path / "c", "--models", "teacher", "--max_eval_samples", "3")
    with pytest.raises(ValueError, match="other rows.*splits differ"):
        compare_runs(run_a, str(tmp_path / "c" / "exp"))
    capsys.readouterr()  # the progress bars of the run above
    assert cli.main(["compare", run_a, str(tmp_path / "c" / "exp")]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and "other rows" in error[0]


def _summary(run_dir, model):
    return json.loads(open(os.path.join(run_dir, "results.json")).read())["blocks"][0]["summary"][model][
        "target_mean_macro_f1"
    ]


def test_a_changed_stage_names_its_earlier_version_but_not_other_seeds_or_domains(tmp_path, caplog):
    def key(seed=42, lr=1e-4, sources=("air",)):
        data = {"sources": {d: f"fp-{d}" for d in sources}, "max_length": 64}
        return {"stage": "teacher", "data": data, "training": {"seed": seed, "learning_rate": lr}}

    def train(folder, resume):
        return {"trained": folder}

    with caplog.at_level(logging.WARNING, logger="hfkd"):
        for k in (key(), key(seed=43), key(sources=("shop",))):
            assert not run_stage("teacher", str(tmp_path), k, train)["reused"]
        assert "config changed" not in caplog.text  # another seed's or domain's teacher is not an earlier version
        run_stage("teacher", str(tmp_path), key(lr=5e-5), train)
    warnings = [r.getMessage() for r in caplog.records if "config changed" in r.getMessage()]
    assert len(warnings) == 1 and "training.learning_rate: 0.0001 -> 5e-05" in warnings[0]
    assert len(os.listdir(tmp_path)) == 4  # every version is kept
