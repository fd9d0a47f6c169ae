"""Domain-adaptive pre-training of a teacher's encoder: continued masked-LM training on unlabeled text.

Before a teacher is fine-tuned on the source labels, its encoder can be trained further as a masked language model on
unlabeled text of the source and target domains ("Don't Stop Pretraining", Gururangan et al., ACL 2020: DAPT/TAPT),
so that its representations cover the target domains' words and style. [`adapt_encoder`] does that with
`transformers.Trainer` and `DataCollatorForLanguageModeling` and saves a folder that
`AutoModelForSequenceClassification.from_pretrained` (and `hfkd.models.load_classifier`) load as the encoder of a
classifier, exactly as they load the original checkpoint; the trained masked-LM model (encoder and head) is kept in
its `mlm/` subfolder, for [`hfkd.augment`].

Many sentence encoders (the default teacher `builtin:minilm-l6`, all-MiniLM-L6-v2, is a bare `BertModel`) ship no
masked-LM head. [`masked_lm_from_encoder`] adds one: its decoder tied to the word embeddings, its transform layer and
bias freshly initialised; a checkpoint that has a head (`bert-base-uncased`) keeps it.

What is saved by `adapt_encoder(name, texts, output_dir)`:

```text
output_dir/
  config.json, model.safetensors   the encoder as the checkpoint's base model (e.g. BertModel, with its pooler),
                                   its weights those of the adapted masked-LM encoder; architectures has no
                                   *ForSequenceClassification, so load_classifier gives it a new head for the labels
  tokenizer files                  the checkpoint's tokenizer, unchanged
  metrics.json                     train loss, held-out masked-LM loss before/after, rows, steps, runtime, new params
  mlm/                             the whole masked-LM model (AutoModelForMaskedLM) and the tokenizer
```

The pooler (BERT's `pooler.dense`, which `BertForSequenceClassification` classifies from) is not part of the masked-LM
model, so it is not trained; it keeps the checkpoint's weights.
"""

from __future__ import annotations

import contextlib
import logging as pylogging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from datasets import Dataset
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    DataCollatorForLanguageModeling,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers.utils import logging

from .fingerprints import content_hash, fingerprint_rows
from .models import hfkd_cache_dir, load_tokenizer, pickle_weights_allowed, resolve_model_name_or_path
from .run_files import write_metrics
from .teacher_logits import tokenizer_fingerprint

logger = logging.get_logger(__name__)

MLM_SUBFOLDER = "mlm"
"""The subfolder of an adapted folder that holds the whole masked-LM model (encoder and head) and the tokenizer."""
CHECKPOINT_SUBFOLDER = "checkpoints"
"""Where `adapt_encoder`'s Trainer writes checkpoints (only when asked, e.g. `save_strategy="steps"`)."""
# model types whose masked-LM model is `<base model>` + one head module called on the last hidden states; for these
# the head runs on the masked positions only (a third to a half less time per MiniLM step at 15 % masking)
_HEAD_ON_HIDDEN = ("bert", "roberta", "xlm-roberta", "camembert")
_LOAD_NOISE = (
    # transformers' words for a checkpoint without the head: expected here, and said plainly by our own log line
    "This checkpoint seem corrupted",
    "LOAD REPORT",
)


class _DropRecords(pylogging.Filter):
    def filter(self, record: pylogging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in _LOAD_NOISE)


@contextlib.contextmanager
def _expected_head_loading() -> Iterator[None]:
    """Silence transformers' load report while loading an encoder into a model with a head it lacks (we log what is
    new ourselves, in words that say it is expected)."""
    target = pylogging.getLogger("transformers.modeling_utils")
    drop = _DropRecords()
    target.addFilter(drop)
    try:
        yield
    finally:
        target.removeFilter(drop)


def _loading_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    if not pickle_weights_allowed():
        kwargs.setdefault("use_safetensors", True)
    return kwargs


def _input_embeddings_tied(model: PreTrainedModel) -> bool:
    output = model.get_output_embeddings()
    return output is not None and output.weight is model.get_input_embeddings().weight


def masked_lm_from_encoder(name_or_path: str, **kwargs) -> PreTrainedModel:
    """
    A masked language model (`AutoModelForMaskedLM`) on the encoder of a checkpoint.

    A checkpoint with a masked-LM head (e.g. `bert-base-uncased`) keeps it. One without (a bare encoder such as
    `builtin:minilm-l6`, or a classifier) gets a new head: its decoder tied to the word embeddings
    (`tie_word_embeddings=True`), its transform layer and output bias freshly initialised. The new parameters are
    logged (info level); they must be trained before the head predicts anything.

    Args:
        name_or_path (`str`): `builtin:<name>`, a local folder or a Hub id (see
            [`hfkd.models.resolve_model_name_or_path`]).
        kwargs: passed to `AutoModelForMaskedLM.from_pretrained` (`dtype`, `revision`, ...). Safetensors only unless
            pickled weights are allowed (see [`hfkd.models.pickle_weights_allowed`]).

    Returns:
        `PreTrainedModel`: e.g. a `BertForMaskedLM`, in eval mode as `from_pretrained` leaves it, with
        `model.hfkd_new_parameters`: the names of the freshly initialised parameters (empty when the head was kept).

    Raises:
        `ValueError`: when the checkpoint lacks weights of the encoder itself (it is not a checkpoint of this
            architecture's encoder), or when the new head could not be tied to the word embeddings.
    """
    path = resolve_model_name_or_path(name_or_path)
    config = AutoConfig.from_pretrained(path, **{k: v for k, v in kwargs.items() if k in ("revision", "token")})
    if getattr(config, "tie_word_embeddings", None) is None:  # a new head is tied; a kept one as its config says
        config.tie_word_embeddings = True
    with _expected_head_loading():
        model, info = AutoModelForMaskedLM.from_pretrained(
            path, config=config, output_loading_info=True, **_loading_kwargs(kwargs)
        )
    prefix = f"{model.base_model_prefix}."
    missing = sorted(info["missing_keys"])
    missing_encoder = [k for k in missing if k.startswith(prefix)]
    if missing_encoder:
        shown = ", ".join(missing_encoder[:6]) + (", ..." if len(missing_encoder) > 6 else "")
        raise ValueError(
            f"{name_or_path!r} lacks weights of its encoder ({shown}) when loaded as {type(model).__name__}; it is "
            "not a checkpoint of this encoder. Give a checkpoint whose encoder weights are all present."
        )
    new = [k for k in missing if not k.startswith(prefix)]
    if new:
        if not _input_embeddings_tied(model):
            # e.g. a checkpoint whose config says tie_word_embeddings=False but which has no head to keep
            model.config.tie_word_embeddings = True
            model.tie_weights()
            if not _input_embeddings_tied(model):
                raise ValueError(
                    f"The new masked-LM head of {type(model).__name__} ({name_or_path!r}) could not be tied to the "
                    "word embeddings; use a checkpoint that has a masked-LM head."
                )
        logger.info(
            f"{name_or_path!r} has no masked-LM head: {type(model).__name__} gets a new one, its decoder tied to the "
            f"word embeddings; freshly initialised: {', '.join(new)}."
        )
    else:
        logger.info(f"{name_or_path!r}: kept its masked-LM head ({type(model).__name__}).")
    unused = sorted(info["unexpected_keys"])
    if unused:
        logger.info(f"Weights of {name_or_path!r} the masked-LM model does not use (kept in its checkpoint): {unused}")
    model.hfkd_new_parameters = new  # what adapt_encoder records in metrics.json
    return model


def load_masked_lm(name_or_path: str, **kwargs) -> tuple[PreTrainedModel, Any]:
    """
    The trained masked-LM model and tokenizer of an adapted folder (its `mlm/` subfolder), or of any checkpoint with a
    trained masked-LM head (`bert-base-uncased`, a folder written by `AutoModelForMaskedLM.save_pretrained`).

    Raises:
        `ValueError`: when the checkpoint has no masked-LM head (an untrained head would predict noise): run
            [`adapt_encoder`] on it first.
    """
    path = resolve_model_name_or_path(name_or_path)
    if os.path.isfile(os.path.join(path, MLM_SUBFOLDER, "config.json")):
        path = os.path.join(path, MLM_SUBFOLDER)
    model = masked_lm_from_encoder(path, **kwargs)
    if model.hfkd_new_parameters:
        raise ValueError(
            f"{name_or_path!r} has no trained masked-LM head (it would be new: {model.hfkd_new_parameters[:3]}...), "
            "so its predictions would be noise. Adapt the encoder first (hfkd.adaptation.adapt_encoder) and pass "
            "its output folder, or give a checkpoint with a masked-LM head."
        )
    return model.eval(), load_tokenizer(path)


def encoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """`(encoder, head)` of a masked-LM model whose logits are `head(encoder(...)[0])` (BERT, RoBERTa, XLM-R,
    CamemBERT), so that the head can run on the masked positions alone; `None` for any other model."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in _HEAD_ON_HIDDEN:
        return None
    base = model.base_model
    others = [module for module in model.children() if module is not base]
    return (base, others[0]) if len(others) == 1 else None


def masked_logits(model: nn.Module, inputs: dict[str, torch.Tensor], positions: torch.Tensor) -> torch.Tensor:
    """
    The masked-LM logits at some positions.

    Args:
        model: a masked-LM model (unwrapped: the encoder and head are called directly where possible).
        inputs: its inputs (`input_ids`, `attention_mask`, ...; no `labels`), each `(batch, length)`.
        positions: `(batch, length)` booleans, the positions wanted.

    Returns:
        `torch.Tensor`: `(positions.sum(), vocab_size)`, the rows in row-major order of `positions`.
    """
    parts = encoder_and_head(model)
    if parts is None:
        return model(**inputs).logits[positions]
    encoder, head = parts
    hidden = encoder(**inputs)[0]
    return head(hidden[positions])


class MaskedLMTrainer(Trainer):
    """
    `transformers.Trainer` for masked-LM training, with its own `compute_loss`: the cross-entropy of the masked
    positions only (labels `-100` elsewhere), summed and divided by `num_items_in_batch` (the masked tokens of the
    whole accumulated batch) when the Trainer gives it, else averaged over the batch's masked tokens; so `k`
    micro-batches accumulated equal one batch `k` times larger.

    Where the model allows it ([`encoder_and_head`], one process), the head runs on the masked positions alone: at 15 %
    masking the vocabulary projection of the other 85 % of the tokens (a large part of a step for a small model such
    as MiniLM) is skipped. Elsewhere (several processes: the wrapped model must be called whole) the full logits are
    computed and the same loss taken from them.

    `head_parameters` (names) get `head_learning_rate` instead of `args.learning_rate` when it is set: a new head
    starts from random weights and learns slowly at a learning rate meant for pre-trained ones.
    """

    def __init__(self, *args, head_parameters: Sequence[str] = (), head_learning_rate: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.head_parameters, self.head_learning_rate = list(head_parameters), head_learning_rate

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        if self.head_learning_rate is None or not self.head_parameters:
            return optimizer
        named = dict((model if model is not None else self.model).named_parameters())
        head = {id(named[n]) for n in self.head_parameters if n in named}  # a tied alias is not in named_parameters
        for group in list(optimizer.param_groups):
            mine = [p for p in group["params"] if id(p) in head]
            if mine and len(mine) < len(group["params"]):
                group["params"] = [p for p in group["params"] if id(p) not in head]
                optimizer.add_param_group({**group, "params": mine, "lr": self.head_learning_rate})
            elif mine:
                group["lr"] = self.head_learning_rate
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        features = {k: v for k, v in inputs.items() if k != "labels"}
        keep = labels != -100
        unwrapped = self.accelerator.unwrap_model(model)
        if model is unwrapped and encoder_and_head(unwrapped) is not None:
            logits = masked_logits(unwrapped, features, keep)
        else:
            logits = model(**features).logits[keep]
        loss = nn.functional.cross_entropy(logits.float(), labels[keep], reduction="sum")
        if num_items_in_batch is not None:
            loss = loss / num_items_in_batch
            if self.args.average_tokens_across_devices:
                # DDP averages the gradients of the processes; num_items_in_batch counts all of their tokens
                loss = loss * self.accelerator.num_processes
        else:
            loss = loss / keep.sum().clamp(min=1)
        return (loss, {"loss": loss}) if return_outputs else loss


def _as_texts(texts: Sequence[str] | Dataset, text_column: str) -> list[str]:
    if isinstance(texts, Dataset):
        if text_column not in texts.column_names:
            raise ValueError(
                f"The dataset has no column {text_column!r} (columns: {texts.column_names}); pass text_column."
            )
        texts = texts[text_column]
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings (or a Dataset), not one string.")
    kept = [t for t in texts if isinstance(t, str) and t.strip()]
    if len(kept) != len(texts):
        logger.info(f"Dropped {len(texts) - len(kept)} empty or non-text rows of {len(texts)}.")
    return kept


def tokenize_for_mlm(
    texts: Sequence[str], tokenizer, max_length: int, cache_dir: str | None = None, main_process_first=None
) -> Dataset:
    """
    `texts` tokenised for masked-LM training (`input_ids`, `attention_mask`, ..., `special_tokens_mask`), truncated to
    `max_length`; with `datasets.map`, cached in `cache_dir` (default `$HFKD_CACHE/adaptation`) in a file named by a
    hash of the texts, the tokenizer and `max_length`, so a rerun (or the other processes of a run, which wait for the
    main one under `main_process_first`) reuse it.
    """
    cache_dir = cache_dir or os.path.join(hfkd_cache_dir(), "adaptation")
    os.makedirs(cache_dir, exist_ok=True)
    key = {"texts": fingerprint_rows(texts), "tokenizer": tokenizer_fingerprint(tokenizer), "max_length": max_length}
    cache_file = os.path.join(cache_dir, f"tokens-{content_hash(key)}.arrow")

    def tokenize(batch):
        return tokenizer(batch["text"], truncation=True, max_length=max_length, return_special_tokens_mask=True)

    context = main_process_first() if main_process_first is not None else contextlib.nullcontext()
    with context:
        return Dataset.from_dict({"text": list(texts)}).map(
            tokenize, batched=True, remove_columns=["text"], cache_file_name=cache_file, desc="Tokenizing for MLM"
        )


@torch.no_grad()
def masked_lm_loss(
    model: PreTrainedModel,
    tokenizer,
    texts: Sequence[str] | Dataset,
    *,
    max_length: int = 128,
    mlm_probability: float = 0.15,
    batch_size: int = 64,
    seed: int = 0,
    text_column: str = "text",
) -> float:
    """
    The masked-LM loss of `model` on `texts` (mean cross-entropy per masked token), with masks drawn from `seed` alone:
    the same texts and seed give the same masks, so two models (before and after adaptation) are compared on the same
    positions.

    Args:
        model: a masked-LM model (see [`masked_lm_from_encoder`]).
        tokenizer: its tokenizer.
        texts: the held-out texts (a list, or a Dataset with `text_column`).
        max_length, mlm_probability: as in training (BERT's 80/10/10 replacement of the masked tokens).
        batch_size: texts per forward pass.
        seed: seeds the masks.
    """
    texts = _as_texts(texts, text_column)
    if not texts:
        raise ValueError("masked_lm_loss got no texts.")
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability, seed=seed)
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_special_tokens_mask=True)
    rows = [{k: encoded[k][i] for k in encoded} for i in range(len(texts))]
    training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in logging.tqdm(range(0, len(rows), batch_size), desc="masked-LM loss", leave=False):
        batch = {k: v.to(device) for k, v in collator(rows[start : start + batch_size]).items()}
        labels = batch.pop("labels")
        keep = labels != -100
        logits = masked_logits(model, batch, keep).float()
        total += nn.functional.cross_entropy(logits, labels[keep], reduction="sum").item()
        count += int(keep.sum())
    model.train(training)
    return total / max(count, 1)


def adapt_encoder(
    name_or_path: str,
    texts: Sequence[str] | Dataset,
    output_dir: str,
    *,
    eval_texts: Sequence[str] | Dataset | None = None,
    text_column: str = "text",
    max_length: int = 128,
    mlm_probability: float = 0.15,
    num_train_epochs: float = 1.0,
    max_steps: int | None = None,
    learning_rate: float = 5e-5,
    head_learning_rate: float | None = 2e-3,
    per_device_train_batch_size: int = 32,
    gradient_accumulation_steps: int = 1,
    weight_decay: float = 0.01,
    warmup_steps: float = 0.06,
    seed: int = 42,
    logging_steps: int = 50,
    keep_mlm: bool = True,
    resume_from_checkpoint: str | bool | None = None,
    cache_dir: str | None = None,
    **training_kwargs: Any,
) -> str:
    """
    Domain-adaptive pre-training: train the encoder of `name_or_path` as a masked LM on `texts`, and save it as a
    folder that classification fine-tuning starts from (see the module docstring for its contents).

    Args:
        name_or_path (`str`): the encoder: `builtin:minilm-l6`, a local folder or a Hub id.
        texts: unlabeled training text (a list, or a Dataset with `text_column`), e.g. the *train* splits of the source
            and target domains; empty rows are dropped.
        output_dir (`str`): where the adapted folder is written (made if missing; files of an earlier run replaced).
        eval_texts: held-out text; when given, its masked-LM loss before and after training goes to `metrics.json`
            (`eval_mlm_loss_before`, `eval_mlm_loss_after`; the same masks both times).
        text_column: the text column of Dataset inputs.
        max_length: tokens per text (longer texts are truncated).
        mlm_probability: the share of tokens masked (BERT's 80 % `[MASK]`, 10 % random token, 10 % unchanged).
        num_train_epochs, max_steps: how long; `max_steps` (if set) wins.
        learning_rate, per_device_train_batch_size, gradient_accumulation_steps, weight_decay, warmup_steps, seed,
        logging_steps: `TrainingArguments`' fields (`warmup_steps` < 1 is a fraction of all steps).
        head_learning_rate: the learning rate of a *new* masked-LM head (its transform layer and output bias; the
            decoder is the word embeddings, at `learning_rate`); `None` uses `learning_rate`. A kept head trains at
            `learning_rate`.
        keep_mlm: also save the whole masked-LM model in `output_dir/mlm` (what [`hfkd.augment`]'s `mlm_replace`
            needs).
        resume_from_checkpoint: passed to `Trainer.train` (checkpoints are written to `output_dir/checkpoints` only
            when `save_strategy` is given in `training_kwargs`; that folder is removed after the final save).
        cache_dir: where the tokenised texts are cached (default `$HFKD_CACHE/adaptation`).
        training_kwargs: any other `TrainingArguments` field (`bf16`, `report_to`, `save_strategy`, `disable_tqdm`,
            `dataloader_num_workers`, ...).

    Returns:
        `str`: `output_dir`.
    """
    started = time.perf_counter()
    train_texts = _as_texts(texts, text_column)
    if not train_texts:
        raise ValueError("adapt_encoder got no training texts; pass the unlabeled source and target text.")
    held_out = _as_texts(eval_texts, text_column) if eval_texts is not None else []
    tokenizer = load_tokenizer(name_or_path)
    if tokenizer.mask_token is None:
        raise ValueError(f"The tokenizer of {name_or_path!r} has no mask token; it cannot be trained as a masked LM.")
    set_seed(seed)  # a new head is initialised from the seed, like the rest of the run
    model = masked_lm_from_encoder(name_or_path)
    model.train()
    trainer_dir = os.path.join(output_dir, CHECKPOINT_SUBFOLDER)
    values: dict[str, Any] = dict(
        output_dir=trainer_dir,
        num_train_epochs=num_train_epochs,
        max_steps=max_steps if max_steps is not None and max_steps > 0 else -1,
        learning_rate=learning_rate,
        per_device_train_batch_size=per_device_train_batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        weight_decay=weight_decay,
        warmup_steps=warmup_steps,
        seed=seed,
        logging_steps=logging_steps,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        remove_unused_columns=False,  # keeps special_tokens_mask for the collator (it holds nothing else)
    )
    args = TrainingArguments(**(values | training_kwargs))
    dataset = tokenize_for_mlm(train_texts, tokenizer, max_length, cache_dir, lambda: args.main_process_first())
    # no `seed`: the masks follow the Trainer's seeded global RNG (a collator seed would repeat each epoch's masks)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability)
    trainer = MaskedLMTrainer(
        model=model,
        args=args,
        data_collator=collator,
        train_dataset=dataset,
        processing_class=tokenizer,
        head_parameters=model.hfkd_new_parameters,
        head_learning_rate=head_learning_rate,
    )
    main = trainer.is_world_process_zero()
    metrics: dict[str, Any] = {
        "base_model": name_or_path,
        "train_rows": len(train_texts),
        "max_length": max_length,
        "mlm_probability": mlm_probability,
        "new_parameters": model.hfkd_new_parameters,
        "head_learning_rate": head_learning_rate if model.hfkd_new_parameters else None,
    }
    eval_kwargs = dict(max_length=max_length, mlm_probability=mlm_probability, seed=seed)
    if held_out and main:
        metrics["eval_rows"] = len(held_out)
        metrics["eval_mlm_loss_before"] = masked_lm_loss(model, tokenizer, held_out, **eval_kwargs)
    result = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    metrics |= {
        "train_loss": result.training_loss,
        "global_step": result.global_step,
        "train_runtime": result.metrics.get("train_runtime"),
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
    }
    model = trainer.accelerator.unwrap_model(trainer.model)
    if main:
        if held_out:
            metrics["eval_mlm_loss_after"] = masked_lm_loss(model, tokenizer, held_out, **eval_kwargs)
        save_adapted(model, name_or_path, tokenizer, output_dir, keep_mlm=keep_mlm)
        metrics["wall_time_s"] = time.perf_counter() - started
        write_metrics(output_dir, metrics)
        shutil.rmtree(trainer_dir, ignore_errors=True)
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items() if k != "new_parameters"}
        logger.info(f"Adapted encoder saved to {output_dir}: {shown}")
    trainer.accelerator.wait_for_everyone()
    return output_dir


@torch.no_grad()
def save_adapted(
    model: PreTrainedModel, name_or_path: str, tokenizer, output_dir: str, *, keep_mlm: bool = True
) -> None:
    """
    Save a trained masked-LM model as a classification starting point: `output_dir` gets the checkpoint's base model
    (`AutoModel`, e.g. `BertModel` with its pooler) with the encoder weights of `model`, and the tokenizer; with
    `keep_mlm`, `output_dir/mlm` gets the whole masked-LM model and the tokenizer.

    Raises:
        `RuntimeError`: when the base model has weights the masked-LM encoder does not (other than the pooler) or the
            other way round: the two are then not the same architecture.
    """
    path = resolve_model_name_or_path(name_or_path)
    with _expected_head_loading():  # a checkpoint with a head reports it as unused here
        encoder = AutoModel.from_pretrained(path, **_loading_kwargs({}))
    adapted = model.base_model.state_dict()
    missing, unexpected = encoder.load_state_dict(adapted, strict=False)
    not_adapted = [k for k in missing if not k.startswith("pooler.")]
    if not_adapted or unexpected:
        raise RuntimeError(
            f"The encoder of {type(model).__name__} does not match {type(encoder).__name__} of {name_or_path!r}: "
            f"missing {not_adapted}, unexpected {list(unexpected)}."
        )
    if missing:
        logger.info(f"Kept from {name_or_path!r} (not part of the masked-LM model, not trained): {sorted(missing)}")
    os.makedirs(output_dir, exist_ok=True)
    encoder.config.tie_word_embeddings = model.config.tie_word_embeddings
    encoder.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    if keep_mlm:
        folder = os.path.join(output_dir, MLM_SUBFOLDER)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
