"""Building students: DistilBERT-style from a teacher's layers, or loaded from any checkpoint.

[`student_from_teacher`] copies the teacher's embeddings, a subset of its encoder layers and its classification head
into a smaller model, either of the teacher's own class (`architecture="same"`) or, for a BERT teacher, a
`DistilBertForSequenceClassification` (`architecture="distilbert"`). The student's config records where it came from
in `config.hfkd_student`, which `save_pretrained` keeps.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence

import torch
from torch import nn
from transformers import DistilBertConfig, DistilBertForSequenceClassification
from transformers.modeling_utils import PreTrainedModel
from transformers.utils import logging

from .models import load_classifier

logger = logging.get_logger(__name__)

ARCHITECTURES = ("same", "distilbert")
# Where encoder layers live under `model.base_model`: BERT/RoBERTa/ELECTRA/... use `encoder.layer`, DistilBERT
# uses `transformer.layer`.
_LAYER_PATHS = (("encoder", "layer"), ("transformer", "layer"))
_DISTILBERT_EPS = 1e-12  # DistilBERT hard-codes the eps of all its LayerNorms


def default_layer_ids(num_teacher_layers: int, num_student_layers: int) -> list[int]:
    """
    The teacher layers a student of `num_student_layers` layers starts from: spread evenly, first and last included.

    Layer `i` is `round_half_up(i * (num_teacher_layers - 1) / (num_student_layers - 1))`, which gives DistilBERT's
    choice `[0, 2, 4, 7, 9, 11]` for 6 of 12 layers and `[0, 3, 5]` for 3 of 6. A one-layer student keeps layer `0`,
    the only teacher layer trained on the embedding output that the student's layer will see.

    Args:
        num_teacher_layers (`int`): the teacher's number of encoder layers (at least 1).
        num_student_layers (`int`): the student's number of layers, in `[1, num_teacher_layers]`.
    """
    if num_teacher_layers < 1:
        raise ValueError(f"num_teacher_layers must be at least 1; got num_teacher_layers={num_teacher_layers}.")
    if not 1 <= num_student_layers <= num_teacher_layers:
        raise ValueError(
            f"num_student_layers must be in [1, {num_teacher_layers}] (the teacher's layers); got "
            f"num_student_layers={num_student_layers}."
        )
    if num_student_layers == 1:
        return [0]
    span, steps = num_teacher_layers - 1, num_student_layers - 1
    # integer round-half-up of i * span / steps, exact (no float ties)
    return [(2 * i * span + steps) // (2 * steps) for i in range(num_student_layers)]


def _encoder_layers(model: PreTrainedModel) -> tuple[str, nn.ModuleList]:
    """The qualified name (in `model.named_modules()`) and the `ModuleList` of a model's encoder layers."""
    base = model.base_model
    for path in _LAYER_PATHS:
        module = base
        for attr in path:
            module = getattr(module, attr, None)
        if isinstance(module, nn.ModuleList):
            for name, candidate in model.named_modules():
                if candidate is module:
                    return name, module
    raise ValueError(
        f"Cannot find the encoder layers of {type(model).__name__} (model_type={model.config.model_type!r}): "
        f"looked for an nn.ModuleList at base_model.{' or base_model.'.join('.'.join(p) for p in _LAYER_PATHS)}. "
        "Use a BERT-like teacher, or load a student checkpoint with load_student()."
    )


def _resolve_layer_ids(num_teacher_layers: int, num_layers: int | None, layer_ids: Sequence[int] | None) -> list[int]:
    valid = f"[0, {num_teacher_layers - 1}]"
    if layer_ids is None:
        if num_layers is None:
            num_layers = max(1, num_teacher_layers // 2)
        if not isinstance(num_layers, int) or not 1 <= num_layers <= num_teacher_layers:
            raise ValueError(
                f"num_layers must be an integer in [1, {num_teacher_layers}] (the teacher has {num_teacher_layers} "
                f"layers); got num_layers={num_layers!r}."
            )
        return default_layer_ids(num_teacher_layers, num_layers)
    ids = list(layer_ids)
    if not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError(f"layer_ids must be a non-empty list of integers in {valid}; got layer_ids={ids!r}.")
    bad = [i for i in ids if not 0 <= i < num_teacher_layers]
    if bad:
        raise ValueError(
            f"layer_ids {bad} are out of range: the teacher has {num_teacher_layers} layers, so ids must be in "
            f"{valid}; got layer_ids={ids}."
        )
    if len(set(ids)) != len(ids):
        raise ValueError(f"layer_ids must not repeat a layer; got layer_ids={ids}. Give each teacher layer once.")
    if ids != sorted(ids):
        raise ValueError(f"layer_ids must be increasing (teacher order); got layer_ids={ids}, use {sorted(ids)}.")
    if num_layers is not None and num_layers != len(ids):
        raise ValueError(
            f"num_layers={num_layers} disagrees with layer_ids={ids} ({len(ids)} layers); give only one of them."
        )
    return ids


def student_from_teacher(
    teacher: PreTrainedModel,
    num_layers: int | None = None,
    layer_ids: Sequence[int] | None = None,
    architecture: str = "same",
) -> PreTrainedModel:
    """
    Build a smaller student initialised from the teacher's weights, DistilBERT-style.

    The student gets copies of the teacher's embeddings, of the encoder layers `layer_ids` (in that order) and of
    its classification head, and a copy of its config with fewer layers (labels kept). The teacher is not modified
    and shares no tensor with the student. The student has the teacher's dtype and device and is in eval mode
    (`Trainer` switches it to training).

    Args:
        teacher (`PreTrainedModel`): the teacher, e.g. a `BertForSequenceClassification`.
        num_layers (`int`, *optional*): the student's number of layers; defaults to half the teacher's (at least 1).
            The layers are [`default_layer_ids`] unless `layer_ids` is given.
        layer_ids (`Sequence[int]`, *optional*): the teacher layers to copy, increasing and without repeats.
        architecture (`str`, *optional*, defaults to `"same"`):
            - `"same"`: the teacher's own class (any model whose layers are a `ModuleList` at
              `base_model.encoder.layer` or `base_model.transformer.layer`: BERT, RoBERTa, ELECTRA, DistilBERT, ...).
            - `"distilbert"`: a `DistilBertForSequenceClassification` from a BERT teacher. BERT's type-0 token type
              embedding is folded into the position embeddings, so for single-segment input (token_type_ids all 0)
              the encoder computes exactly what the teacher's layers compute. DistilBERT's head applies ReLU after
              `pre_classifier` (copied from BERT's pooler, which uses tanh), so the logits differ from the teacher's.

    Returns:
        `PreTrainedModel`: the student, with `config.hfkd_student = {"teacher", "architecture", "layer_ids",
        "num_teacher_layers"}`.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture={architecture!r} is not valid; use one of {list(ARCHITECTURES)}.")
    layers_name, teacher_layers = _encoder_layers(teacher)
    ids = _resolve_layer_ids(len(teacher_layers), num_layers, layer_ids)
    if architecture == "same":
        student = _same_student(teacher, layers_name, ids)
    else:
        student = _distilbert_student(teacher, teacher_layers, ids)
    student.config.hfkd_student = {
        "teacher": teacher.config.name_or_path or None,
        "architecture": architecture,
        "layer_ids": ids,
        "num_teacher_layers": len(teacher_layers),
    }
    param = next(teacher.parameters())
    return student.to(device=param.device, dtype=param.dtype).eval()


def _same_student(teacher: PreTrainedModel, layers_name: str, ids: list[int]) -> PreTrainedModel:
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(ids)
    config._name_or_path = ""  # a new model, not the teacher's checkpoint
    student = type(teacher)(config)
    # Parts the teacher was built without (e.g. `BertModel(add_pooling_layer=False)`) are left out of the student too.
    for name in list(student.base_model._modules):
        if getattr(teacher.base_model, name, ...) is None:
            setattr(student.base_model, name, None)
    # Map every teacher tensor to its student name: layer ids[j] becomes layer j, the rest keeps its name.
    new_index = {str(t): str(j) for j, t in enumerate(ids)}
    prefix = layers_name + "."
    state = {}
    for key, tensor in teacher.state_dict().items():
        if key.startswith(prefix):
            index, rest = key[len(prefix) :].split(".", 1)
            if index not in new_index:
                continue
            key = f"{prefix}{new_index[index]}.{rest}"
        state[key] = tensor
    student.load_state_dict(state, strict=True)  # copies the values: no tensor is shared with the teacher
    _, student_layers = _encoder_layers(student)
    for j, layer in enumerate(student_layers):
        for module in layer.modules():
            if getattr(module, "layer_idx", None) is not None:
                module.layer_idx = j  # cache indices (decoder use) follow the new position
    return student


def _distilbert_config(teacher_config, num_layers: int) -> DistilBertConfig:
    c = teacher_config
    if not isinstance(c.hidden_act, str):
        raise ValueError(f"architecture='distilbert' needs a named hidden_act; the teacher has {c.hidden_act!r}.")
    if getattr(c, "position_embedding_type", "absolute") not in (None, "absolute"):
        raise ValueError(
            f"architecture='distilbert' needs absolute position embeddings; the teacher has "
            f"position_embedding_type={c.position_embedding_type!r}. Use architecture='same'."
        )
    if c.layer_norm_eps != _DISTILBERT_EPS:
        logger.warning(
            f"The teacher's layer_norm_eps={c.layer_norm_eps} differs from DistilBERT's fixed {_DISTILBERT_EPS}: the "
            "student's outputs will differ slightly from the teacher's. Use architecture='same' for an exact copy."
        )
    dropout = c.classifier_dropout if getattr(c, "classifier_dropout", None) is not None else c.hidden_dropout_prob
    return DistilBertConfig(
        vocab_size=c.vocab_size,
        max_position_embeddings=c.max_position_embeddings,
        sinusoidal_pos_embds=False,
        n_layers=num_layers,
        n_heads=c.num_attention_heads,
        dim=c.hidden_size,
        hidden_dim=c.intermediate_size,
        dropout=c.hidden_dropout_prob,
        attention_dropout=c.attention_probs_dropout_prob,
        activation=c.hidden_act,
        initializer_range=c.initializer_range,
        seq_classif_dropout=dropout,
        pad_token_id=c.pad_token_id,
        id2label=dict(c.id2label) if c.id2label is not None else None,
        label2id=dict(c.label2id) if c.label2id is not None else None,
        problem_type=c.problem_type,
    )


@torch.no_grad()
def _distilbert_student(teacher: PreTrainedModel, teacher_layers: nn.ModuleList, ids: list[int]) -> PreTrainedModel:
    if teacher.config.model_type != "bert":
        raise ValueError(
            f"architecture='distilbert' converts BERT teachers only; the teacher has "
            f"model_type={teacher.config.model_type!r}. Use architecture='same' for this teacher."
        )
    if teacher.config.is_decoder or teacher.config.add_cross_attention:
        raise ValueError(
            "architecture='distilbert' needs an encoder-only BERT (is_decoder=False, add_cross_attention=False); "
            "use architecture='same' for this teacher."
        )
    student = DistilBertForSequenceClassification(_distilbert_config(teacher.config, len(ids)))
    bert, dist = teacher.base_model, student.distilbert

    def copy_(dst: nn.Module, src: nn.Module) -> None:
        dst.weight.copy_(src.weight)
        if getattr(dst, "bias", None) is not None:
            dst.bias.copy_(src.bias)

    copy_(dist.embeddings.word_embeddings, bert.embeddings.word_embeddings)
    # DistilBERT has no token type embeddings: fold BERT's type-0 row into every position (exact for segment 0).
    type0 = bert.embeddings.token_type_embeddings.weight[0]
    dist.embeddings.position_embeddings.weight.copy_(bert.embeddings.position_embeddings.weight + type0)
    copy_(dist.embeddings.LayerNorm, bert.embeddings.LayerNorm)
    for block, t in zip(dist.transformer.layer, ids, strict=True):
        src = teacher_layers[t]
        copy_(block.attention.q_lin, src.attention.self.query)
        copy_(block.attention.k_lin, src.attention.self.key)
        copy_(block.attention.v_lin, src.attention.self.value)
        copy_(block.attention.out_lin, src.attention.output.dense)
        copy_(block.sa_layer_norm, src.attention.output.LayerNorm)
        copy_(block.ffn.lin1, src.intermediate.dense)
        copy_(block.ffn.lin2, src.output.dense)
        copy_(block.output_layer_norm, src.output.LayerNorm)

    if getattr(bert, "pooler", None) is not None:
        copy_(student.pre_classifier, bert.pooler.dense)
    else:
        logger.warning("The teacher has no pooler (add_pooling_layer=False): the student's pre_classifier is new.")
    head = getattr(teacher, "classifier", None)
    if isinstance(head, nn.Linear) and head.weight.shape == student.classifier.weight.shape:
        copy_(student.classifier, head)
    else:
        logger.warning(
            f"The teacher ({type(teacher).__name__}) has no linear classifier of shape "
            f"{tuple(student.classifier.weight.shape)}: the student's classifier is newly initialised."
        )
    logger.info(
        "DistilBERT student built: its encoder equals the teacher's layers for token_type_ids=0, but its head "
        "applies ReLU after pre_classifier where BERT's pooler applies tanh, so its logits differ until trained."
    )
    return student


def student_tokenizer(teacher_tokenizer, student: PreTrainedModel):
    """
    The tokenizer to save with `student`: the teacher's, minus the inputs the student's `forward` does not take.

    For a DistilBERT student of a BERT teacher this is a copy whose `model_input_names` is
    `["input_ids", "attention_mask"]` (no `token_type_ids`, which `DistilBertForSequenceClassification.forward`
    does not accept and `pipeline("text-classification")` would pass); the setting survives `save_pretrained`. When
    the student takes every input the tokenizer makes, the teacher's tokenizer itself is returned.
    """
    parameters = inspect.signature(student.forward).parameters.values()
    accepted = {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    names = list(teacher_tokenizer.model_input_names)
    kept = [name for name in names if name in accepted]
    if kept == names or not kept:
        return teacher_tokenizer
    dropped = sorted(set(names) - set(kept))
    logger.info(f"The student's tokenizer drops {dropped}: {type(student).__name__}.forward takes {kept}.")
    tokenizer = copy.deepcopy(teacher_tokenizer)
    tokenizer.model_input_names = kept
    # save_pretrained writes only the keys of init_kwargs to tokenizer_config.json
    tokenizer.init_kwargs["model_input_names"] = list(kept)
    return tokenizer


def load_student(name_or_path: str, label_names: Sequence[str] | None = None, **kwargs) -> PreTrainedModel:
    """
    Load any Hub id or local checkpoint as a student: [`hfkd.models.load_classifier`] under another name.

    Args:
        name_or_path (`str`): a `builtin:` name, a local folder or a Hub id.
        label_names (`Sequence[str]`, *optional*): the label space (a new head when the checkpoint has none).
        kwargs: passed to `load_classifier` / `from_pretrained`.
    """
    return load_classifier(name_or_path, label_names=label_names, **kwargs)
