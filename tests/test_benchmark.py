"""scripts/benchmark.py on a tiny teacher: every figure is measured and written, ratios derived from the runs."""

import json

import pytest

from .conftest import load_script


@pytest.mark.slow
def test_benchmark_writes_every_figure(tmp_path):
    script = load_script("benchmark")
    argv = ["--teacher", "builtin:tiny-bert", "--student_num_layers", "1", "--num_samples", "48", "--batch_size", "8"]
    argv += ["--warmup_steps", "1", "--measure_steps", "2", "--repeats", "2", "--latency_samples", "4"]
    (bench,) = script.make_parser().parse_args_into_dataclasses(argv + ["--output_dir", str(tmp_path)])
    results = script.main(bench)
    saved = json.loads((tmp_path / "benchmark.json").read_text())
    assert saved["ratios"] == pytest.approx(results["ratios"])
    training = saved["training"]
    for mode in ("plain", "online", "cached", "intermediate", "health"):
        runs = training[mode]["samples_per_second"]["runs"]
        assert len(runs) == 2 and all(r > 0 for r in runs)
        assert training[mode]["samples_per_second"]["min"] <= training[mode]["samples_per_second"]["median"]
    median = {m: training[m]["samples_per_second"]["median"] for m in training}
    assert saved["ratios"]["cached_vs_plain"] == pytest.approx(median["cached"] / median["plain"])
    assert saved["cache"]["rows"] == 48 and saved["cache"]["seconds"] > 0
    teacher, student = saved["inference"]["teacher"], saved["inference"]["student"]
    assert student["parameters"] < teacher["parameters"] and student["size_mb"] < teacher["size_mb"]
    assert teacher["latency_ms_b1"] > 0 and student["samples_per_second_batch"] > 0
    assert set(saved["targets"]) == {
        "cached_vs_plain",
        "online_vs_plain",
        "student_vs_teacher_throughput",
        "grad_health_overhead",
        "int8_student_vs_teacher_throughput",
    }
    # (g): the student exported to ONNX, fp32 and INT8, timed like the PyTorch models, against the fp32 teacher
    assert saved["export"]["measured"]
    fp32, int8 = saved["inference"]["student_onnx_fp32"], saved["inference"]["student_onnx_int8"]
    for exported in (fp32, int8):
        assert exported["samples_per_second_batch"] > 0 and exported["latency_ms_b1"] > 0 and exported["size_mb"] > 0
    ratios = saved["ratios"]
    assert ratios["int8_student_vs_teacher_throughput"] == pytest.approx(
        int8["samples_per_second_batch"] / teacher["samples_per_second_batch"]
    )
    assert ratios["int8_student_vs_teacher_latency_b1"] == pytest.approx(
        int8["latency_ms_b1"] / teacher["latency_ms_b1"]
    )
    target = saved["targets"]["int8_student_vs_teacher_throughput"]
    assert target["met"] == (target["value"] >= 5.0)
    assert 0 < saved["ratios"]["grad_health_overhead"] < 1  # the callback's own share of the training time
    assert saved["ratios"]["health_vs_cached"] == pytest.approx(median["health"] / median["cached"])
    table = (tmp_path / "benchmark.md").read_text()
    assert f"| (c) cached distillation | {median['cached']:.1f} |" in table
    assert f"| samples/s at batch 8 | {teacher['samples_per_second_batch']:.1f} | " in table
    assert f"{fp32['samples_per_second_batch']:.1f} | {int8['samples_per_second_batch']:.1f} |" in table
