"""Distil a fine-tuned teacher into a smaller student with `hfkd.DistillationTrainer`.

Student with 3 of the teacher's 6 layers, distilled on the airline tweets (fine-tune the teacher first):

    accelerate launch scripts/finetune.py --config configs/teacher_tweets.yaml
    accelerate launch scripts/distill.py --config configs/distill_tweets.yaml

Any option can be overridden on the command line, e.g. `--temperature 4 --num_train_epochs 1`.
Also runs as `python scripts/distill.py ...` and under `accelerate launch --num_processes 2 --cpu`. The output folder
gets a model card (README.md); `--push_to_hub true --hub_model_id NAME` then pushes the student to the Hub.
"""

from __future__ import annotations

import json

from hfkd.data.arguments import DataArguments
from hfkd.distillation_config import DistillationArguments, StudentArguments
from hfkd.launch import exit_on_bad_input, launch_command, prepare_launch_environment, setup_logging
from hfkd.parser import HfkdParser
from hfkd.pipelines.distill import distill


def make_parser() -> HfkdParser:
    return HfkdParser((DataArguments, StudentArguments, DistillationArguments))


def main(data_args: DataArguments, student_args: StudentArguments, args: DistillationArguments, command=None):
    metrics = distill(data_args, student_args, args, command=command)
    if args.process_index == 0:
        print(json.dumps(metrics, indent=2))
        print(f"Saved the student to {args.output_dir}")
    return metrics


if __name__ == "__main__":
    with exit_on_bad_input():  # a bad input: one `error: ...` line and exit code 1 (HFKD_TRACEBACK=1: the traceback)
        prepare_launch_environment()
        setup_logging()
        main(*make_parser().parse_args_and_config(), command=launch_command("distill"))
