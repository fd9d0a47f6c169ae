"""report.md / heatmap.png / retention.png from a hand-made results dict: every number read back from the tables."""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest

from hfkd.evaluation.matrix import _weights_bytes
from hfkd.evaluation.outputs import write_outputs
from hfkd.evaluation.plots import HEATMAP_FILE, RETENTION_FILE, plot_heatmap, plot_retention
from hfkd.evaluation.report import REPORT_FILE, format_ratio, format_score, render_report
from hfkd.evaluation.results import FORMAT, RESULTS_FILE, load_results
from hfkd.models import resolve_model_name_or_path

from .conftest import tiny_bert

PNG = b"\x89PNG\r\n\x1a\n"
DOMAINS = ["airline", "apple", "coachella"]
# model -> domain -> (macro_f1, accuracy, ece, agreement, kl); every value distinct so a wrong cell shows
CELLS = {
    "teacher": {"airline": (0.812, 0.853, 0.051), "apple": (0.641, 0.702, 0.083), "coachella": (0.587, 0.664, 0.092)},
    "baseline": {
        "airline": (0.774, 0.826, 0.062, 0.931, 0.081),
        "apple": (0.583, 0.655, 0.097, 0.874, 0.152),
        "coachella": (0.512, 0.618, 0.104, 0.846, 0.173),
    },
    "distilled": {
        "airline": (0.796, 0.841, 0.055, 0.952, 0.043),
        "apple": (0.622, 0.689, 0.088, 0.911, 0.094),
        "coachella": (0.571, 0.650, 0.095, 0.897, 0.108),
    },
}
MODELS = {
    "teacher": {"role": "teacher", "description": "minilm fine-tuned", "num_layers": 6, "parameters": 22713603},
    "baseline": {"role": "student", "description": "3 layers, no teacher", "num_layers": 3, "parameters": 17390000},
    "distilled": {"role": "student", "description": "3 layers, distilled", "num_layers": 3, "parameters": 17390000},
}


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def summarize(metrics, sources, targets, teacher):
    """The derived figures, worked out here independently of hfkd.evaluation."""
    summary = {}
    for name, cells in metrics.items():
        s = {}
        for key in ("macro_f1", "accuracy"):
            s[f"in_domain_{key}"] = mean([cells[d][key] for d in sources]) if sources else None
            s[f"target_mean_{key}"] = mean([cells[d][key] for d in targets])
            both = s[f"in_domain_{key}"] is not None
            s[f"transfer_gap_{key}"] = s[f"in_domain_{key}"] - s[f"target_mean_{key}"] if both else None
            if teacher and name != teacher:
                ratio = {d: cells[d][key] / metrics[teacher][d][key] for d in cells}
                s[f"retention_{key}"] = ratio
                teacher_in = mean([metrics[teacher][d][key] for d in sources]) if sources else None
                teacher_target = mean([metrics[teacher][d][key] for d in targets])
                s[f"retention_in_domain_{key}"] = s[f"in_domain_{key}"] / teacher_in if sources else None
                s[f"retention_target_mean_{key}"] = s[f"target_mean_{key}"] / teacher_target
        s["ece_target_mean"] = mean([cells[d]["ece"] for d in targets])
        if teacher and name != teacher:
            s["agreement_target_mean"] = mean([cells[d]["agreement"] for d in targets])
            s["kl_target_mean"] = mean([cells[d]["kl"] for d in targets])
        summary[name] = s
    return summary


def make_block(sources, targets, offset=0.0, teacher="teacher"):
    metrics = {}
    for name, cells in CELLS.items():
        metrics[name] = {}
        for d in DOMAINS:
            values = [round(v + offset, 4) for v in cells[d]]
            metrics[name][d] = {"macro_f1": values[0], "accuracy": values[1], "ece": values[2], "n": 100, "extra": 1}
            if len(values) > 3 and teacher:
                metrics[name][d] |= {"agreement": values[3], "kl": values[4]}
    speed = {
        "teacher": {
            "samples_per_second": 310.0,
            "rows": 300,
            "eval_seconds": 0.97,
            "speedup_vs_teacher": 1.0,
            "weights_bytes": 90_866_412,
        },
        "baseline": {"samples_per_second": 595.2, "rows": 300, "eval_seconds": 0.5, "speedup_vs_teacher": 1.92},
        "distilled": {"samples_per_second": 601.7, "rows": 300, "eval_seconds": 0.5, "speedup_vs_teacher": 1.94},
    }
    stages = {
        "teacher": {"path": "runs/x/teacher", "hash": "ab12", "reused": False, "wall_time_s": 190.2, "train": {}},
        "baseline": {"path": "runs/x/baseline", "hash": "cd34", "reused": True, "wall_time_s": 0.4},
        "distilled": {"path": "runs/x/distilled", "hash": "ef56", "reused": False, "wall_time_s": 410.0},
    }
    return {
        "name": targets[0] if len(targets) == 1 else (sources or ["all"])[0],
        "source_domains": sources,
        "target_domains": targets,
        "domains": [d for d in DOMAINS if d in sources + targets],
        "metrics": metrics,
        "summary": summarize(metrics, sources, targets, teacher),
        # the statistics decide what is bold: the best of a column when it is significantly better than the runner-up
        "best": {f"macro_f1@{d}": "teacher" if d == "airline" else None for d in DOMAINS},
        "speed": speed,
        "stages": stages,
    }


def make_results(mode, blocks, teacher="teacher"):
    overall = {}
    for name in MODELS:
        keys = [k for k, v in blocks[0]["summary"][name].items() if not isinstance(v, dict)]
        overall[name] = {k: mean([b["summary"][name][k] for b in blocks]) for k in keys}
    return {
        "format": FORMAT,
        "title": "Cross-domain distillation on tweets",
        "mode": mode,
        "dataset": "tweets",
        "label_names": ["negative", "neutral", "positive"],
        "teacher": teacher,
        "models": copy.deepcopy(MODELS),
        "blocks": blocks,
        "overall": overall,
        "hardware": {"description": "2 CPU cores (x86_64), no GPU", "num_processes": 1},
        "started": "2026-11-23T10:00:00+0000",
        "finished": "2026-11-23T10:14:10+0000",
        "wall_time_s": 850.3,
        "command": "accelerate launch scripts/cross_domain.py --config configs/experiment_tweets.yaml",
        "config": {"seed": 42},
        "versions": {"transformers": "x"},
        "seeds": {"seed": 42},
    }


@pytest.fixture
def single():
    return make_results("single", [make_block(["airline"], ["apple", "coachella"])])


@pytest.fixture
def loo():
    blocks = [make_block([d for d in DOMAINS if d != t], [t], offset=0.013 * i) for i, t in enumerate(DOMAINS)]
    return make_results("leave_one_out", blocks)


def section(markdown: str, heading: str) -> str:
    """The lines from `heading` to the next heading of the same or a higher level."""
    lines = markdown.splitlines()
    start, level = lines.index(heading), heading.split()[0]
    end = next((i for i in range(start + 1, len(lines)) if lines[i].split(" ")[0] in ("#", "##", level)), len(lines))
    return "\n".join(lines[start:end])


def table(markdown: str, heading: str) -> tuple[list[str], dict[str, list[str]]]:
    """The header and the rows (by first cell, bold removed) of the pipe table under `heading`."""
    lines = markdown.splitlines()
    start = lines.index(heading) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().removeprefix("**").removesuffix("**") for cell in line.strip("|").split("|")])
    header, separator, body = rows[0], rows[1], rows[2:]
    assert all(set(cell) <= set("-:") for cell in separator)
    assert all(len(row) == len(header) for row in body), heading
    return header, {row[0]: row for row in body}


def check_block_tables(markdown: str, block: dict, h: str):
    sources = block["source_domains"]
    label = {d: f"{d} (source)" if d in sources else d for d in block["domains"]}
    for key, title in (("macro_f1", "Macro-F1"), ("accuracy", "Accuracy")):
        header, rows = table(markdown, f"{h} {title}")
        assert header == ["model", *label.values(), "in-domain", "target mean", "gap"]
        assert list(rows) == list(MODELS)
        for name, row in rows.items():
            for d in block["domains"]:
                assert row[header.index(label[d])] == format_score(block["metrics"][name][d][key])
            summary = block["summary"][name]
            assert row[header.index("in-domain")] == format_score(summary[f"in_domain_{key}"])
            assert row[header.index("target mean")] == format_score(summary[f"target_mean_{key}"])
            assert row[header.index("gap")] == format_score(summary[f"transfer_gap_{key}"])
    header, rows = table(markdown, f"{h} Retention of the teacher's macro-F1")
    assert header == ["model", *label.values(), "in-domain", "target mean"]
    assert list(rows) == ["baseline", "distilled"]  # students only
    for name, row in rows.items():
        summary = block["summary"][name]
        for d in block["domains"]:
            assert row[header.index(label[d])] == format_ratio(summary["retention_macro_f1"][d])
        assert row[header.index("in-domain")] == format_ratio(summary["retention_in_domain_macro_f1"])
        assert row[header.index("target mean")] == format_ratio(summary["retention_target_mean_macro_f1"])
    header, rows = table(markdown, f"{h} Students vs the teacher on the targets")
    for name, row in rows.items():
        summary = block["summary"][name]
        assert row[header.index("ECE")] == format_score(summary["ece_target_mean"])
        assert row[header.index("agreement")] == format_score(summary.get("agreement_target_mean"))
        assert row[header.index("KL(teacher‖student)")] == format_score(summary.get("kl_target_mean"))
    assert rows["teacher"][header.index("agreement")] == "–"


def test_formatters():
    assert format_score(0.81234) == "0.812" and format_score(1) == "1.000"
    assert format_score(None) == format_score(float("nan")) == format_ratio(None) == format_ratio(np.nan) == "–"
    assert format_ratio(0.9734) == "97.3%" and format_ratio(np.float32(1.0)) == "100.0%"


def test_single_report_numbers_come_from_the_results(single):
    markdown = render_report(single)
    check_block_tables(markdown, single["blocks"][0], "##")
    assert markdown.startswith("# Cross-domain distillation on tweets\n")
    assert "airline → apple, coachella" in markdown and "`tweets`" in markdown
    assert "14 min 10 s" in markdown and f"`{single['command']}`" in markdown
    assert "2 CPU cores (x86_64), no GPU" in markdown and "2026-11-23T10:14:10+0000" in markdown
    assert "generated from `results.json`" in markdown and "22.7M" in markdown
    # readers that find a table by the first occurrence of its title (tests/test_experiment.py) get the table
    for title in ("Macro-F1", "Accuracy", "Retention", "Speed and size", "Stages"):
        assert markdown.index(title) == markdown.index(f"## {title}") + 3
    header, rows = table(markdown, "## Speed and size")
    assert rows["teacher"][1:] == ["6", "22.7M", "90.9 MB", "310.0", "1.00×"]  # size on disk beside the speed
    assert rows["baseline"][header.index("speed-up vs teacher")] == "1.92×"
    assert rows["baseline"][header.index("weights on disk")] == "–"  # a model given as an object: no folder
    header, rows = table(markdown, "## Stages")
    assert rows["baseline"][1:] == ["yes", "0.4 s", "`runs/x/baseline`"]
    assert rows["distilled"][1:3] == ["no", "6 min 50 s"]
    # a column's best is bold when the statistics found it significantly better than the runner-up, else nothing is
    lines = section(markdown, "## Macro-F1").splitlines()
    assert "| teacher | **0.812** |" in "\n".join(lines) and "**0.774**" not in markdown


def test_leave_one_out_report(loo):
    markdown = render_report(loo)
    assert "leave-one-out over 3 domains" in markdown
    assert markdown.index("## Overall (mean over held-out domains)") < markdown.index("## Held out: airline")
    header, rows = table(markdown, "## Overall (mean over held-out domains)")
    assert list(rows) == list(MODELS)
    for name, row in rows.items():
        figures = loo["overall"][name]
        assert row[header.index("in-domain macro-F1")] == format_score(figures["in_domain_macro_f1"])
        assert row[header.index("held-out macro-F1")] == format_score(figures["target_mean_macro_f1"])
        assert row[header.index("gap")] == format_score(figures["transfer_gap_macro_f1"])
        assert row[header.index("retention (held-out)")] == format_ratio(figures.get("retention_target_mean_macro_f1"))
    header, rows = table(markdown, "### Held-out macro-F1 per domain")
    for block in loo["blocks"]:
        held_out = block["target_domains"][0]
        for name in MODELS:
            expected = format_score(block["metrics"][name][held_out]["macro_f1"])
            assert rows[held_out][header.index(name)] == expected
    assert rows["mean"][header.index("distilled")] == format_score(loo["overall"]["distilled"]["target_mean_macro_f1"])
    for block in loo["blocks"]:  # each section shows its own block's numbers
        check_block_tables(section(markdown, f"## Held out: {block['target_domains'][0]}"), block, "###")


def test_write_outputs_and_load_results(single, tmp_path):
    single["blocks"][0]["metrics"]["teacher"]["apple"]["n"] = np.int64(100)  # numpy scalars are written as numbers
    paths = write_outputs(single, str(tmp_path / "out"))
    assert paths == {
        "results": str(tmp_path / "out" / RESULTS_FILE),
        "report": str(tmp_path / "out" / REPORT_FILE),
        "heatmap": str(tmp_path / "out" / HEATMAP_FILE),
        "retention": str(tmp_path / "out" / RETENTION_FILE),
    }
    assert sorted(os.listdir(tmp_path / "out")) == sorted(os.path.basename(p) for p in paths.values())  # no temp files
    for key in ("heatmap", "retention"):
        data = open(paths[key], "rb").read()
        assert data.startswith(PNG) and len(data) > 1000
    loaded = load_results(str(tmp_path / "out"))
    assert loaded == json.loads(json.dumps(single, default=int)) == load_results(paths["results"])
    assert json.load(open(paths["results"]))["blocks"][0]["metrics"]["teacher"]["apple"]["n"] == 100
    assert open(paths["report"], encoding="utf-8").read() == render_report(loaded)


def test_leave_one_out_plots(loo, tmp_path):
    paths = write_outputs(loo, str(tmp_path))
    assert set(paths) == {"results", "report", "heatmap", "retention"}
    partial = copy.deepcopy(loo)
    partial["blocks"] = partial["blocks"][:1]  # a run that has finished its first block
    assert "1 of 3 blocks done" in render_report(partial)
    assert open(plot_heatmap(partial, str(tmp_path / "h.png")), "rb").read().startswith(PNG)
    assert plot_retention(partial, str(tmp_path / "r.png")) == str(tmp_path / "r.png")
    several = make_results("single", [make_block(["airline"], ["apple", "coachella"]), make_block(["apple"], DOMAINS)])
    assert open(plot_heatmap(several, str(tmp_path / "s.png")), "rb").read().startswith(PNG)  # one subplot per block


def test_without_teacher(single, tmp_path):
    results = make_results("evaluate", [make_block(["airline"], ["apple", "coachella"], teacher=None)], teacher=None)
    markdown = render_report(results)
    assert (
        "Retention of" not in markdown and "Students vs the teacher" not in markdown and "| agreement" not in markdown
    )
    assert "No reference teacher" in markdown
    header, rows = table(markdown, "## Calibration on the targets")
    assert rows["baseline"][header.index("ECE")] == format_score(
        results["blocks"][0]["summary"]["baseline"]["ece_target_mean"]
    )
    assert plot_retention(results, str(tmp_path / "r.png")) is None and not (tmp_path / "r.png").exists()
    write_outputs(single, str(tmp_path / "out"))
    paths = write_outputs(results, str(tmp_path / "out"))  # a stale retention.png from the first call goes away
    assert "retention" not in paths and not (tmp_path / "out" / RETENTION_FILE).exists()
    assert os.path.exists(paths["heatmap"])


def test_evaluate_mode_without_source(tmp_path):
    results = make_results("evaluate", [make_block([], DOMAINS)])
    markdown = render_report(results)
    header, rows = table(markdown, "## Macro-F1")
    assert header == ["model", *DOMAINS, "target mean"] and "(source)" not in markdown
    assert rows["distilled"][-1] == format_score(results["blocks"][0]["summary"]["distilled"]["target_mean_macro_f1"])
    header, _ = table(markdown, "## Retention of the teacher's macro-F1")
    assert header == ["model", *DOMAINS, "target mean"]
    assert "on airline, apple, coachella" in markdown
    assert set(write_outputs(results, str(tmp_path))) == {"results", "report", "heatmap", "retention"}


def test_missing_optional_parts_do_not_crash(single, loo, tmp_path):
    for results in (single, loo):
        for key in ("hardware", "overall", "wall_time_s", "finished", "command", "label_names", "title"):
            results.pop(key)
        results["models"]["distilled"] = {}
        for block in results["blocks"]:
            block.pop("speed"), block.pop("stages")
            block["summary"]["baseline"] = {
                "retention_macro_f1": {"airline": None},
                "in_domain_macro_f1": float("nan"),
            }
            del block["metrics"]["distilled"]["apple"]
        markdown = render_report(results)
        assert "## Stages" not in markdown and "–" in markdown
        header, rows = table(markdown, "## Speed and size" if results is single else "### Speed and size")
        assert rows["distilled"][1:] == ["–"] * 5
        paths = write_outputs(results, str(tmp_path / results["mode"]))
        assert all(os.path.getsize(p) > 0 for p in paths.values())
    bare = {"blocks": [], "models": {}, "teacher": None}
    assert render_report(bare).startswith("# ")
    assert set(write_outputs(bare, str(tmp_path / "bare"))) == {"results", "report", "heatmap"}


def test_load_results_errors(tmp_path):
    missing = str(tmp_path / "nowhere" / RESULTS_FILE)
    with pytest.raises(ValueError, match="nowhere"):
        load_results(missing)
    with pytest.raises(ValueError, match=RESULTS_FILE):
        load_results(str(tmp_path))  # a folder without results.json
    (tmp_path / RESULTS_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not a valid results file"):
        load_results(str(tmp_path))
    (tmp_path / RESULTS_FILE).write_text('{"format": "something-else/3"}')
    with pytest.raises(ValueError, match="something-else"):
        load_results(str(tmp_path / RESULTS_FILE))
    (tmp_path / RESULTS_FILE).write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_results(str(tmp_path))


def test_comparison_plot_draws_the_paired_differences(tmp_path):
    from hfkd.evaluation.plots import plot_comparisons

    comparisons = [
        {"a": "distilled", "b": "teacher", "metric": "target_mean_macro_f1", "diff": -0.01, "ci_low": -0.04,
         "ci_high": 0.02, "p": 0.5, "verdict": "no significant difference"},
        {"a": "baseline", "b": "teacher", "metric": "in_domain_macro_f1", "diff": 0.05, "ci_low": 0.01,
         "ci_high": 0.09, "p": 0.01, "verdict": "better"},
        {"a": "baseline", "b": "teacher", "metric": "macro_f1@apple", "diff": 0.1, "ci_low": 0.0, "ci_high": 0.2,
         "p": 0.04, "verdict": "better"},
    ]  # fmt: skip
    path = plot_comparisons({"blocks": [{"name": "airline", "comparisons": comparisons}]}, str(tmp_path / "c.png"))
    assert path and open(path, "rb").read()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_comparisons({"blocks": [{"name": "airline"}]}, str(tmp_path / "none.png")) is None
    assert not (tmp_path / "none.png").exists()


def test_choose_student_needs_no_target_label():
    from hfkd.evaluation.results import choose_student

    summary = {
        "teacher": {"source_validation_macro_f1": 0.9, "label_free_target_mean_macro_f1": 0.8},
        "a": {"source_validation_macro_f1": 0.7, "label_free_target_mean_macro_f1": 0.6, "target_mean_macro_f1": 0.1},
        "b": {"source_validation_macro_f1": 0.6, "label_free_target_mean_macro_f1": 0.65, "target_mean_macro_f1": 0.9},
    }
    assert choose_student(summary, "teacher", "source_validation")["model"] == "a"  # never the teacher
    assert choose_student(summary, "teacher", "label_free")["model"] == "b"
    assert choose_student({"teacher": {}}, "teacher", "label_free") is None
    with pytest.raises(ValueError, match="select_student_by='target' is not valid"):
        choose_student(summary, "teacher", "target")


def test_speed_records_the_weights_on_disk_of_folders_and_builtin_names(tmp_path):
    tiny_bert().save_pretrained(tmp_path / "model")
    assert _weights_bytes(str(tmp_path / "model")) == os.path.getsize(tmp_path / "model" / "model.safetensors")
    builtin = os.path.join(resolve_model_name_or_path("builtin:tiny-bert"), "model.safetensors")
    assert _weights_bytes("builtin:tiny-bert") == os.path.getsize(builtin)
    assert _weights_bytes(tiny_bert()) is None and _weights_bytes("org/not-a-local-model") is None
