"""Evaluate saved models on the test split of any domains; write results.json, report.md, heatmap.png, retention.png.

The models of the default experiment on every tweet topic, with the teacher as the reference:

    python scripts/evaluate_models.py --model_paths teacher=runs/teacher_tweets distilled=runs/distill_tweets \
        --dataset tweets --source_domains airline --max_length 64 --output_dir runs/evaluate_tweets

`--model_paths` takes 'name=path' entries (saved folders or Hub ids); the model named 'teacher' (or `--teacher NAME`)
is the reference for retention, agreement and KL. Works under `accelerate launch` too (rows are sharded).

Text without labels (a file with a text column): estimate each model's accuracy and macro-F1 there instead (ATC,
calibrated on the source validation split), written to label_free.json:

    python scripts/evaluate_models.py --model_paths distilled=runs/distill_tweets --dataset tweets \
        --source_domains airline --max_length 64 --unlabeled_files new_topic=my_tweets.csv --output_dir runs/label_free
"""

from __future__ import annotations

import os
import shlex
import sys

from hfkd.data.arguments import DataArguments
from hfkd.evaluation.report import format_score
from hfkd.evaluation.run import LABEL_FREE_FILE, EvaluationArguments, estimate_unlabeled, run_evaluation
from hfkd.launch import exit_on_bad_input, prepare_launch_environment, setup_logging
from hfkd.parser import HfkdParser


def make_parser() -> HfkdParser:
    return HfkdParser((EvaluationArguments, DataArguments))


def main(eval_args: EvaluationArguments, data_args: DataArguments, command: str | None = None) -> dict:
    if eval_args.unlabeled_files:  # domains without labels: the label-free estimate only
        out = estimate_unlabeled(eval_args, data_args)
        domains = list(out["unlabeled_files"])
        print(f"{'model':<16}" + "".join(f"{d[:14]:>16}" for d in domains))
        for name, per_domain in out["estimates"].items():
            print(f"{name:<16}" + "".join(f"{format_score(per_domain[d]['macro_f1']):>16}" for d in domains))
        written = os.path.join(eval_args.output_dir, LABEL_FREE_FILE)
        print(f"Estimated macro-F1 without labels (ATC). Written to {written}")
        return out
    results = run_evaluation(eval_args, data_args, command=command)
    if results["hardware"]["num_processes"] == 1 or int(os.environ.get("RANK", "0")) == 0:
        block = results["blocks"][0]
        print(f"{'model':<16}" + "".join(f"{d[:14]:>16}" for d in block["domains"]))
        for name, cells in block["metrics"].items():
            print(f"{name:<16}" + "".join(f"{format_score(cells[d]['macro_f1']):>16}" for d in block["domains"]))
        print(f"Macro-F1 on the test splits. Report: {os.path.join(eval_args.output_dir, 'report.md')}")
    return results


if __name__ == "__main__":
    with exit_on_bad_input():  # a bad input: one `error: ...` line and exit code 1 (HFKD_TRACEBACK=1: the traceback)
        prepare_launch_environment()
        setup_logging()
        command = "python scripts/evaluate_models.py " + shlex.join(sys.argv[1:])
        main(*make_parser().parse_args_and_config(), command=command)
