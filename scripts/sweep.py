"""Search the student's recipe (learning rate, epochs, warm-up, clipping, temperature, alpha) on the source domains'
validation split, and write the best one as a config that the other scripts take.

Eight trials on the default experiment's data (its teacher is fine-tuned once, as scripts/cross_domain.py would, and
reused by it), then the experiment with the recipe found:

    python scripts/sweep.py --config configs/experiment_tweets.yaml --n_trials 8 --output_dir runs/sweep_tweets
    accelerate launch scripts/cross_domain.py --config runs/sweep_tweets/best_recipe.yaml

A config with a fine-tuned teacher (teacher_model_name_or_path) works as well, and its recipe runs with
scripts/distill.py. `--space learning_rate temperature=1:4` searches only those; `--output_config PATH` writes the
recipe elsewhere. Every trial, with its objective and optimizer steps, goes to sweep_trials.json beside the recipe.
Runs in one process. Needs optuna: pip install "hfkd[sweep]".
"""

from __future__ import annotations

import sys

from hfkd.data.arguments import DataArguments
from hfkd.distillation_config import DistillationArguments, StudentArguments
from hfkd.experiment.arguments import ExperimentArguments
from hfkd.experiment.sweep import SweepArguments, given_settings, run_sweep
from hfkd.launch import exit_on_bad_input, launch_command, prepare_launch_environment, setup_logging
from hfkd.parser import HfkdParser, load_yaml_config
from hfkd.pipelines.finetune import ModelArguments


def make_parser() -> HfkdParser:
    return HfkdParser(
        (SweepArguments, ExperimentArguments, ModelArguments, DataArguments, StudentArguments, DistillationArguments)
    )


def config_path(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def print_summary(summary: dict) -> None:
    objective = summary["objective"]
    names = list(summary["space"])
    print(f"\n{summary['n_trials']} trials, {objective} on the validation split of {summary['source_domains']}")
    print(f"{'trial':>5} {'recipe':>7} {objective:>14} {'steps':>6}  " + "  ".join(names))
    for trial in summary["trials"]:
        values = "  ".join(f"{trial['params'][n]:g}" for n in names)
        mark = " *" if trial["number"] == summary["best_trial"] else ""
        print(
            f"{trial['number']:>5} {trial['recipe']:>7} {trial['objective']:>14.4f} {trial['optimizer_steps']:>6}  "
            f"{values}{mark}"
        )
    comparison = summary.get("comparison")
    if comparison:
        print(
            f"best - config: {comparison['diff']:+.4f} [{comparison['ci_low']:+.4f}, {comparison['ci_high']:+.4f}] "
            f"({comparison['verdict']}; optimistic: the best of {summary['n_trials']} on these rows)"
        )
    print(f"Best recipe: {summary['output_config']}\nEvery trial: {summary['trials_file']}")


def main(sweep_args, exp_args, model_args, data_args, student_args, args, argv=None, command=None) -> dict:
    """Run the sweep; `argv` (the command line that was parsed) says which settings the written config takes over:
    the `--config` file's and the flags given. Without it, every setting that differs from its default."""
    parsed = (exp_args, model_args, data_args, student_args, args)
    path = base = None
    if argv is not None:
        path = config_path(argv)
        base = given_settings(argv, parsed, load_yaml_config(path) if path else None)
    summary = run_sweep(sweep_args, *parsed, base_config=base, config_path=path, command=command)

    if args.process_index == 0:
        print_summary(summary)
    return summary


if __name__ == "__main__":
    with exit_on_bad_input():  # a bad input: one `error: ...` line and exit code 1 (HFKD_TRACEBACK=1: the traceback)
        prepare_launch_environment()
        setup_logging()
        argv = sys.argv[1:]
        command = launch_command("sweep").replace("accelerate launch ", "python ", 1)  # the sweep is one process
        main(*make_parser().parse_args_and_config(argv), argv=argv, command=command)
