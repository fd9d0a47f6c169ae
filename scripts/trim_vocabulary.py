"""Trim a saved student's vocabulary to the tokens of some domains' training text (a smaller model folder).

The 3-layer student of the default experiment, trimmed to the training text of the five tweet topics (2000 rows each,
as the experiment samples them):

    python scripts/trim_vocabulary.py --model_name_or_path runs/experiment_tweets/airline/distilled-9fe920473b \
        --dataset tweets --max_train_samples 2000 --max_eval_samples 300 --output_dir runs/distilled_trimmed

The vocabulary keeps the special tokens, every token that text uses and, unless `--keep_characters false`, the single
characters with their ## forms; `vocabulary.json` in the output folder records what was kept, the parameters and
weights on disk before and after, and for every domain's splits the [UNK] rate before and after and how many texts the
trimmed tokenizer reads differently (an unseen word spelled in characters). Compare the two
folders' accuracy with scripts/evaluate_models.py.
"""

from __future__ import annotations

import json

from hfkd.data.arguments import DataArguments
from hfkd.data.source import load_data
from hfkd.launch import exit_on_bad_input, setup_logging
from hfkd.parser import HfkdParser
from hfkd.vocabulary import TrimArguments, trim_model_folder


def make_parser() -> HfkdParser:
    return HfkdParser((TrimArguments, DataArguments))


def main(trim_args: TrimArguments, data_args: DataArguments) -> dict:
    domains = load_data(data_args)  # the source_domains, or every domain when none are named
    texts = [text for splits in domains.values() for text in splits["train"]["text"]]
    eval_texts = {
        f"{name}/{split}": table["text"] for name, splits in domains.items() for split, table in splits.items()
    }
    record = trim_model_folder(
        trim_args.model_name_or_path,
        texts,
        trim_args.output_dir,
        keep_characters=trim_args.keep_characters,
        min_count=trim_args.min_count,
        eval_texts=eval_texts,
        overwrite=trim_args.overwrite_output_dir,
    )
    report, sizes = record["report"], record["weights_bytes"]
    kept = f"{report['used_tokens']} used, {report['character_tokens']} characters kept"
    print(f"Trimmed on {len(texts)} training texts of {', '.join(domains)}: vocabulary {report['original_size']} -> "
          f"{report['kept_size']} ({kept}).")  # fmt: skip
    print(f"Parameters {record['parameters']['before']:,} -> {record['parameters']['after']:,}; weights on disk "
          f"{sizes['before'] / 1e6:.1f} MB -> {sizes['after'] / 1e6:.1f} MB.")  # fmt: skip
    print(f"{'split':<32}{'[UNK] before':>14}{'[UNK] after':>14}{'texts read differently':>24}")
    for name, rates in record["unknown"].items():
        changed = record["changed"][name]
        share = changed["texts_changed"] / max(1, changed["texts"])
        print(f"{name:<32}{rates['before']['rate']:>14.4%}{rates['after']['rate']:>14.4%}{share:>24.2%}")
    print(json.dumps({"output_dir": trim_args.output_dir}))
    return record


if __name__ == "__main__":
    with exit_on_bad_input():  # a bad input: one `error: ...` line and exit code 1 (HFKD_TRACEBACK=1: the traceback)
        setup_logging()
        main(*make_parser().parse_args_and_config())
