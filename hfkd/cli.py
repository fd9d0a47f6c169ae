"""The `hfkd` command: write a student's model card, or push a saved student to the Hub later.

    hfkd card runs/experiment_tweets                       # cards of the experiment's students (adaptive by default)
    hfkd push runs/distill_tweets --repo-id you/student    # a scripts/distill.py output folder
    hfkd push runs/experiment_tweets --repo-id you/student --model distilled [--private]
    hfkd push runs/distill_tweets --repo-id you/student --dry-run   # list the files a push uploads; send nothing
    hfkd compare runs/experiment_a runs/experiment_b --output comparison.json   # same models, two runs, paired
    hfkd export runs/experiment_tweets --quantize int8      # ONNX + INT8 in the student's onnx/, gated per domain

OUTPUT_DIR is a student folder (`scripts/distill.py`'s output_dir, or a stage folder of an experiment), or an
experiment / evaluation folder holding `results.json` (then `--model` picks the student). A push uploads the
student's top-level model, config, tokenizer and card files only (never `checkpoint-*/`, logs or run files);
`--dry-run` prints them, one path per line, and writes and uploads nothing. The token comes from `HF_TOKEN` or
`hf auth login`. `hfkd compare RUN_A RUN_B` compares the models two finished runs share, on the same rows, with the
paired bootstrap of the runs' own reports (refused, with the reason, when their rows differ). `hfkd export` writes the
student as ONNX (and INT8 with `--quantize int8`) to `<student>/onnx` (or `--output_dir`), checks every file against
the PyTorch student on the run's domains (agreement >= --min_agreement, and the 95 % interval of the macro-F1
difference reaching above -(--max_macro_f1_drop)), writes the table to export_report.json / .md and the card, and
exits 1 with one `error:` line when a file is off on some domain (the files and the table stay).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .evaluation.compare import compare_runs, format_comparison
from .evaluation.results import RESULTS_FILE, load_results
from .experiment.arguments import STUDENT_MODELS
from .hub.card import EXPORT_REPORT, EXPORT_TABLE, export_tables, make_model_card, write_model_card
from .hub.export import (
    MAX_MACRO_F1_DROP,
    MIN_AGREEMENT,
    QUANTIZE_CHOICES,
    ExportGateError,
    check_export,
    check_gate_bounds,
    default_output_dir,
    export_student,
    exported_files,
    gate_failure,
    gate_plan,
)
from .hub.push import push_student, student_files
from .launch import bad_input_errors, report_error, show_traceback

STUDENTS = STUDENT_MODELS


def resolve(
    output_dir: str, model: str | None, results_path: str | None
) -> tuple[str, dict[str, Any] | None, str | None]:
    """(student folder, results or None, model name or None) for OUTPUT_DIR; `ValueError` names what is there."""
    if not os.path.isdir(output_dir):
        raise ValueError(f"OUTPUT_DIR {output_dir!r} is not a folder; pass the output_dir of a run.")
    if os.path.isfile(os.path.join(output_dir, RESULTS_FILE)) and not os.path.isfile(
        os.path.join(output_dir, "config.json")
    ):
        results = load_results(output_dir)
        blocks = results.get("blocks") or []
        if len(blocks) != 1:
            raise ValueError(
                f"{output_dir} holds {len(blocks)} blocks (leave-one-out); pass one student's stage folder "
                f"(<output_dir>/<block>/<student>-<hash>) and --results {output_dir}."
            )
        stages = {n: s for n, s in (blocks[0].get("stages") or {}).items() if n != "teacher" and s.get("path")}
        name = model or next((m for m in STUDENTS if m in stages), None)
        if name not in stages:
            raise ValueError(f"--model {name!r} is not a student of {output_dir}; choose one of {sorted(stages)}.")
        return stages[name]["path"], results, name
    if not os.path.isfile(os.path.join(output_dir, "config.json")):
        raise ValueError(
            f"{output_dir} holds neither a model (config.json) nor {RESULTS_FILE}; pass a run's output_dir."
        )
    return output_dir, load_results(results_path) if results_path else None, model


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hfkd", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("card", "write the student's model card (README.md)"), ("push", "push a student to the Hub")):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("output_dir", metavar="OUTPUT_DIR", help="a student folder, or an experiment's output_dir")
        sub.add_argument("--model", help=f"the student of an experiment folder ({', '.join(STUDENTS)})")
        sub.add_argument("--results", help="results.json (or its folder) of an experiment or evaluation of the model")
        sub.add_argument("--repo-id", required=name == "push", help="Hub repo, e.g. your-name/minilm-l3-tweets")
        if name == "push":
            sub.add_argument("--private", action="store_true", help="create the repo as private")
            sub.add_argument(
                "--dry-run",
                action="store_true",
                help="print the files a push would upload, one per line; write and upload nothing (works offline)",
            )
    text = "compare the models two finished runs share, paired on the same rows and seeds"
    sub = commands.add_parser("compare", help=text, description=text)
    sub.add_argument("run_a", metavar="RUN_A", help="output_dir of a cross-domain run or an evaluation")
    sub.add_argument("run_b", metavar="RUN_B", help="output_dir of another run, evaluated on the same rows")
    sub.add_argument("--output", help="also write the comparisons (every domain included) to this JSON file")
    text = "export a student to ONNX (and INT8), checked against the PyTorch student on the run's domains"
    sub = commands.add_parser("export", help=text, description=text)
    sub.add_argument("run_dir", metavar="RUN_OR_MODEL_DIR", help="a student folder, or an experiment's output_dir")
    sub.add_argument("--model", help=f"the student of an experiment folder ({', '.join(STUDENTS)})")
    sub.add_argument("--results", help="results.json (or its folder) of an experiment or evaluation of the model")
    sub.add_argument(
        "--output_dir",
        "--output-dir",
        dest="export_dir",
        help="where the ONNX folder goes (default: onnx/ inside the student folder, which its card and a push show)",
    )
    sub.add_argument("--quantize", choices=QUANTIZE_CHOICES, help="also write model_quantized.onnx (dynamic INT8)")
    sub.add_argument(
        "--fp32_modules",
        "--fp32-modules",
        nargs="+",
        default=[],
        metavar="MODULE",
        help="with --quantize: modules kept in fp32, by path or fnmatch pattern (e.g. '*.layer.0')",
    )
    sub.add_argument(
        "--min_agreement",
        "--min-agreement",
        type=float,
        default=MIN_AGREEMENT,
        help=f"least share of rows, per domain, on which a file predicts the PyTorch label (default {MIN_AGREEMENT})",
    )
    sub.add_argument(
        "--max_macro_f1_drop",
        "--max-macro-f1-drop",
        type=float,
        default=MAX_MACRO_F1_DROP,
        help="per domain, the 95 %% interval of (file - PyTorch) macro-F1 must reach above minus this "
        f"(default {MAX_MACRO_F1_DROP})",
    )
    sub.add_argument("--batch_size", "--batch-size", type=int, default=64, help="batch size of the check")
    sub.add_argument(
        "--check_only",
        "--check-only",
        action="store_true",
        help="check the files already in the ONNX folder again; export nothing",
    )
    return parser


def export(args: argparse.Namespace) -> None:
    """`hfkd export`: export (unless --check_only), check, write the report and (for onnx/ in the student folder) the
    card; raises `ExportGateError` (one line) after all that when a file is off on some domain."""
    folder, results, model = resolve(args.run_dir, args.model, args.results)
    out = args.export_dir or default_output_dir(folder)
    if args.batch_size < 1:
        raise ValueError(f"--batch_size {args.batch_size} must be >= 1; e.g. 64.")
    if args.check_only and (args.quantize or args.fp32_modules):
        raise ValueError("--check_only exports nothing, so --quantize / --fp32_modules do not apply; drop them.")
    check_gate_bounds(args.min_agreement, args.max_macro_f1_drop)
    plan = gate_plan(folder, results, model)  # before exporting: a run without domains to check on fails at once
    if not args.check_only:
        export_student(folder, out, quantize=args.quantize, fp32_modules=args.fp32_modules)
        print(f"Exported {folder} to {out}: {', '.join(exported_files(out))}")
    report = check_export(
        folder,
        out,
        results=results,
        model=model,
        min_agreement=args.min_agreement,
        max_macro_f1_drop=args.max_macro_f1_drop,
        batch_size=args.batch_size,
        plan=plan,
    )
    print("\n".join(export_tables(report)))
    print(f"Wrote {os.path.join(out, EXPORT_REPORT)} and {os.path.join(out, EXPORT_TABLE)}")
    if os.path.realpath(out) == os.path.realpath(default_output_dir(folder)):  # the card reports onnx/ only
        print(f"Wrote {write_model_card(folder, results, model)}")
    failure = gate_failure(report)
    if failure:
        raise ExportGateError(failure)


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        if args.command == "compare":
            report = compare_runs(args.run_a, args.run_b)
            print(format_comparison(report))
            if args.output:
                with open(args.output, "w") as f:
                    json.dump(report, f, indent=2)
                print(f"Wrote {args.output}")
            return 0
        if args.command == "export":
            export(args)
            return 0
        folder, results, model = resolve(args.output_dir, args.model, args.results)
        if args.command == "card":
            print(f"Wrote {write_model_card(folder, results, model, args.repo_id)}")
        elif args.dry_run:
            files = student_files(folder)  # the very list push_student uploads
            make_model_card(folder, results, model, args.repo_id)  # the card a push would write: made, never saved
            print(f"dry run: a push of {folder} to {args.repo_id} uploads these files; nothing sent", file=sys.stderr)
            print("\n".join(files))
        else:
            url = push_student(folder, args.repo_id, private=args.private or None, results=results, model=model)
            print(f"Pushed {folder} to {args.repo_id}: {url}")
    except bad_input_errors() as error:
        if show_traceback():
            raise
        report_error(error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
