"""`DistillationTrainer`: a `transformers.Trainer` whose loss mixes a frozen teacher's soft targets with the labels."""

from __future__ import annotations

import copy
import inspect
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, Trainer
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import logging

from .distillation_config import DistillationArguments
from .intermediate import PROJECTION_ATTR, TERMS, IntermediateTerms, ProjectedStudent
from .losses import IGNORE_INDEX, get_distillation_loss, hard_label_ce
from .models import forward_argument_names, model_label_names
from .teacher_logits import TEACHER_LOGITS_COLUMN

logger = logging.get_logger(__name__)


def align_label_spaces(teacher: PreTrainedModel, student: PreTrainedModel) -> list[int] | None:
    """Map the teacher's label ids onto the student's by label name.

    Returns `None` when both models list the same names in the same order, else the teacher column for each student
    label (so `teacher_logits[:, index]` is in the student's order). Raises a `ValueError` when the names differ.
    """
    teacher_names, student_names = model_label_names(teacher), model_label_names(student)
    if teacher_names == student_names:
        return None
    if sorted(teacher_names) == sorted(student_names) and len(set(teacher_names)) == len(teacher_names):
        return [teacher_names.index(name) for name in student_names]
    raise ValueError(
        "The teacher and the student do not share one label space (compared by name, config.id2label):\n"
        f"  teacher: {teacher_names}\n  student: {student_names}\n"
        "Fine-tune the teacher on the same labels as the student's data, or build the student from the teacher "
        "(student_num_layers / student_layer_ids) so that it inherits the teacher's labels."
    )


def check_vocabularies(
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    teacher_tokenizer: Any | None = None,
    student_tokenizer: Any | None = None,
) -> None:
    """On-the-fly distillation feeds the same token ids to both models, so their vocabularies must be equal."""
    problems = []
    t_size, s_size = teacher.config.get_text_config().vocab_size, student.config.get_text_config().vocab_size
    if t_size != s_size:
        problems.append(f"vocab_size: teacher {t_size}, student {s_size}")
    if teacher_tokenizer is not None and student_tokenizer is not None:
        t_vocab, s_vocab = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
        if t_vocab != s_vocab:
            differ = sorted(set(t_vocab.items()) ^ set(s_vocab.items()), key=lambda kv: kv[1])[:5]
            problems.append(
                f"tokenizers: teacher {type(teacher_tokenizer).__name__} ({len(t_vocab)} tokens), student "
                f"{type(student_tokenizer).__name__} ({len(s_vocab)} tokens); first differences {differ}"
            )
    if problems:
        raise ValueError(
            "The teacher and the student do not share a vocabulary, so the teacher cannot read the student's "
            "inputs:\n  " + "\n  ".join(problems) + "\n"
            "Use a student built from the teacher (student_num_layers / student_layer_ids) or one that uses the "
            "teacher's tokenizer, or distil on cached teacher logits (teacher_logits: cache), which lets the student "
            "tokenise differently."
        )


def _call_model_init(model_init) -> PreTrainedModel:
    """A student from a `model_init` factory, called as `Trainer.call_model_init` calls it without a trial."""
    params = inspect.signature(model_init).parameters
    return model_init() if len(params) == 0 else model_init(None)


def _has_teacher_logits(dataset: Any) -> bool:
    return TEACHER_LOGITS_COLUMN in (getattr(dataset, "column_names", None) or [])


class DistillationTrainer(Trainer):
    """A [`~transformers.Trainer`] that distils a frozen teacher into the model being trained (the student).

    The loss of a batch is `alpha * KD + (1 - alpha) * CE`, where KD is the temperature-scaled soft-target loss
    chosen by `args.distillation_loss` (default: `T^2 * KL(softmax(t/T) || softmax(s/T))`, averaged over rows) and CE
    the cross-entropy on the rows whose label is not `-100`. Unlabeled rows therefore only feed the KD term.

    Gradient accumulation is exact: both terms are normalised by the row counts of the whole accumulated batch (over
    all processes), so `k` micro-batches give the gradients of one batch `k` times as large.

    The teacher is put in eval mode, frozen, placed on the student's device by the accelerator for evaluation only
    (never wrapped in DDP), run under no-grad with the student's autocast precision, and is never saved: checkpoints
    and the output folder hold the student alone.

    With intermediate terms (`hidden_weight`, `attention_weight`, `embedding_weight` > 0) training calls the student
    through [`~hfkd.intermediate.ProjectedStudent`], which also runs the learned projections of a student narrower than
    the teacher, so that DDP wraps both. The projections are kept in checkpoints (`resume_from_checkpoint` restores
    them) and left out of the student that `save_model` writes.

    Args:
        model (`PreTrainedModel`): the student.
        teacher_model (`PreTrainedModel`, *optional*): the fine-tuned teacher. Its labels must be the student's (by
            name; a different order is mapped). May be `None` when every dataset carries the teacher's precomputed
            logits as a `teacher_logits` column (in the student's label order; see `hfkd.teacher_logits`): then no
            teacher is held in memory, and the student may use another tokenizer.
        args ([`DistillationArguments`]): training and distillation settings.
        teacher_processing_class (*optional*): the teacher's tokenizer; when given it must equal the student's.
        **kwargs: passed to [`~transformers.Trainer`] (`train_dataset`, `eval_dataset`, `processing_class`, ...).
    """

    _tag_names = ["hfkd", "knowledge-distillation"]
    # compute_loss normalises over the whole accumulated batch itself (see get_batch_samples).
    loss_is_scaled_for_ga = True

    def __init__(
        self,
        model: PreTrainedModel | None = None,
        teacher_model: PreTrainedModel | None = None,
        args: DistillationArguments | None = None,
        teacher_processing_class: Any | None = None,
        **kwargs,
    ):
        if args is None:
            args = DistillationArguments(output_dir="runs/distill")
        if not isinstance(args, DistillationArguments):
            raise ValueError(
                f"DistillationTrainer needs DistillationArguments, got {type(args).__name__}; build the arguments "
                "with hfkd.DistillationArguments(...) (it takes every TrainingArguments field)."
            )
        model_init = kwargs.get("model_init")
        if model is None and model_init is None:
            raise ValueError(
                "DistillationTrainer needs `model` (the student), or `model_init` (a factory of students)."
            )
        if model_init is not None and args.uses_intermediate_terms:
            raise ValueError(
                "model_init (a fresh student per hyperparameter trial) does not take intermediate terms, whose "
                "projections belong to one student: set hidden_weight / attention_weight / embedding_weight to 0, or "
                "pass `model`."
            )
        # the student the checks below look at (with model_init: one it makes; train() makes a fresh one per trial)
        student = model if model is not None else _call_model_init(model_init)
        if teacher_model is None and not _has_teacher_logits(kwargs.get("train_dataset")):
            raise ValueError(
                "DistillationTrainer needs `teacher_model`, or a train_dataset with a precomputed "
                f"{TEACHER_LOGITS_COLUMN!r} column (hfkd.teacher_logits.with_teacher_logits)."
            )
        self._teacher_label_index = None
        if teacher_model is not None:
            self._teacher_label_index = align_label_spaces(teacher_model, student)
            check_vocabularies(teacher_model, student, teacher_processing_class, kwargs.get("processing_class"))
        self.kd_loss_fn = get_distillation_loss(args.distillation_loss)
        self.intermediate = None
        self._projected_student = None
        if args.uses_intermediate_terms:
            if teacher_model is None:
                raise ValueError(
                    "hidden_weight / attention_weight / embedding_weight > 0 need the teacher online (its hidden "
                    "states on every step): pass teacher_model, or set those weights to 0 to train on cached logits."
                )
            self.intermediate = IntermediateTerms(args, model, teacher_model)  # may add projections to the student
            self._projected_student = ProjectedStudent(model, self.intermediate)  # what training wraps (see below)

        super().__init__(model=model, args=args, **kwargs)

        self._student_input_names = forward_argument_names(self.accelerator.unwrap_model(self.model))
        self.teacher = None  # with cached logits only: no teacher in memory at all
        self._teacher_input_names = set()
        if teacher_model is not None:
            teacher_model.eval()
            teacher_model.requires_grad_(False)
            self._teacher_input_names = forward_argument_names(teacher_model)
            if self.is_deepspeed_enabled:
                self.teacher = self._prepare_deepspeed_teacher(teacher_model)
            else:
                self.teacher = self.accelerator.prepare_model(teacher_model, evaluation_mode=True)
        self._index_tensor = (
            None if self._teacher_label_index is None else torch.tensor(self._teacher_label_index, dtype=torch.long)
        )
        # Counts of the accumulated batch being trained on, set by get_batch_samples: (rows, labelled rows).
        self._step_counts: torch.Tensor | None = None
        self._loss_sums = {mode: self._zero_sums() for mode in ("train", "eval")}

    # ---- teacher -----------------------------------------------------------------------------------------------

    def _prepare_deepspeed_teacher(self, teacher: PreTrainedModel) -> nn.Module:
        """Wrap the teacher in an inference-only DeepSpeed engine (ZeRO-3 shards it; other stages only place it)."""
        import deepspeed

        config = copy.deepcopy(self.accelerator.state.deepspeed_plugin.deepspeed_config)
        if config["zero_optimization"]["stage"] != 3:
            config["zero_optimization"]["stage"] = 0
        config.pop("optimizer", None)
        config.pop("scheduler", None)
        engine, *_ = deepspeed.initialize(model=teacher, config=config)
        engine.eval()
        return engine

    @torch.no_grad()
    def teacher_logits(self, inputs: dict[str, Any], outputs: Any = None) -> torch.Tensor:
        """The teacher's logits for a batch, in the student's label order (given `outputs` of the teacher, else a
        precomputed column, else a forward pass)."""
        if outputs is not None:
            logits = outputs.logits
        elif TEACHER_LOGITS_COLUMN in inputs:
            logits = inputs[TEACHER_LOGITS_COLUMN]
        elif self.teacher is None:
            raise ValueError(
                f"A batch has no {TEACHER_LOGITS_COLUMN!r} column and the trainer has no teacher_model: add the "
                "cached logits to every dataset it trains and evaluates on (hfkd.teacher_logits.with_teacher_logits), "
                "or pass teacher_model."
            )
        else:
            teacher_inputs = {k: v for k, v in inputs.items() if k in self._teacher_input_names and k != "labels"}
            logits = self.teacher(**teacher_inputs).logits
        if self._index_tensor is not None:
            logits = logits.index_select(-1, self._index_tensor.to(logits.device))
        return logits.detach()

    # ---- loss --------------------------------------------------------------------------------------------------

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """`alpha * KD + (1 - alpha) * CE`; see the class docstring for how it is normalised.

        `num_items_in_batch` (the Trainer's count of labels in the accumulated batch on all processes) is not used:
        the KD term needs the count of all rows, the CE term that of labelled rows, so both are counted in
        `get_batch_samples` instead.
        """
        training = model.training
        labels = inputs.get("labels")
        student_inputs = {k: v for k, v in inputs.items() if k in self._student_input_names and k != "labels"}
        teacher_outputs = student_states = None
        if self.intermediate is not None:
            if not isinstance(self.accelerator.unwrap_model(model), ProjectedStudent):
                if isinstance(model, nn.parallel.DistributedDataParallel) and self.intermediate.has_projections:
                    raise RuntimeError(  # it would fail in backward with a message about DDP internals
                        "DDP wraps the student without its projections (ProjectedStudent), which cannot train: this "
                        "Transformers version bypasses DistillationTrainer._prepare_for_training."
                    )
                # evaluation (and direct calls) get the bare student, never DDP-wrapped: run the projections with it
                model = ProjectedStudent(model, self.intermediate)
            outputs, student_states = model(**student_inputs)
            with torch.no_grad():  # hidden states / attentions of the teacher: always online
                teacher_inputs = {k: v for k, v in inputs.items() if k in self._teacher_input_names and k != "labels"}
                teacher_outputs = self.teacher(**teacher_inputs, **self.intermediate.forward_kwargs())
        else:
            outputs = model(**student_inputs)
        student_logits = outputs.logits
        teacher_logits = self.teacher_logits(inputs, teacher_outputs)

        kd_sum = self.kd_loss_fn(student_logits, teacher_logits, self.args.temperature, reduction="sum")
        if labels is not None:
            ce_sum = hard_label_ce(student_logits, labels, reduction="sum")
            labelled = (labels != IGNORE_INDEX).sum()
        else:
            ce_sum = kd_sum.new_zeros(())
            labelled = torch.zeros((), dtype=torch.long, device=kd_sum.device)
        rows = student_logits.new_tensor(student_logits.shape[0], dtype=torch.long)

        if training and self._step_counts is not None:
            # Normalise by the whole accumulated batch on all processes; DDP then averages over processes, hence the
            # world-size factor (the same choice Trainer makes with average_tokens_across_devices).
            total_rows, total_labelled = self._step_counts.to(kd_sum.device).unbind()
            scale = self.accelerator.num_processes
        else:
            total_rows, total_labelled, scale = rows, labelled, 1
        alpha = self.args.alpha
        loss = scale * (
            alpha * kd_sum / total_rows.clamp(min=1) + (1.0 - alpha) * ce_sum / total_labelled.clamp(min=1)
        )
        term_sums = [kd_sum.new_zeros(())] * len(TERMS)
        if self.intermediate is not None:  # per-row terms, normalised like the KD term (exact under accumulation)
            terms = self.intermediate.per_row(student_states, outputs, teacher_outputs, inputs["attention_mask"])
            for name, per_row in terms.items():
                loss = loss + scale * self.intermediate.weights[name] * per_row.sum() / total_rows.clamp(min=1)
            term_sums = [terms[name].sum() if name in terms else kd_sum.new_zeros(()) for name in TERMS]

            # what evaluation collects from the outputs: the logits, not every layer's hidden states and attentions
            outputs = SequenceClassifierOutput(logits=student_logits)

        # rows whose teacher logits are NaN/inf (a broken teacher, an fp16 overflow): counted on the device, checked
        # when logging (no per-step host sync)
        broken = (~torch.isfinite(teacher_logits).all(-1)).sum().float()
        sums = self._loss_sums["train" if training else "eval"]
        parts = [kd_sum.detach(), rows.float(), ce_sum.detach(), labelled.float(), broken]
        parts += [t.detach() for t in term_sums]
        sums += torch.stack(parts).to(sums.device)
        return (loss, outputs) if return_outputs else loss

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """Also count the rows and labelled rows of the accumulated batch (all processes) for `compute_loss`."""
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        if batch_samples:
            rows = sum(len(batch["input_ids"]) for batch in batch_samples)
            labelled = sum(
                (batch["labels"] != IGNORE_INDEX).sum() if "labels" in batch else 0 for batch in batch_samples
            )
            counts = torch.stack([torch.as_tensor(rows), torch.as_tensor(labelled)]).to(device=device)
            if self.accelerator.num_processes > 1:
                counts = self.accelerator.gather(counts[None]).sum(0)
            self._step_counts = counts
        return batch_samples, num_items_in_batch

    # ---- logging of the loss parts -------------------------------------------------------------------------------

    def _zero_sums(self) -> torch.Tensor:
        # kd_sum, rows, ce_sum, labelled rows, rows with non-finite teacher logits, then the sums of the intermediate
        # terms (hidden, attention, embedding): kept on the device and read only when logging (no per-step host sync).
        return torch.zeros(5 + len(TERMS), dtype=torch.float32, device=self.args.device)

    def _pop_loss_parts(self, mode: str) -> dict[str, float]:
        sums = self._loss_sums[mode]
        if self.accelerator.num_processes > 1:
            sums = self.accelerator.reduce(sums.clone(), reduction="sum")
        self._loss_sums[mode] = self._zero_sums()
        kd_sum, rows, ce_sum, labelled, broken, *term_sums = sums.tolist()
        if broken:
            raise ValueError(
                f"The teacher's logits were NaN or inf on {int(broken)} rows ({mode}, by step "
                f"{self.state.global_step}): the teacher is broken (check its weights) or overflows in fp16 (use "
                f"bf16 or fp32). Checkpoints saved so far in {self.args.output_dir} are kept."
            )
        if rows == 0:
            return {}
        parts = {"loss_kd": kd_sum / rows}
        if labelled > 0:
            parts["loss_ce"] = ce_sum / labelled
        for name, value in zip(TERMS, term_sums, strict=True):
            if self.intermediate is not None and name in self.intermediate.active:
                parts[f"loss_{name}"] = value / rows
        return parts

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: add the two parts averaged over the rows since the last log
            logs.update(self._pop_loss_parts("train"))
        super().log(logs, start_time)

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        self._loss_sums["eval"] = self._zero_sums()
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        for name, value in self._pop_loss_parts("eval").items():
            output.metrics[f"{metric_key_prefix}_{name}"] = value
        return output

    # ---- gradient norm -----------------------------------------------------------------------------------------

    last_grad_norm: float | None = None
    """The pre-clip global gradient norm of the last optimizer step (read by the gradient-health callback)."""

    def _get_grad_norm(self, model, grad_norm=None):
        self.last_grad_norm = norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        return norm

    # ---- the module that training wraps ------------------------------------------------------------------------

    def _prepare_for_training(self, max_steps, train_dataloader, resume_from_checkpoint):
        """With intermediate terms, have [`ProjectedStudent`] (the student and its projections in one forward)
        wrapped for training instead of the bare student.

        DDP with `find_unused_parameters` fails on the first backward when the projections, parameters of the module
        it wraps, are used outside its forward ("Expected to mark a variable ready only once"). `self.model` stays the
        student everywhere else (checkpoints, `resume_from_checkpoint`, evaluation, callbacks, `save_model`); only
        `self.model_wrapped`, the module the training steps call, becomes DDP(ProjectedStudent). ProjectedStudent
        owns no parameters, so the optimizer holds the student's parameters (projections included) in the same order
        as without it, and older checkpoints' optimizer states still load.
        """
        self._loss_sums["train"] = self._zero_sums()  # a new train() (e.g. the next trial) logs only its own steps
        if self._projected_student is None:
            return super()._prepare_for_training(max_steps, train_dataloader, resume_from_checkpoint)
        student = self.model
        self.model = self._projected_student
        if self.model_wrapped is student:  # not wrapped yet (a second train() finds DDP(ProjectedStudent) there)
            self.model_wrapped = self._projected_student
        try:
            return super()._prepare_for_training(max_steps, train_dataloader, resume_from_checkpoint)
        finally:
            if self.model is self._projected_student:  # FSDP replaces self.model by the wrapped module: keep that
                self.model = student
            self.callback_handler.model = self.model

    # ---- saving ------------------------------------------------------------------------------------------------

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Checkpoints keep the projections of the intermediate terms (resume needs them); the final student does
        not: it is saved as the plain model it was given."""
        student = self.accelerator.unwrap_model(self.model)
        projection = getattr(student, PROJECTION_ATTR, None)
        if _internal_call or projection is None:
            return super().save_model(output_dir, _internal_call)
        delattr(student, PROJECTION_ATTR)
        try:
            super().save_model(output_dir, _internal_call)
        finally:
            setattr(student, PROJECTION_ATTR, projection)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        # DeepSpeed gathers the state of the module it wraps, ProjectedStudent: its keys carry the "student." prefix
        # that the student's own checkpoint does not have.
        prefix = "student."
        if self._projected_student is not None and state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
        super()._save(output_dir, state_dict)

    # ---- columns -----------------------------------------------------------------------------------------------

    def _set_signature_columns_if_needed(self):
        """Keep the columns the teacher reads (e.g. `token_type_ids` for a DistilBERT student) and cached logits."""
        super()._set_signature_columns_if_needed()
        extra = (self._teacher_input_names_for_columns() | {TEACHER_LOGITS_COLUMN}) - set(self._signature_columns)
        self._signature_columns += sorted(extra)

    def _teacher_input_names_for_columns(self) -> set[str]:
        # Called by Trainer before __init__ has set the teacher attributes when datasets are checked early.
        return getattr(self, "_teacher_input_names", set()) - {"kwargs", "args"}
