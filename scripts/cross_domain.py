"""Cross-domain transfer experiment: teacher, baseline student, distilled and domain-adaptive distilled students,
each evaluated on the test split of every domain, with a report.

The default: MiniLM-L6 teacher fine-tuned on airline tweets, 3-layer students, targets the other four tweet topics
(about 5-10 minutes on 2 CPU cores):

    accelerate launch scripts/cross_domain.py --config configs/experiment_tweets.yaml

Writes results.json, report.md, heatmap.png and retention.png to output_dir. A rerun with the same config reuses the
finished stages (`--overwrite` redoes them); `--mode leave_one_out` holds out each domain in turn. Any option can be
overridden on the command line, e.g. `--unlabeled_ratio 2 --temperature 4`. Every student folder gets a model card
(README.md) with the cross-domain table; `--push_to_hub true --hub_model_id NAME` pushes one student (`hub_student`).
"""

from __future__ import annotations

import os

from hfkd.data.arguments import DataArguments
from hfkd.distillation_config import DistillationArguments, StudentArguments
from hfkd.evaluation.report import format_ratio, format_score
from hfkd.experiment.arguments import ExperimentArguments
from hfkd.experiment.cross_domain import run_experiment
from hfkd.launch import exit_on_bad_input, launch_command, prepare_launch_environment, setup_logging
from hfkd.parser import HfkdParser
from hfkd.pipelines.finetune import ModelArguments


def make_parser() -> HfkdParser:
    return HfkdParser((ExperimentArguments, ModelArguments, DataArguments, StudentArguments, DistillationArguments))


def print_summary(results: dict, output_dir: str) -> None:
    print(f"\n{results['title']} ({results['mode']}), wall time {results['wall_time_s'] / 60:.1f} min")
    print(f"{'model':<12}{'in-domain F1':>14}{'target F1':>12}{'gap':>8}{'retention':>11}")
    for name, figures in results["overall"].items():
        print(
            f"{name:<12}{format_score(figures.get('in_domain_macro_f1')):>14}"
            f"{format_score(figures.get('target_mean_macro_f1')):>12}"
            f"{format_score(figures.get('transfer_gap_macro_f1')):>8}"
            f"{format_ratio(figures.get('retention_target_mean_macro_f1')):>11}"
        )
    print(f"Report: {os.path.join(output_dir, 'report.md')}")


def main(exp_args, model_args, data_args, student_args, args, command: str | None = None) -> dict:
    results = run_experiment(exp_args, model_args, data_args, student_args, args, command=command)
    if args.process_index == 0:
        print_summary(results, args.output_dir)
    return results


if __name__ == "__main__":
    with exit_on_bad_input():  # a bad input: one `error: ...` line and exit code 1 (HFKD_TRACEBACK=1: the traceback)
        prepare_launch_environment()
        setup_logging()
        main(*make_parser().parse_args_and_config(), command=launch_command("cross_domain"))
