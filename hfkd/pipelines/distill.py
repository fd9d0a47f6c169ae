"""What `scripts/distill.py` does: data, teacher, student, `DistillationTrainer`, and the saved student folder."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedModel
from transformers.trainer import TRAINER_STATE_NAME
from transformers.utils import logging

from ..data.arguments import DataArguments
from ..data.long_text import LongTextOptions
from ..data.source import domain_label_names, load_data, tokenize_source_splits
from ..distillation_config import DistillationArguments, StudentArguments
from ..grad_health import add_gradient_health
from ..hub.card import write_model_card
from ..hub.push import push_student, warn_if_push_will_fail
from ..metrics import make_compute_metrics
from ..models import load_teacher, load_tokenizer, set_loading_policy
from ..parser import config_to_dict
from ..run_files import check_output_dir, last_complete_checkpoint, redact, write_metrics, write_run_info
from ..students import cut_student, load_student, trim_if_asked
from ..teacher_logits import with_teacher_logits
from ..trainer import DistillationTrainer

logger = logging.get_logger(__name__)


def build_student(
    teacher: PreTrainedModel,
    teacher_tokenizer,
    student_args: StudentArguments,
    args: DistillationArguments,
    labels,
    texts: Sequence[str] | None = None,
    max_length: int = 128,
):
    """The student and its tokenizer: a given checkpoint, or the teacher's layers DistilBERT-style (the default).

    `texts` is the text the student trains on (labelled and unlabeled rows). A narrower student
    (`student_hidden_size`) keeps the teacher's units that are most active on it ([`activation_importance`], read
    at `max_length`; without `texts`, by weight norms), and `student_vocabulary: trimmed` keeps the tokens it uses
    ([`hfkd.vocabulary.trim_vocabulary`]), which needs `texts`.
    """
    if args.student_model_name_or_path:
        if student_args.builds_student:
            raise ValueError(
                "student_model_name_or_path and student_num_layers / student_layer_ids / student_hidden_size are "
                "both set; the first loads a ready student, the others cut one from the teacher. Keep one of them."
            )
        student = load_student(args.student_model_name_or_path, label_names=labels)
        tokenizer = load_tokenizer(args.student_model_name_or_path)
        return trim_if_asked(student, tokenizer, student_args, texts)
    return cut_student(teacher, teacher_tokenizer, student_args, texts, max_length=max_length)


def check_trimmed_vocabulary(student_args: StudentArguments, args: DistillationArguments) -> None:
    """A student with a trimmed vocabulary reads other token ids than the teacher: the teacher's logits must then come
    from the cache (computed from the raw text with the teacher's own tokenizer)."""
    if student_args.student_vocabulary == "trimmed" and not args.uses_logit_cache:
        raise ValueError(
            f"student_vocabulary='trimmed' gives the student other token ids than the teacher's, so the teacher "
            f"cannot run online on the student's inputs (teacher_logits={args.teacher_logits!r}, intermediate terms "
            f"{'on' if args.uses_intermediate_terms else 'off'}). Fix: use teacher_logits: auto or cache without "
            "hidden_weight / attention_weight / embedding_weight, or set student_vocabulary: full."
        )


def warn_if_teacher_online(args: DistillationArguments) -> None:
    """`teacher_logits: auto` with intermediate terms means the teacher runs on every step: say so."""
    if args.teacher_logits == "auto" and args.uses_intermediate_terms:
        logger.warning(
            "hidden_weight / attention_weight / embedding_weight > 0 need the teacher's hidden states on every step, "
            "so teacher_logits='auto' runs the teacher online (no logit cache). Set teacher_logits: online to "
            "silence this."
        )


def warn_if_chunks_unused(args: DistillationArguments, options: LongTextOptions | None) -> None:
    """`long_text: chunk` shapes the cached teacher logits only: with the teacher online, say that it reads the
    student's truncated inputs."""
    if options is not None and options.chunked and not args.uses_logit_cache:
        logger.warning(
            "long_text=chunk averages the teacher's logits over windows of the whole text only when they are cached "
            "(teacher_logits: auto or cache, without intermediate terms); the teacher runs online here and reads the "
            "student's truncated inputs. Evaluation still scores whole texts. Set long_text: truncate to silence this."
        )


def attach_teacher_logits(
    datasets: list,
    args: DistillationArguments,
    label_names,
    max_length: int,
    teacher=None,
    teacher_tokenizer=None,
    long_text_options: LongTextOptions | None = None,
) -> list:
    """Each dataset (tokenised for the student, with its raw `text`) plus the teacher's cached logits (see
    `hfkd.teacher_logits`); computed with `teacher` when not cached yet. `long_text_options`
    (`DataArguments.long_text_options`) say how the teacher reads long texts (`long_text="chunk"`: whole)."""
    return [
        with_teacher_logits(
            dataset,
            args.teacher_model_name_or_path,
            list(label_names),
            max_length=max_length,
            teacher=teacher,
            teacher_tokenizer=teacher_tokenizer,
            cache_dir=args.teacher_logits_cache_dir,
            batch_size=args.teacher_logits_batch_size,
            mixed_precision=args.mixed_precision,
            long_text_options=long_text_options,
        )
        for dataset in datasets
    ]


def train_student(
    student: PreTrainedModel,
    tokenizer,
    teacher: PreTrainedModel,
    teacher_tokenizer,
    train_dataset,
    eval_dataset,
    args: DistillationArguments,
    test_dataset=None,
) -> dict[str, Any]:
    """Distil `teacher` into `student` with [`DistillationTrainer`]; save the student to `args.output_dir`.

    `resume_from_checkpoint` (a folder, or `"last"` for the newest checkpoint in `output_dir`) continues a run. Returns
    the training metrics, `eval_*` on `eval_dataset` and `test_*` on `test_dataset` (when given), also written to
    `metrics.json`.
    """
    num_labels = student.config.num_labels
    # The Trainer would create the Hub repo at once and push every checkpoint; hfkd pushes the finished student only.
    # Nor does it get the token: it pickles its arguments into training_args.bin in every checkpoint.
    trainer_args = dataclasses.replace(args, push_to_hub=False, hub_token=None)
    trainer = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=trainer_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        teacher_processing_class=teacher_tokenizer,
        compute_metrics=make_compute_metrics(num_labels),
    )
    if args.grad_health:
        add_gradient_health(trainer)
    resume = args.resume_from_checkpoint
    if resume == "last":  # the newest *complete* checkpoint: a kill while saving leaves a partial one
        resume = last_complete_checkpoint(args.output_dir, TRAINER_STATE_NAME)
        if resume is None:
            raise ValueError(
                f"resume_from_checkpoint='last' but {args.output_dir!r} holds no complete checkpoint-N folder; start "
                "without --resume_from_checkpoint, or pass the path of a checkpoint."
            )
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()  # the student and its tokenizer only; the teacher is never saved
    metrics: dict[str, Any] = dict(result.metrics) | {"global_step": result.global_step}
    if eval_dataset is not None:
        metrics |= trainer.evaluate()
    if test_dataset is not None:
        metrics |= trainer.evaluate(test_dataset, metric_key_prefix="test")
    metrics["train_samples"] = len(train_dataset)
    if trainer.is_world_process_zero():
        write_metrics(args.output_dir, metrics)
    return metrics


def distill(
    data_args: DataArguments, student_args: StudentArguments, args: DistillationArguments, command: str | None = None
) -> dict[str, Any]:
    """Distil `args.teacher_model_name_or_path` into a student on the source domains; save it to `args.output_dir`
    with a model card, and push it when `args.push_to_hub` (after everything is saved; see `hfkd.hub.push_student`).

    Returns the metrics also written to `metrics.json`: training figures, `eval_*` on the source validation split
    and `test_*` on the source test split.
    """
    set_loading_policy(args.allow_pickle_weights)
    warn_if_push_will_fail(args)
    warn_if_teacher_online(args)
    options = data_args.long_text_options
    warn_if_chunks_unused(args, options)
    with args.main_process_first(desc="loading data"):
        domains = load_data(data_args)
    labels = domain_label_names(domains)
    check_trimmed_vocabulary(student_args, args)
    teacher = load_teacher(args.teacher_model_name_or_path, labels)
    teacher_tokenizer = load_tokenizer(args.teacher_model_name_or_path)
    texts = [text for splits in domains.values() for text in splits["train"]["text"]]  # what the student trains on
    student, tokenizer = build_student(
        teacher, teacher_tokenizer, student_args, args, labels, texts=texts, max_length=data_args.max_length
    )
    splits = tokenize_source_splits(
        domains,
        tokenizer,
        data_args.max_length,
        lambda: args.main_process_first(desc="tokenizing"),
        keep_text=args.uses_logit_cache,
        long_text_options=options,
    )
    train, validation, test = splits.train, splits.validation, splits.test
    if args.uses_logit_cache:  # computed once (or found), then the teacher leaves memory
        train, validation, test = attach_teacher_logits(
            [train, validation, test], args, labels, data_args.max_length, teacher, teacher_tokenizer, options
        )
        teacher = None
    config = redact(config_to_dict(data_args, student_args, args))
    resuming = args.resume_from_checkpoint is not None
    defaults = config_to_dict(data_args, student_args, args, defaults=True)
    check_output_dir(
        args.output_dir, "distill", config, overwrite=args.overwrite_output_dir, resuming=resuming, defaults=defaults
    )
    if args.process_index == 0:
        extra = {"source_domains": splits.domains, "command": command}
        write_run_info(args.output_dir, "distill", config, extra=extra)
    metrics = train_student(student, tokenizer, teacher, teacher_tokenizer, train, validation, args, test)
    if args.process_index == 0:
        write_model_card(args.output_dir)
        if args.push_to_hub:
            push_student(args.output_dir, args.hub_model_id, private=args.hub_private_repo, token=args.hub_token)
    return metrics
