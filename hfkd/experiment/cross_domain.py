"""Cross-domain experiments: what `scripts/cross_domain.py` runs.

One *block* trains on the source domain(s) and evaluates on every domain:

1. `teacher`: the base model fine-tuned on the source labels (the plain Accelerate loop);
2. `baseline`: the student (the teacher's layers and head) fine-tuned on the source labels, no teacher term, for as
   many optimizer steps as the distilled student;
3. `distilled`: the same student distilled from the teacher on the source data ([`DistillationTrainer`]);
4. `adaptive`: the same, plus unlabeled training text of the target domains (those rows only get the KL term);
   `self_trained` (opt-in): `adaptive`, with the teacher's confident predictions on that text as hard labels
   (class-balanced, `hfkd.self_training`); `intermediate` (opt-in): `distilled` plus hidden-state and attention terms;
   `multi_teacher` (opt-in, two or more sources): `distilled` from one teacher per source domain (each trained once
   per run, shared by the blocks), their soft targets combined per row (`hfkd.multi_teacher`); `augmented` (opt-in):
   `distilled` on the source text plus augmented copies of it (`hfkd.augment`); `adaptive_augmented` (opt-in):
   `adaptive` plus augmented copies of the source and the unlabeled target text; `dapt_teacher` (opt-in): the base
   encoder trained as a masked LM on the source and target text (`hfkd.adaptation`) before the teacher's fine-tuning,
   and `dapt_student`: `adaptive`, cut from and distilled by that teacher;
5. every model evaluated on every domain ([`evaluate_models`]): a source on its test split (capped by
   `max_eval_samples`), a target on all the rows of its `target_eval_splits` (validation and test by default: its
   labels are never trained or selected on).

`mode="single"` runs one block; `mode="leave_one_out"` runs one block per domain, holding it out as the target. Each
stage is reused on a rerun with the same config (see `hfkd.experiment.stages`). The output folder gets `results.json`,
`report.md`, `heatmap.png` and `retention.png` (see `hfkd.evaluation.results`), rewritten after every block.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
import os
import time
from typing import Any

from accelerate import Accelerator, PartialState
from accelerate.utils import set_seed
from datasets import Dataset, DatasetDict, Value, concatenate_datasets
from transformers.trainer import TRAINER_STATE_NAME
from transformers.utils import logging

from ..adaptation import adapt_encoder
from ..augment import augment_dataset
from ..data.arguments import DataArguments
from ..data.domains import EVALUATION_SPLIT, cap_eval_splits, class_counts, evaluation_splits, scored_rows
from ..data.long_text import LongTextOptions, tokenize_texts
from ..data.source import domain_label_names, load_data, tokenize_source_splits
from ..distillation_config import DistillationArguments, StudentArguments
from ..evaluation.compare import save_predictions
from ..evaluation.matrix import evaluate_models
from ..evaluation.outputs import write_outputs
from ..evaluation.results import add_block, new_results
from ..evaluation.statistics import EXPORTED_SUFFIX
from ..fingerprints import domain_fingerprints, model_fingerprint, training_key
from ..hub.card import EXPORT_REPORT, INT8_FILE, write_model_card
from ..hub.export import OnnxClassifier, default_output_dir, export_student, require_export_packages
from ..hub.push import HubError, push_student, warn_if_push_will_fail
from ..inference import predict
from ..losses import IGNORE_INDEX
from ..models import load_classifier, load_teacher, load_tokenizer, set_loading_policy
from ..multi_teacher import combine_teacher_logits
from ..parser import config_to_dict
from ..pipelines.distill import (
    attach_teacher_logits,
    build_student,
    check_trimmed_vocabulary,
    train_student,
    warn_if_chunks_unused,
    warn_if_teacher_online,
)
from ..pipelines.finetune import LOOP_STATE_FILE, FinetuneArguments, ModelArguments, make_accelerator, train_classifier
from ..run_files import METRICS_FILE, last_complete_checkpoint, redact, write_run_info
from ..self_training import class_balanced_pseudo_labels
from ..teacher_logits import TEACHER_LOGITS_COLUMN
from .arguments import STUDENT_MODELS, TEACHER_MODELS, ExperimentArguments, parse_domain_weights
from .stages import run_stage

logger = logging.get_logger(__name__)


def finetune_arguments(args: DistillationArguments, output_dir: str, **overrides: Any) -> FinetuneArguments:
    """The plain loop's arguments with the same optimisation settings as the distillation ones (a fair baseline)."""
    values = dict(
        output_dir=output_dir,
        num_train_epochs=args.num_train_epochs,  # same optimizer steps as the Trainer's students
        max_steps=args.max_steps,
        per_device_train_batch_size=args.per_device_train_batch_size,
        per_device_eval_batch_size=args.per_device_eval_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        max_grad_norm=args.max_grad_norm,
        seed=args.seed,
        logging_steps=max(1, int(args.logging_steps)),
        save_total_limit=args.save_total_limit,
        mixed_precision=args.mixed_precision,
        dataloader_num_workers=args.dataloader_num_workers,
    )
    return FinetuneArguments(**(values | {k: v for k, v in overrides.items() if v is not None}))


def unlabeled_target_rows(
    domains: dict[str, DatasetDict],
    sources: list[str],
    targets: list[str],
    ratio: float,
    weights: dict[str, float] | None = None,
    seed: int = 42,
) -> tuple[Dataset, dict[str, int]]:
    """Training text of the targets with the labels dropped (`IGNORE_INDEX`): `ratio` rows per source row in all,
    shared among the targets by `weights` (equal by default). Only the targets' *train* splits are used."""
    weights = weights if weights else {name: 1.0 for name in targets}
    unknown = sorted(set(weights) - set(targets))
    if unknown:
        raise ValueError(
            f"target_domain_weights names {unknown}, which are not target domains of this block {targets}; weight "
            "only target domains."
        )
    total_weight = sum(weights.get(name, 0.0) for name in targets)
    wanted = ratio * sum(domains[name]["train"].num_rows for name in sources)
    parts, counts = [], {}
    for name in targets:
        table = domains[name]["train"]
        n = round(wanted * weights.get(name, 0.0) / total_weight)
        if n > table.num_rows:
            logger.warning(
                f"unlabeled_ratio asks for {n} unlabeled rows of {name!r} but its training split has "
                f"{table.num_rows}; all of them are used. Lower unlabeled_ratio to silence this."
            )
            n = table.num_rows
        counts[name] = n
        if n:
            rows = table.shuffle(seed=seed).select(range(n)).remove_columns("label")
            parts.append(rows.add_column("label", [IGNORE_INDEX] * n).cast_column("label", Value("int64")))
    if not parts:
        raise ValueError(f"No unlabeled target rows for the adaptive student (targets {targets}, weights {weights}).")
    return concatenate_datasets(parts), counts


@dataclasses.dataclass
class Block:
    """One block of an experiment: its source and target domains (their data), its folder and the data part of its
    stages' keys."""

    name: str
    sources: list[str]
    targets: list[str]
    domains: dict[str, DatasetDict]
    folder: str
    data_key: dict[str, Any]
    evaluation: dict[str, DatasetDict] = dataclasses.field(default_factory=dict)
    """Per domain the `validation` rows and the `evaluation` rows it is scored on (`evaluation_splits`)."""


class Experiment:
    """The stages of the blocks of one experiment, sharing the loaded data; see the module docstring."""

    def __init__(
        self,
        exp_args: ExperimentArguments,
        model_args: ModelArguments,
        data_args: DataArguments,
        student_args: StudentArguments,
        args: DistillationArguments,
        command: str | None = None,
    ):
        self.exp, self.model_args, self.data_args = exp_args, model_args, data_args
        self.student_args, self.args = student_args, args
        self.command = command
        self.predictions: dict[str, tuple[dict, dict]] = {}  # block -> (references, predicted ids), for compare
        if not (student_args.builds_student or args.student_model_name_or_path):
            raise ValueError(
                "No student is configured: set student_num_layers (e.g. 3: the teacher's layers spread evenly), "
                "student_layer_ids, or student_model_name_or_path."
            )
        check_trimmed_vocabulary(student_args, args)  # before any stage trains
        if exp_args.export:
            require_export_packages("onnx", "onnxscript", "onnxruntime")
        if student_args.student_vocabulary == "trimmed" and "intermediate" in exp_args.models:
            raise ValueError(
                "student_vocabulary='trimmed' with 'intermediate' in models: the intermediate terms need the teacher "
                "online on the student's token ids, which a trimmed vocabulary changes. Drop 'intermediate' or set "
                "student_vocabulary: full."
            )
        self.weights = parse_domain_weights(exp_args.target_domain_weights)
        if args.push_to_hub and exp_args.mode != "single":
            raise ValueError(
                f"push_to_hub is set with mode={exp_args.mode!r}, which trains one student per block; push from mode "
                "single, or push one block's student afterwards with `hfkd push <output_dir>/<block>/<student>-<hash> "
                "--repo-id NAME`."
            )
        warn_if_push_will_fail(args)
        set_loading_policy(args.allow_pickle_weights)
        self.accelerator: Accelerator | None = None

    # ---- plan -----------------------------------------------------------------------------------------------

    def blocks(self, available: list[str]) -> list[tuple[str, list[str], list[str]]]:
        """(name, sources, targets) of every block."""
        sources, targets = self.data_args.source_domains, self.exp.target_domains
        if self.exp.mode == "leave_one_out":
            # the pool: the named domains when targets are named (sources included), else every domain loaded
            pool = list(dict.fromkeys((sources or []) + targets)) if targets else available
            if len(pool) < 2:
                raise ValueError(f"mode=leave_one_out needs at least 2 domains; got {pool}. Add domains.")
            return [(f"holdout-{d}", [s for s in pool if s != d], [d]) for d in pool]
        if not sources:
            raise ValueError(
                "source_domains is not set; name the domain(s) to train on, e.g. source_domains: [airline] (or use "
                f"mode: leave_one_out). Domains: {available}."
            )
        targets = targets or [d for d in available if d not in sources]
        overlap = sorted(set(sources) & set(targets))
        if overlap:
            raise ValueError(f"Domains {overlap} are both sources and targets; a domain is one or the other.")
        if not targets:
            raise ValueError(f"No target domains: every domain is a source ({sources}). Leave some out.")
        return [("+".join(sources), list(sources), list(targets))]

    # ---- run ------------------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        wall_start = time.perf_counter()
        state, data = PartialState(), self.data_args
        output_dir = self.args.output_dir
        # Without target_domains every domain of the dataset is loaded: the ones that are not sources are targets.
        wanted = None
        if self.exp.target_domains:
            wanted = list(dict.fromkeys((data.source_domains or []) + self.exp.target_domains))
        with state.main_process_first():
            loaded = load_data(data, wanted, cap_eval=False)
        # what training and selection see: max_eval_samples caps validation and test (a target's scored rows are
        # taken from `loaded`, uncapped, per block)
        domains = cap_eval_splits(
            loaded, data.max_eval_samples, split_seed=data.split_seed, deduplicate=data.deduplicate
        )
        plan = self.blocks(list(domains))
        self.fingerprints = domain_fingerprints(domains)
        self.labels = domain_label_names(domains)
        config = redact(config_to_dict(self.exp, self.model_args, data, self.student_args, self.args))
        if state.is_main_process:
            write_run_info(output_dir, "cross_domain", config, extra={"blocks": [b[0] for b in plan]})
        counts = class_counts(loaded)
        results = new_results(
            title=f"Cross-domain distillation on {os.path.basename(str(data.dataset).rstrip('/'))}",
            mode=self.exp.mode,
            dataset=data.dataset,
            label_names=self.labels,
            teacher="teacher",
            config=config,
            command=self.command,
            seeds={
                "seed": self.args.seed,
                "seeds": self.seeds,
                "data_seed": self.args.data_seed,
                "split_seed": data.split_seed,
            },
            data={
                "fingerprints": self.fingerprints,
                "rows": {n: {s: t.num_rows for s, t in d.items()} for n, d in loaded.items()},
                "class_counts": counts,
                "small_classes": [],
            },
        )
        for name, sources, targets in plan:
            block_domains = {d: domains[d] for d in sources + targets}
            scored = evaluation_splits(
                {d: loaded[d] for d in sources + targets},
                sources,
                self.exp.target_eval_splits,
                data.max_eval_samples,
                max_target_eval_samples=self.exp.max_target_eval_samples,
                split_seed=data.split_seed,
                deduplicate=data.deduplicate,
            )
            block = self.run_block(name, sources, targets, block_domains, scored)
            small = results["data"]["small_classes"]
            small += [c for c in block["evaluation_rows"]["small_classes"] if c not in small]
            add_block(
                results,
                block,
                self.describe_models(block),
                time.perf_counter() - wall_start,
                predictions=self.predictions,
            )
            if state.is_main_process:  # after every block: a long leave-one-out run keeps what it finished
                write_outputs(results, output_dir)
                save_predictions(output_dir, self.predictions)  # for `hfkd compare` with another run
                for model, stage in block["stages"].items():
                    if model in STUDENT_MODELS:  # every student folder carries its card, with the evidence so far
                        for run in stage.get("seeds") or [stage]:
                            write_model_card(run["path"], results, model)
        state.wait_for_everyone()
        if self.args.push_to_hub and state.is_main_process:
            self.push(results)
        return results

    def push(self, results: dict[str, Any]) -> str:
        """Push the `hub_student` of the (single) block, its card carrying the whole cross-domain table."""
        stages = results["blocks"][0]["stages"]
        trained = [m for m in STUDENT_MODELS if m in stages]
        name = self.exp.hub_student or (trained[0] if trained else None)
        if name not in trained:
            raise HubError(
                f"push_to_hub is set but no student was trained (models: {list(stages)}); add one to models."
            )
        args = self.args
        path = stages[name]["path"]
        return push_student(
            path, args.hub_model_id, private=args.hub_private_repo, token=args.hub_token, results=results, model=name
        )

    def run_block(
        self,
        name: str,
        sources: list[str],
        targets: list[str],
        domains: dict[str, DatasetDict],
        evaluation: dict[str, DatasetDict] | None = None,
    ):
        """Train (or reuse) the stages of one block in order, then evaluate every model on every domain: on the
        `evaluation` split of `evaluation` (see `hfkd.data.evaluation_splits`), by default on the domains' test
        splits."""
        logger.info(f"Block {name}: sources {sources} -> targets {targets}")
        data_key = {
            "sources": {d: self.fingerprints[d] for d in sources},
            "max_length": self.data_args.max_length,
            "labels": self.labels,
        }
        if self.long_text.input_key():  # the training inputs; only when not the defaults (earlier keys stay)
            data_key["long_text"] = self.long_text.input_key()
        if evaluation is None:
            evaluation = {
                d: DatasetDict({"validation": s["validation"], EVALUATION_SPLIT: s["test"]})
                for d, s in domains.items()
            }
        block = Block(name, sources, targets, domains, os.path.join(self.args.output_dir, name), data_key, evaluation)
        runs: dict[str, list[dict[str, Any]]] = {}  # model -> its stage of each seed
        for seed in self.seeds:
            args = dataclasses.replace(self.args, seed=seed)
            teacher = self.teacher_stage(block, args)
            seed_stages = {"teacher": teacher}
            if "baseline" in self.exp.models:
                seed_stages["baseline"] = self.baseline_stage(block, teacher, args)
            for stage in ("distilled", "adaptive", "self_trained", "augmented", "adaptive_augmented", "intermediate"):
                if stage in self.exp.models:
                    seed_stages[stage] = self.student_stage(stage, block, teacher, args)
            if "multi_teacher" in self.exp.models:
                seed_stages["multi_teacher"] = self.multi_teacher_stage(block, teacher, args)
            if "dapt_teacher" in self.exp.models:
                adapted = seed_stages["dapt_teacher"] = self.dapt_teacher_stage(block, args)
                if "dapt_student" in self.exp.models:
                    seed_stages["dapt_student"] = self.student_stage("dapt_student", block, adapted, args)
            for model, stage in seed_stages.items():
                runs.setdefault(model, []).append(stage | {"seed": seed})
        if self.exp.export:  # the exported INT8 file of every student, scored as a model of its own
            for model in [m for m in runs if m in STUDENT_MODELS]:
                runs[f"{model}{EXPORTED_SUFFIX}"] = [self.export_stage(stage) for stage in runs[model]]
        # a model's stage is that of the first seed, plus the list of every seed's when there are several
        stages = {
            model: per_seed[0] | ({"seeds": per_seed} if len(per_seed) > 1 else {}) for model, per_seed in runs.items()
        }
        evaluated, self.predictions[name] = self.evaluate_block(block, runs)
        return {"name": name} | evaluated | {"evaluation_rows": self.evaluation_rows(block), "stages": stages}

    def export_stage(self, stage: dict[str, Any]) -> dict[str, Any]:
        """The student of `stage` exported to ONNX and dynamic INT8 in its `onnx/` folder (`hfkd.hub.export`), reused
        while the export report names the student's current weights."""
        folder, started = default_output_dir(stage["path"]), time.time()
        report_path = os.path.join(folder, EXPORT_REPORT)
        reused = os.path.isfile(os.path.join(folder, INT8_FILE)) and os.path.isfile(report_path)
        if reused:
            with open(report_path) as f:
                reused = json.load(f).get("student_fingerprint") == model_fingerprint(stage["path"])
        state = PartialState()
        if not reused and state.is_main_process:
            logger.info(f"Exporting {stage['path']} to ONNX and INT8 in {folder}.")
            export_student(stage["path"], folder, quantize="int8")
        state.wait_for_everyone()
        wall = None if reused else time.time() - started
        return {"path": folder, "student": stage["path"], "reused": reused, "wall_time_s": wall, "seed": stage["seed"]}

    def evaluation_rows(self, block: Block) -> dict[str, Any]:
        """What each domain of a block was scored on: its splits, rows and rows per class; and the classes with
        fewer than `MIN_CLASS_ROWS` of them (each logged as a warning)."""
        return scored_rows(
            block.evaluation,
            block.sources,
            self.exp.target_eval_splits,
            self.data_args.max_eval_samples,
            self.exp.max_target_eval_samples,
        )

    @property
    def seeds(self) -> list[int]:
        """The training seeds: `seeds`, else the one `seed`."""
        return list(self.exp.seeds) if self.exp.seeds else [self.args.seed]

    # ---- the stages of a block ---------------------------------------------------------------------------------

    def teacher_stage(self, block: Block, args: DistillationArguments) -> dict[str, Any]:
        """1. The teacher: `model_name_or_path` fine-tuned on the source labels, or the given
        `teacher_model_name_or_path` (keyed by the hash of its weights, so students are redone when it changes)."""
        given = args.teacher_model_name_or_path
        if given:
            if self.exp.mode == "leave_one_out":
                logger.warning(
                    "teacher_model_name_or_path is set in leave_one_out mode: the same teacher serves every block, "
                    "so it may have been trained on the held-out domain. Leave it unset to train one per block."
                )
            return {"path": given, "hash": model_fingerprint(given), "reused": True, "given": True, "train": {}}
        base = self.model_args.model_name_or_path
        return self._fine_tuned_teacher("teacher", block, args, base)

    def _fine_tuned_teacher(
        self, name: str, block: Block, args: DistillationArguments, start: str, **more_key: Any
    ) -> dict[str, Any]:
        """The stage `name`: the model at `start` fine-tuned on the block's source labels with the teacher's recipe;
        `more_key` says what `start` is when it is not `model_name_or_path` itself."""
        teacher_args = finetune_arguments(
            args,
            "",
            num_train_epochs=self.exp.teacher_num_train_epochs,
            learning_rate=self.exp.teacher_learning_rate,
        )
        key = {"stage": name, "model": self.model_args.model_name_or_path, "data": block.data_key} | more_key
        key["training"] = training_key(teacher_args)
        train = functools.partial(self._train_teacher, block, teacher_args, start)
        return self._stage(name, block.folder, key, train, args.seed)

    def dapt_teacher_stage(self, block: Block, args: DistillationArguments) -> dict[str, Any]:
        """7. `dapt_teacher` (domain-adaptive pre-training, Gururangan et al. 2020): the base model's encoder trained
        as a masked LM on the source training text and the adaptive student's unlabeled target text (its own stage,
        `dapt_encoder`, whose folder also keeps the masked LM in `mlm/`), then fine-tuned on the source labels like
        the teacher. Its record carries the encoder stage under `encoder`."""
        if args.teacher_model_name_or_path:
            raise ValueError(
                "models has 'dapt_teacher', which adapts and fine-tunes model_name_or_path, but "
                "teacher_model_name_or_path gives one ready teacher; unset it or drop 'dapt_teacher'/'dapt_student'."
            )
        base = self.model_args.model_name_or_path
        key = {"stage": "dapt_encoder", "model": base, "data": block.data_key, "unlabeled": self.unlabeled_key(block)}
        key["mlm"] = {
            "num_train_epochs": self.exp.dapt_num_train_epochs,
            "learning_rate": self.exp.dapt_learning_rate,
            "mlm_probability": self.exp.dapt_mlm_probability,
            "batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps,
            "seed": args.seed,
        }
        adapt = functools.partial(self._adapt, block, args)
        encoder = self._stage("dapt_encoder", block.folder, key, adapt, args.seed)
        teacher = self._fine_tuned_teacher("dapt_teacher", block, args, encoder["path"], adapted=encoder["hash"])
        return teacher | {"encoder": {k: encoder[k] for k in ("path", "hash", "reused", "wall_time_s", "train")}}

    def unlabeled_key(self, block: Block) -> dict[str, Any]:
        """What the unlabeled target rows of a block depend on (beside the seed, in every stage key)."""
        return {
            "targets": {d: self.fingerprints[d] for d in block.targets},
            "ratio": self.exp.unlabeled_ratio,
            "weights": self.weights,
        }

    def baseline_stage(self, block: Block, teacher: dict[str, Any], args: DistillationArguments) -> dict[str, Any]:
        """2. The baseline: the student (the teacher's layers and head) fine-tuned on the source labels alone, with the
        loop and recipe of the teacher and as many optimizer steps as the distilled student."""
        base_args = finetune_arguments(args, "")
        key = {"stage": "baseline", "teacher": teacher["hash"], "data": block.data_key, "student": self.student_key}
        key["training"] = training_key(base_args)
        train = functools.partial(self._train_baseline, block, base_args, teacher["path"])
        return self._stage("baseline", block.folder, key, train, args.seed)

    def student_stage(
        self, stage: str, block: Block, teacher: dict[str, Any], args: DistillationArguments
    ) -> dict[str, Any]:
        """3. to 5. The distilled students: `distilled` (the source data), `adaptive` (plus the targets' unlabeled
        text), `self_trained` (`adaptive` plus hard pseudo-labels on that text, in `self_training_rounds` rounds: each
        round a stage of its own, labelled by the previous round's student) and `intermediate` (plus hidden-state and
        attention terms)."""
        stage_args = self.stage_arguments(stage, args)
        key = {"stage": stage, "teacher": teacher["hash"], "data": block.data_key, "student": self.student_key}
        key["training"] = training_key(stage_args)
        if self.long_text.window_key():  # how the teacher reads whole texts for its soft targets (and labels)
            key["teacher_long_text"] = self.long_text.window_key()
        unlabeled = stage in ("adaptive", "self_trained", "dapt_student", "adaptive_augmented")
        augment = stage in ("augmented", "adaptive_augmented")
        if unlabeled:
            key["unlabeled"] = self.unlabeled_key(block)
        if augment:
            key["augment"] = {
                "factor": self.exp.augment_factor,
                "methods": list(self.exp.augment_methods),
                "mlm_model": model_fingerprint(self.exp.augment_mlm_model) if self.exp.augment_mlm_model else None,
            }
        if stage != "self_trained":
            train = functools.partial(self._distill, block, teacher["path"], unlabeled, stage_args, augment=augment)
            return self._stage(stage, block.folder, key, train, args.seed)
        labeler, rounds = teacher, self.exp.self_training_rounds
        for r in range(1, rounds + 1):
            key["self_training"] = {
                "fraction": self.exp.self_training_fraction,
                "round": r,
                "labeler": labeler["hash"],
            }
            train = functools.partial(self._distill, block, teacher["path"], True, stage_args, labeler=labeler["path"])
            name = stage if r == rounds else f"{stage}-round{r}"
            labeler = self._stage(name, block.folder, dict(key), train, args.seed)
        return labeler

    def source_teachers(self, block: Block, args: DistillationArguments) -> list[dict[str, Any]]:
        """One teacher per source domain of the block, fine-tuned on that domain alone like the block's teacher on all
        of them. Kept in `<output_dir>/single-source/`: a domain's teacher is trained once per seed and shared by every
        block that has it among its sources (in leave-one-out, all but one)."""
        folder = os.path.join(self.args.output_dir, "single-source")
        return [
            self.teacher_stage(
                dataclasses.replace(
                    block,
                    name=domain,
                    sources=[domain],
                    folder=folder,
                    data_key=block.data_key | {"sources": {domain: self.fingerprints[domain]}},
                ),
                args,
            )
            for domain in block.sources
        ]

    def multi_teacher_stage(self, block: Block, teacher: dict[str, Any], args: DistillationArguments) -> dict:
        """6. `multi_teacher`: the student cut from the block's teacher (as `distilled`), distilled on the source data
        from the per-domain teachers' soft targets combined per row (`multi_teacher_weighting`)."""
        if len(block.sources) < 2:
            raise ValueError(
                f"models has 'multi_teacher', which needs two or more source domains, but block {block.name!r} has "
                f"{block.sources}; use mode leave_one_out or name several source_domains, or drop 'multi_teacher'."
            )
        if args.teacher_model_name_or_path:
            raise ValueError(
                "models has 'multi_teacher', which fine-tunes one teacher per source domain, but "
                "teacher_model_name_or_path gives one ready teacher; unset it or drop 'multi_teacher'."
            )
        teachers = self.source_teachers(block, args)
        key = {
            "stage": "multi_teacher",
            "teacher": teacher["hash"],
            "data": block.data_key,
            "student": self.student_key,
        }
        key["training"] = training_key(args)
        key["teachers"] = {t["hash"]: d for t, d in zip(teachers, block.sources, strict=True)}
        key["weighting"] = self.exp.multi_teacher_weighting
        if self.long_text.window_key():
            key["teacher_long_text"] = self.long_text.window_key()
        paths = [t["path"] for t in teachers]
        train = functools.partial(self._distill_multi, block, teacher["path"], paths, args)
        return self._stage("multi_teacher", block.folder, key, train, args.seed) | {"teachers": paths}

    def evaluate_block(self, block: Block, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        """Every model of the block, each of its seeds, on every domain of it (`hfkd.evaluation.evaluate_models`)."""
        if self.accelerator is None:
            self.accelerator = Accelerator(mixed_precision=self.args.mixed_precision)
        models: dict[str, list] = {}
        for name, per_seed in runs.items():
            # a given teacher serves every seed: evaluated once (the statistics pair it with each seed's students)
            paths = list(dict.fromkeys(stage["path"] for stage in per_seed))
            models[name] = paths
            if name.endswith(EXPORTED_SUFFIX):  # an INT8 file, run by onnxruntime behind a model's interface
                models[name] = [(OnnxClassifier.from_pretrained(p, INT8_FILE), load_tokenizer(p)) for p in paths]
        return evaluate_models(
            models,
            block.evaluation,
            teacher="teacher",
            source_domains=block.sources,
            split=EVALUATION_SPLIT,
            max_length=self.data_args.max_length,
            batch_size=self.args.per_device_eval_batch_size,
            accelerator=self.accelerator,
            extra_metrics=self.exp.extra_metrics,
            return_predictions=True,
            select_by=self.exp.select_student_by,
            long_text_options=self.long_text,
            other_teachers=[name for name in runs if name in TEACHER_MODELS and name != "teacher"],
        )

    @property
    def long_text(self) -> LongTextOptions:
        """How long texts are fed to the models (`DataArguments.long_text_options`): one place for every stage."""
        return self.data_args.long_text_options

    @property
    def student_key(self) -> dict[str, Any]:
        """What every student stage's key holds about the student: how it is cut, or the checkpoint it starts from."""
        return training_key(self.student_args) | {"student_model": self.args.student_model_name_or_path}

    # ---- stage bodies -----------------------------------------------------------------------------------------

    def _stage(self, name: str, block_dir: str, key: dict[str, Any], train, seed: int) -> dict[str, Any]:
        """`run_stage`, with the RNG seeded first: a new classification head or student is initialised the same way
        whatever ran before it in this process, so a stage redone alone gives the model it gave in a full run."""

        def seeded(folder: str, resume: bool) -> dict[str, Any]:
            set_seed(seed)
            return train(folder, resume)

        return run_stage(name, block_dir, key, seeded, overwrite=self.exp.overwrite)

    def _load_teacher(self, path: str):
        return load_teacher(path, self.labels), load_tokenizer(path)

    def _train_teacher(self, block: Block, teacher_args: FinetuneArguments, start: str, folder: str, resume: bool):
        stage_args = dataclasses.replace(teacher_args, output_dir=folder, resume_from_checkpoint=_last(folder))
        model = load_classifier(start, label_names=self.labels)
        tokenizer = load_tokenizer(start)
        return self._finetune(model, tokenizer, block, stage_args)

    def _adapt(self, block: Block, args: DistillationArguments, folder: str, resume: bool) -> dict[str, Any]:
        """Masked-LM training of the base encoder on the block's source training text plus its unlabeled target rows
        (`hfkd.adaptation.adapt_encoder`); the sources' validation text measures the masked-LM loss before and after.
        An interrupted run starts over (one epoch of masked-LM training keeps no checkpoints)."""
        sources = [block.domains[d] for d in block.sources]
        unlabeled, counts = unlabeled_target_rows(
            block.domains, block.sources, block.targets, self.exp.unlabeled_ratio, self.weights, seed=args.seed
        )
        texts = [text for table in sources for text in table["train"]["text"]] + list(unlabeled["text"])
        logger.info(f"dapt_encoder: masked-LM training on {len(texts)} texts (unlabeled target rows {counts})")
        adapt_encoder(
            self.model_args.model_name_or_path,
            texts,
            folder,
            eval_texts=[text for table in sources for text in table["validation"]["text"]],
            max_length=self.data_args.max_length,
            mlm_probability=self.exp.dapt_mlm_probability,
            num_train_epochs=self.exp.dapt_num_train_epochs,
            learning_rate=self.exp.dapt_learning_rate,
            per_device_train_batch_size=args.per_device_train_batch_size,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            weight_decay=args.weight_decay,
            warmup_steps=args.warmup_steps,
            seed=args.seed,
            logging_steps=args.logging_steps,
            bf16=args.bf16,
            fp16=args.fp16,
            disable_tqdm=args.disable_tqdm,
        )
        with open(os.path.join(folder, METRICS_FILE)) as f:
            metrics = json.load(f)
        return metrics | {"unlabeled_rows": counts}

    def _train_baseline(
        self, block: Block, base_args: FinetuneArguments, teacher_path: str, folder: str, resume: bool
    ):
        stage_args = dataclasses.replace(base_args, output_dir=folder, resume_from_checkpoint=_last(folder))
        model, teacher_tokenizer = self._load_teacher(teacher_path)
        student, tokenizer = self._build_student(model, teacher_tokenizer, block, self.args)
        del model
        return self._finetune(student, tokenizer, block, stage_args)

    def _build_student(self, teacher, teacher_tokenizer, block: Block, args, extra: Dataset | None = None):
        """`build_student` with the text the student trains on: the block's source training text, plus `extra` rows
        (the unlabeled target text); a narrower student keeps the teacher's units most active on it, a trimmed
        vocabulary the tokens it uses."""
        texts = [text for d in block.sources for text in block.domains[d]["train"]["text"]]
        texts += list(extra["text"]) if extra is not None else []
        return build_student(
            teacher, teacher_tokenizer, self.student_args, args, self.labels, texts, self.data_args.max_length
        )

    def _finetune(self, model, tokenizer, block: Block, stage_args: FinetuneArguments) -> dict[str, Any]:
        accelerator = make_accelerator(stage_args)
        sources = {d: block.domains[d] for d in block.sources}
        splits = tokenize_source_splits(
            sources,
            tokenizer,
            self.data_args.max_length,
            accelerator.main_process_first,
            long_text_options=self.long_text,
        )
        metrics = train_classifier(model, tokenizer, splits.train, splits.validation, stage_args, accelerator)
        del model
        gc.collect()
        return metrics

    def stage_arguments(self, stage: str, args: DistillationArguments) -> DistillationArguments:
        """The distillation settings of a student stage: those of `args` (the config's, with the stage's seed), plus
        the intermediate terms for 'intermediate'."""
        if stage != "intermediate":
            return args
        return dataclasses.replace(
            args,
            hidden_weight=self.exp.intermediate_hidden_weight,
            attention_weight=self.exp.intermediate_attention_weight,
        )

    def _distill(
        self,
        block: Block,
        teacher_path: str,
        adaptive: bool,
        base_args: DistillationArguments,
        folder: str,
        resume: bool,
        labeler: str | None = None,
        augment: bool = False,
    ) -> dict[str, Any]:
        """Distil a student of the block from the teacher at `teacher_path` into `folder`; `adaptive` adds the
        targets' unlabeled training text (soft targets only), which the model at `labeler` (self-training) gives
        class-balanced hard labels where it is confident; `augment` adds augmented copies of the source text (and of
        that target text)."""
        sources, targets, domains = block.sources, block.targets, block.domains
        args = dataclasses.replace(
            base_args, output_dir=folder, resume_from_checkpoint=_last(folder), teacher_model_name_or_path=teacher_path
        )
        teacher, teacher_tokenizer = self._load_teacher(teacher_path)
        if adaptive:
            unlabeled, counts = unlabeled_target_rows(
                domains, sources, targets, self.exp.unlabeled_ratio, self.weights, seed=args.seed
            )
        student, tokenizer = self._build_student(
            teacher, teacher_tokenizer, block, args, unlabeled if adaptive else None
        )
        warn_if_teacher_online(args)
        warn_if_chunks_unused(args, self.long_text)
        cache, max_length = args.uses_logit_cache, self.data_args.max_length
        first = PartialState().main_process_first
        splits = tokenize_source_splits(
            {d: domains[d] for d in sources}, tokenizer, max_length, first, cache, long_text_options=self.long_text
        )
        train, validation = splits.train, splits.validation
        if augment:
            tables = {d: domains[d]["train"] for d in sources}
            if adaptive:  # the unlabeled rows hold each target's rows in turn (`counts`, in order)
                start = 0
                for name, n in counts.items():
                    tables[f"unlabeled:{name}"] = unlabeled.select(range(start, start + n))
                    start += n
            made = self.augmented_rows(tables, args.seed)
            logger.info(f"Augmented student: {len(train)} labelled source rows + {len(made)} augmented rows")
            train = self.with_extra_rows(train, made, tokenizer, cache, args.seed, "Tokenizing augmented text")
        if adaptive:
            logger.info(f"Adaptive student: {len(train)} source (and augmented) rows + unlabeled target rows {counts}")
            if labeler is not None:
                unlabeled, kept = self.pseudo_label(unlabeled, labeler)
                logger.info(f"Self-training: {kept} of {len(unlabeled)} target rows get the labeller's hard label")
            train = self.with_extra_rows(
                train, unlabeled, tokenizer, cache, args.seed, "Tokenizing unlabeled target text"
            )
        if cache:  # computed once per (teacher, data), then the teacher leaves memory before training
            train, validation = attach_teacher_logits(
                [train, validation], args, self.labels, max_length, teacher, long_text_options=self.long_text
            )
            teacher = None
        metrics = train_student(student, tokenizer, teacher, teacher_tokenizer, train, validation, args)
        if adaptive:
            metrics["unlabeled_rows"] = counts
        if labeler is not None:
            metrics["pseudo_labelled_rows"] = kept
        if augment:
            metrics["augmented_rows"] = len(made)
        del teacher, student
        gc.collect()
        return metrics

    def _distill_multi(
        self,
        block: Block,
        teacher_path: str,
        teacher_paths: list[str],
        base_args: DistillationArguments,
        folder: str,
        resume: bool,
    ) -> dict[str, Any]:
        """Distil the student cut from the block's teacher from the combined soft targets of `teacher_paths` (one per
        source domain), computed once on the source train and validation rows and attached as the cached-logit
        column."""
        args = dataclasses.replace(
            base_args, output_dir=folder, resume_from_checkpoint=_last(folder), teacher_model_name_or_path=None
        )
        init, init_tokenizer = self._load_teacher(teacher_path)
        student, tokenizer = self._build_student(init, init_tokenizer, block, args)
        del init
        sources = {d: block.domains[d] for d in block.sources}
        first = PartialState().main_process_first
        splits = tokenize_source_splits(
            sources, tokenizer, self.data_args.max_length, first, long_text_options=self.long_text
        )
        attached = []
        for split, tokenized in (("train", splits.train), ("validation", splits.validation)):
            rows = concatenate_datasets([table[split] for table in sources.values()])  # the order of `tokenized`
            logits = []
            for path in teacher_paths:
                model, model_tokenizer = self._load_teacher(path)
                found = predict(
                    model,
                    model_tokenizer,
                    rows,
                    label_names=self.labels,
                    max_length=self.data_args.max_length,
                    batch_size=self.args.per_device_eval_batch_size,
                    desc=f"Tokenizing {split} rows for a source teacher",
                    long_text_options=self.long_text,
                )
                logits.append(found.logits)
                del model
            combined = combine_teacher_logits(logits, self.exp.multi_teacher_weighting)
            attached.append(tokenized.add_column(TEACHER_LOGITS_COLUMN, combined.tolist()))
        metrics = train_student(student, tokenizer, None, None, attached[0], attached[1], args)
        metrics["teachers"] = len(teacher_paths)
        del student
        gc.collect()
        return metrics

    def with_extra_rows(self, train: Dataset, rows: Dataset, tokenizer, keep_text: bool, seed: int, desc: str):
        """`train` (tokenised) plus untokenised `rows` (`text`, `label`), tokenised as every input is, shuffled."""
        with PartialState().main_process_first():
            rows = rows.map(
                lambda batch: tokenize_texts(tokenizer, batch["text"], self.data_args.max_length, self.long_text),
                batched=True,
                remove_columns=[] if keep_text else ["text"],
                desc=desc,
            ).rename_column("label", "labels")
        return concatenate_datasets([train.cast_column("labels", Value("int64")), rows]).shuffle(seed=seed)

    def augmented_rows(self, tables: dict[str, Dataset], seed: int) -> Dataset:
        """Augmented copies of the texts of `tables` (`hfkd.augment`), made per table (one per domain) so that
        sentence_mix never joins two domains; labels `IGNORE_INDEX` (soft targets only)."""
        kwargs = dict(methods=tuple(self.exp.augment_methods), seed=seed, max_length=self.data_args.max_length)
        if self.exp.augment_mlm_model:
            kwargs["mlm_model"] = self.exp.augment_mlm_model
        parts = [augment_dataset(table, self.exp.augment_factor, **kwargs) for table in tables.values() if len(table)]
        return concatenate_datasets(parts)

    def pseudo_label(self, unlabeled: Dataset, labeler: str) -> tuple[Dataset, int]:
        """The unlabeled rows with the class-balanced confident predictions of the model at `labeler` as their labels
        (`IGNORE_INDEX` where it is not confident enough); and how many rows got one."""
        model, tokenizer = self._load_teacher(labeler)
        found = predict(
            model,
            tokenizer,
            unlabeled.remove_columns("label"),
            label_names=self.labels,
            max_length=self.data_args.max_length,
            batch_size=self.args.per_device_eval_batch_size,
            desc="Tokenizing target text for self-training",
            long_text_options=self.long_text,
        )
        labels = class_balanced_pseudo_labels(found.logits, self.exp.self_training_fraction)
        del model
        table = unlabeled.remove_columns("label").add_column("label", labels.tolist())
        return table.cast_column("label", Value("int64")), int((labels != IGNORE_INDEX).sum())

    # ---- description ------------------------------------------------------------------------------------------

    def describe_models(self, block: dict[str, Any]) -> dict[str, dict[str, Any]]:
        base = self.args.teacher_model_name_or_path or f"{self.model_args.model_name_or_path} fine-tuned on the source"
        student = (
            self.args.student_model_name_or_path
            or f"{block['speed'].get('baseline', block['speed'].get('distilled', {})).get('num_layers')} of the "
            "teacher's layers"
        )
        text = {
            "teacher": base,
            "baseline": f"{student}{'' if self.args.student_model_name_or_path else ' and its head'}, fine-tuned on "
            "the source labels with no teacher term (as many optimizer steps as the distilled student)",
            "distilled": f"{student}, distilled from the teacher on the source data (T={self.args.temperature}, "
            f"alpha={self.args.alpha})",
            "intermediate": f"{student}, distilled on the source data with hidden-state "
            f"({self.args.hidden_loss}, weight {self.exp.intermediate_hidden_weight}) and attention "
            f"({self.args.attention_loss}, weight {self.exp.intermediate_attention_weight}) terms besides the logits, "
            f"layer map {self.args.layer_map}",
            "adaptive": f"{student}, distilled on the source data plus unlabeled target text "
            f"(ratio {self.exp.unlabeled_ratio})",
            "augmented": f"{student}, distilled on the source data plus {self.exp.augment_factor:g} augmented "
            f"cop{'y' if self.exp.augment_factor == 1 else 'ies'} of each source text "
            f"({', '.join(self.exp.augment_methods)}; soft targets only)",
            "adaptive_augmented": f"{student}, distilled on the source data plus unlabeled target text (ratio "
            f"{self.exp.unlabeled_ratio}) and {self.exp.augment_factor:g} augmented "
            f"cop{'y' if self.exp.augment_factor == 1 else 'ies'} of each source and target text "
            f"({', '.join(self.exp.augment_methods)}; soft targets only)",
            "multi_teacher": f"{student}, distilled on the source data from one teacher per source domain (each "
            f"fine-tuned on that domain alone), their soft targets combined per row "
            f"({self.exp.multi_teacher_weighting})",
            "dapt_teacher": f"{self.model_args.model_name_or_path}, its encoder first trained as a masked LM on the "
            f"source and unlabeled target text ({self.exp.dapt_num_train_epochs:g} epoch(s), domain-adaptive "
            "pre-training), then fine-tuned on the source",
            "dapt_student": f"{student.replace('the teacher', 'dapt_teacher')}, distilled from dapt_teacher on the "
            f"source data plus unlabeled target text (ratio {self.exp.unlabeled_ratio})",
            "self_trained": f"{student}, distilled on the source data plus target text (ratio "
            f"{self.exp.unlabeled_ratio}) with the teacher's most confident {self.exp.self_training_fraction:.0%} of "
            f"each predicted class as hard labels ({self.exp.self_training_rounds} round(s))",
        }
        for name in block["metrics"]:
            if name.endswith(EXPORTED_SUFFIX):
                text[name] = (
                    f"{name.removesuffix(EXPORTED_SUFFIX)} exported to ONNX (torch.onnx, dynamo) and quantized to "
                    "dynamic INT8 (onnxruntime), scored through onnxruntime"
                )
        return {
            name: {
                "role": "teacher" if name in TEACHER_MODELS else "student",
                "description": text[name],
                "num_layers": block["speed"][name].get("num_layers"),
                "parameters": block["speed"][name].get("parameters"),
                "path": block["stages"][name]["path"],
            }
            for name in block["metrics"]
        }


def _last(folder: str) -> str | None:
    """`"last"` when an unfinished run of the stage left a complete checkpoint in `folder` to continue from (of the
    Trainer or of the Accelerate loop); a checkpoint cut short by a kill does not count."""
    markers = (TRAINER_STATE_NAME, LOOP_STATE_FILE)
    return "last" if any(last_complete_checkpoint(folder, m) for m in markers) else None


def run_experiment(
    exp_args: ExperimentArguments,
    model_args: ModelArguments,
    data_args: DataArguments,
    student_args: StudentArguments,
    args: DistillationArguments,
    command: str | None = None,
) -> dict[str, Any]:
    """Run a cross-domain experiment (see the module docstring); returns what `results.json` holds."""
    return Experiment(exp_args, model_args, data_args, student_args, args, command).run()
