"""Fine-tune a text classifier with a plain Accelerate loop: a teacher, or a no-distillation student baseline.

Teacher on the source domain (the embedded MiniLM on the built-in tweets):

    accelerate launch scripts/finetune.py --config configs/teacher_tweets.yaml

Baseline student (3 of the teacher's layers, no teacher signal), any option overridden on the command line:

    accelerate launch scripts/finetune.py --config configs/teacher_tweets.yaml \
        --student_num_layers 3 --output_dir runs/baseline_tweets

Also runs as `python scripts/finetune.py ...` and under `accelerate launch --num_processes 2 --cpu`.
"""

from __future__ import annotations

import json

from hfkd.data.arguments import DataArguments
from hfkd.distillation_config import StudentArguments
from hfkd.launch import exit_on_bad_input, prepare_launch_environment, setup_logging
from hfkd.parser import HfkdParser
from hfkd.pipelines.finetune import FinetuneArguments, ModelArguments, finetune


def make_parser() -> HfkdParser:
    return HfkdParser((ModelArguments, DataArguments, StudentArguments, FinetuneArguments))


def main(
    model_args: ModelArguments, data_args: DataArguments, student_args: StudentArguments, args: FinetuneArguments
):
    metrics = finetune(model_args, data_args, student_args, args)
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(json.dumps({k: v for k, v in metrics.items() if not k.endswith("_n")}, indent=2))
        print(f"Saved the fine-tuned model to {args.output_dir}")
    return metrics


if __name__ == "__main__":
    with exit_on_bad_input():  # a bad input: one `error: ...` line and exit code 1 (HFKD_TRACEBACK=1: the traceback)
        prepare_launch_environment()
        setup_logging()
        main(*make_parser().parse_args_and_config())
