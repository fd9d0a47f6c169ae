"""Building students: DistilBERT-style from a teacher's layers, or loaded from any checkpoint.

[`student_from_teacher`] copies the teacher's embeddings, a subset of its encoder layers and its classification head
into a smaller model, either of the teacher's own class (`architecture="same"`) or, for a BERT teacher, a
`DistilBertForSequenceClassification` (`architecture="distilbert"`). The student's config records where it came from
in `config.hfkd_student`, which `save_pretrained` keeps.

A student can also be narrower than its teacher ([`prune_width`], in the spirit of Minitron and Sheared LLaMA): the
hidden dimensions, attention heads and feed-forward neurons that matter most ([`activation_importance`] on some of
the training text, or [`weight_importance`] without data) are kept, and every weight matrix, bias and LayerNorm is
sliced to them consistently.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import DistilBertConfig, DistilBertForSequenceClassification
from transformers.modeling_utils import PreTrainedModel
from transformers.utils import logging

from .distillation_config import StudentArguments
from .models import forward_argument_names, load_classifier
from .vocabulary import trim_vocabulary

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
    *,
    hidden_size: int | None = None,
    intermediate_size: int | None = None,
    importance: WidthImportance | None = None,
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
        hidden_size (`int`, *optional*): a narrower student: keep this many of the teacher's hidden dimensions
            (a multiple of its head size; the heads are scaled by the same ratio), see [`prune_width`].
        intermediate_size (`int`, *optional*): the student's feed-forward width; by default the teacher's scaled
            by `hidden_size / teacher hidden size`.
        importance ([`WidthImportance`], *optional*): which dimensions, heads and neurons to keep when narrowing;
            defaults to [`weight_importance`] of the teacher (pass [`activation_importance`] when text is at hand).

    Returns:
        `PreTrainedModel`: the student, with `config.hfkd_student = {"teacher", "architecture", "layer_ids",
        "num_teacher_layers"}` (a narrowed one also records `hidden_size`, `intermediate_size`,
        `num_attention_heads`, `width_importance` and the teacher's `hidden_dims` it kept).
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture={architecture!r} is not valid; use one of {list(ARCHITECTURES)}.")
    layers_name, teacher_layers = _encoder_layers(teacher)
    ids = _resolve_layer_ids(len(teacher_layers), num_layers, layer_ids)
    source, width = teacher, None
    if hidden_size is not None or intermediate_size is not None:
        # narrow the whole teacher first, then cut its layers (or convert it) exactly as for a full-width student
        source, width = _prune_width(teacher, hidden_size, intermediate_size, importance)
        layers_name, teacher_layers = _encoder_layers(source)
    if architecture == "same":
        student = _same_student(source, layers_name, ids)
    else:
        student = _distilbert_student(source, teacher_layers, ids)
    student.config.hfkd_student = {
        "teacher": teacher.config.name_or_path or None,
        "architecture": architecture,
        "layer_ids": ids,
        "num_teacher_layers": len(teacher_layers),
    } | (width or {})
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


# ---- narrower students: width pruning ------------------------------------------------------------------------------


@dataclass
class WidthImportance:
    """How much each prunable unit of a BERT-layout model matters (higher is kept first).

    Attributes:
        hidden (`torch.Tensor`): `(hidden_size,)`, one score per dimension of the residual stream (embeddings and
            every layer's output share these dimensions).
        heads (`list[torch.Tensor]`): per encoder layer, `(num_attention_heads,)`.
        neurons (`list[torch.Tensor]`): per encoder layer, `(intermediate_size,)`: the feed-forward neurons.
        source (`str`): where the scores came from: `"activations"`, `"weights"` or `"given"`.
    """

    hidden: torch.Tensor
    heads: list[torch.Tensor]
    neurons: list[torch.Tensor]
    source: str = "given"


@dataclass
class _Layer:
    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    attention_output: nn.Linear
    attention_norm: nn.LayerNorm
    intermediate: nn.Linear
    output: nn.Linear
    output_norm: nn.LayerNorm


def _bert_layout(model: PreTrainedModel) -> tuple[nn.Module, list[_Layer]]:
    """The embeddings module and the parts of each encoder layer of a BERT-layout model (BERT, MiniLM, RoBERTa,
    ELECTRA without an embedding projection); a `ValueError` for any other layout."""
    base = model.base_model
    embeddings = getattr(base, "embeddings", None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    problem = None
    if embeddings is None or not isinstance(layers, nn.ModuleList):
        problem = "no base_model.embeddings / base_model.encoder.layer"
    elif getattr(base, "embeddings_project", None) is not None:
        problem = "an embedding projection (embedding_size != hidden_size)"
    elif not isinstance(getattr(embeddings, "LayerNorm", None), nn.LayerNorm):
        problem = "no embeddings.LayerNorm"
    parts = []
    for layer in layers if problem is None else []:
        try:
            attention = layer.attention
            part = _Layer(
                attention.self.query,
                attention.self.key,
                attention.self.value,
                attention.output.dense,
                attention.output.LayerNorm,
                layer.intermediate.dense,
                layer.output.dense,
                layer.output.LayerNorm,
            )
        except AttributeError as e:
            problem = f"an encoder layer without the BERT parts ({e})"
            break
        if getattr(layer, "crossattention", None) is not None:
            problem = "cross-attention layers"
            break
        parts.append(part)
    if problem is not None:
        raise ValueError(
            f"student_hidden_size / student_intermediate_size narrow BERT-layout teachers (BERT, MiniLM, RoBERTa, "
            f"ELECTRA); {type(model).__name__} (model_type={model.config.model_type!r}) has {problem}. Leave "
            "student_hidden_size and student_intermediate_size unset for this teacher."
        )
    return embeddings, parts


def _residual_norms(embeddings: nn.Module, layers: list[_Layer]) -> list[nn.LayerNorm]:
    return [embeddings.LayerNorm] + [norm for p in layers for norm in (p.attention_norm, p.output_norm)]


@torch.no_grad()
def weight_importance(model: PreTrainedModel) -> WidthImportance:
    """Importance from the weights alone (no data): a hidden dimension by the summed |gain| of the LayerNorms that
    write the residual stream, a head by `‖W_value[head]‖ · ‖W_out[:, head]‖`, a feed-forward neuron by
    `‖W_in[neuron]‖ · ‖W_out[:, neuron]‖`."""
    embeddings, layers = _bert_layout(model)
    hidden = sum(norm.weight.detach().float().abs() for norm in _residual_norms(embeddings, layers))
    heads, neurons = [], []
    for part in layers:
        n = model.config.num_attention_heads
        value = part.value.weight.detach().float().reshape(n, -1, part.value.in_features).flatten(1).norm(dim=1)
        out = part.attention_output.weight.detach().float().reshape(part.attention_output.out_features, n, -1)
        heads.append(value * out.transpose(0, 1).flatten(1).norm(dim=1))
        w_in, w_out = part.intermediate.weight.detach().float(), part.output.weight.detach().float()
        neurons.append(w_in.norm(dim=1) * w_out.norm(dim=0))
    cpu = [h.cpu() for h in heads], [f.cpu() for f in neurons]
    return WidthImportance(hidden=hidden.cpu(), heads=cpu[0], neurons=cpu[1], source="weights")


@torch.no_grad()
def activation_importance(
    model: PreTrainedModel,
    tokenizer,
    texts: Sequence[str],
    *,
    max_length: int = 128,
    batch_size: int = 32,
    max_texts: int = 512,
) -> WidthImportance:
    """Importance from the model's activations on some text (Minitron's criterion), averaged over the real tokens:
    a hidden dimension by its mean |value| in the embedding output and every layer's output, a head by the mean L2
    norm of its attention output, a feed-forward neuron by its mean |activation|.

    Args:
        model (`PreTrainedModel`): a BERT-layout model (the teacher).
        tokenizer: its tokenizer.
        texts (`Sequence[str]`): e.g. the training text; at most `max_texts` of them, evenly spaced, are read.
        max_length (`int`, *optional*, defaults to 128): truncation length.
        batch_size (`int`, *optional*, defaults to 32): texts per forward pass.
        max_texts (`int`, *optional*, defaults to 512): how many texts to read at most.
    """
    embeddings, layers = _bert_layout(model)
    if not texts:
        raise ValueError("activation_importance needs at least one text; use weight_importance(model) without data.")
    texts = list(texts)[:: max(1, len(texts) // max_texts)][:max_texts]
    n_heads = model.config.num_attention_heads
    heads = [torch.zeros(n_heads) for _ in layers]
    neurons = [torch.zeros(p.intermediate.out_features) for p in layers]
    hidden = torch.zeros(embeddings.LayerNorm.normalized_shape[0])
    state = {"mask": None}

    def per_token_mean(values: torch.Tensor) -> torch.Tensor:  # (batch, tokens, units) -> (units,) over real tokens
        mask = state["mask"].to(values.dtype)[..., None]
        return ((values * mask).sum((0, 1)) / mask.sum().clamp(min=1)).float().cpu()

    def head_hook(i):
        def hook(module, args):
            context = args[0]
            heads[i].add_(per_token_mean(context.reshape(*context.shape[:2], n_heads, -1).norm(dim=-1)))

        return hook

    def neuron_hook(i):
        def hook(module, args):
            neurons[i].add_(per_token_mean(args[0].abs()))

        return hook

    handles = [p.attention_output.register_forward_pre_hook(head_hook(i)) for i, p in enumerate(layers)]
    handles += [p.output.register_forward_pre_hook(neuron_hook(i)) for i, p in enumerate(layers)]
    accepted = forward_argument_names(model)
    device, was_training = next(model.parameters()).device, model.training
    model.eval()
    try:
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            batch = {k: v.to(device) for k, v in batch.items() if k in accepted}
            state["mask"] = batch["attention_mask"]
            out = model(**batch, output_hidden_states=True)
            for states in out.hidden_states:
                hidden.add_(per_token_mean(states.abs()))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return WidthImportance(hidden=hidden, heads=heads, neurons=neurons, source="activations")


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The indices of the `k` highest scores, in increasing index order (ties: the lower index first)."""
    order = torch.argsort(scores.float(), descending=True, stable=True)[:k]
    return order.sort().values


def _check_width(teacher: PreTrainedModel, hidden_size: int | None, intermediate_size: int | None) -> tuple[int, int]:
    config = teacher.config
    width, heads, ffn = config.hidden_size, config.num_attention_heads, config.intermediate_size
    head_size = width // heads
    if hidden_size is None:
        hidden_size = width
    if not isinstance(hidden_size, int) or not head_size <= hidden_size <= width or hidden_size % head_size:
        raise ValueError(
            f"student_hidden_size must be a multiple of the teacher's head size {head_size} (hidden size {width} / "
            f"{heads} heads) in [{head_size}, {width}]; got student_hidden_size={hidden_size!r}. Fix: use e.g. "
            f"{max(head_size, (width // 2) // head_size * head_size)}."
        )
    if intermediate_size is None:
        intermediate_size = max(1, round(ffn * hidden_size / width))
    if not isinstance(intermediate_size, int) or not 1 <= intermediate_size <= ffn:
        raise ValueError(
            f"student_intermediate_size must be in [1, {ffn}] (the teacher's intermediate size); got "
            f"student_intermediate_size={intermediate_size!r}. Fix: leave it unset (scaled with the hidden size)."
        )
    return hidden_size, intermediate_size


def _check_importance(importance: WidthImportance, teacher: PreTrainedModel, layers: list[_Layer]) -> None:
    config = teacher.config
    expected = (
        config.hidden_size,
        [config.num_attention_heads] * len(layers),
        [p.intermediate.out_features for p in layers],
    )
    found = (len(importance.hidden), [len(h) for h in importance.heads], [len(f) for f in importance.neurons])
    if found != expected:
        raise ValueError(
            f"importance does not fit the teacher: (hidden, heads per layer, neurons per layer) = {found}, expected "
            f"{expected}. Compute it on this teacher (activation_importance / weight_importance)."
        )


@torch.no_grad()
def prune_width(
    model: PreTrainedModel,
    hidden_size: int | None = None,
    *,
    intermediate_size: int | None = None,
    importance: WidthImportance | None = None,
) -> PreTrainedModel:
    """
    A narrower copy of a BERT-layout model: the `hidden_size` most important hidden dimensions, the same share of
    attention heads (the head size is kept, so the attention scale is unchanged) and `intermediate_size` feed-forward
    neurons of every layer. Every weight matrix, bias and LayerNorm (embeddings, layers, pooler, classifier) is sliced
    to the kept units, which keep their original order; the model is not modified.

    With every unit kept the copy computes exactly what `model` computes. Otherwise its LayerNorms see fewer
    dimensions, so it is a starting point for training (distillation), not a drop-in replacement.

    Args:
        model (`PreTrainedModel`): e.g. a `BertForSequenceClassification` (MiniLM, BERT, RoBERTa, ELECTRA).
        hidden_size (`int`, *optional*): a multiple of the head size, at most the model's; defaults to the model's.
        intermediate_size (`int`, *optional*): defaults to the model's scaled by `hidden_size / model hidden size`.
        importance ([`WidthImportance`], *optional*): defaults to [`weight_importance`].
    """
    return _prune_width(model, hidden_size, intermediate_size, importance)[0]


def _prune_width(
    model: PreTrainedModel,
    hidden_size: int | None,
    intermediate_size: int | None,
    importance: WidthImportance | None,
) -> tuple[PreTrainedModel, dict]:
    """`prune_width`, plus the record that goes into `config.hfkd_student`."""
    embeddings, layers = _bert_layout(model)
    hidden_size, intermediate_size = _check_width(model, hidden_size, intermediate_size)
    if importance is None:
        importance = weight_importance(model)
    _check_importance(importance, model, layers)
    config = model.config
    width, n_heads = config.hidden_size, config.num_attention_heads
    head_size = width // n_heads
    kept_heads_count = hidden_size // head_size
    h = _top(importance.hidden, hidden_size)
    slices: dict[int, tuple[torch.Tensor | None, ...]] = {}  # id(parameter) -> index per dimension (None: all)

    def linear(module: nn.Linear, out_index, in_index) -> None:
        slices[id(module.weight)] = (out_index, in_index)
        if module.bias is not None:
            slices[id(module.bias)] = (out_index,)

    def norm(module: nn.LayerNorm) -> None:
        for p in (module.weight, module.bias):
            if p is not None:
                slices[id(p)] = (h,)

    for module in embeddings.modules():
        if isinstance(module, nn.Embedding) and module.embedding_dim == width:
            slices[id(module.weight)] = (None, h)
    norm(embeddings.LayerNorm)
    kept_heads = []
    for i, part in enumerate(layers):
        heads = _top(importance.heads[i], kept_heads_count)
        kept_heads.append(heads.tolist())
        a = (heads[:, None] * head_size + torch.arange(head_size)).flatten()
        f = _top(importance.neurons[i], intermediate_size)
        for projection in (part.query, part.key, part.value):
            linear(projection, a, h)
        linear(part.attention_output, h, a)
        norm(part.attention_norm)
        linear(part.intermediate, f, h)
        linear(part.output, h, f)
        norm(part.output_norm)
    covered = {id(p) for p in embeddings.parameters()} | {id(p) for p in model.base_model.encoder.parameters()}
    for module in model.modules():  # the rest (pooler, classifier): a Linear or LayerNorm over the hidden width
        if isinstance(module, nn.Linear) and id(module.weight) not in covered | set(slices):
            linear(module, h if module.out_features == width else None, h if module.in_features == width else None)
        elif isinstance(module, nn.LayerNorm) and id(module.weight) not in covered | set(slices):
            norm(module)
    for name, p in model.named_parameters():
        if id(p) not in slices and id(p) not in covered and width in p.shape:
            raise ValueError(
                f"Cannot narrow {type(model).__name__}: parameter {name} {tuple(p.shape)} has the hidden width but is "
                "not a Linear or LayerNorm this pruning knows. Leave student_hidden_size unset for this teacher."
            )

    new_config = copy.deepcopy(config)
    new_config.hidden_size = hidden_size
    new_config.num_attention_heads = kept_heads_count
    new_config.intermediate_size = intermediate_size
    pruned = type(model)(new_config)
    for name in list(pruned.base_model._modules):  # parts the model was built without stay out (e.g. no pooler)
        if getattr(model.base_model, name, ...) is None:
            setattr(pruned.base_model, name, None)
    by_name = dict(model.named_parameters())
    state = {}
    for key, tensor in model.state_dict().items():
        index = slices.get(id(by_name[key])) if key in by_name else None
        for dim, kept in enumerate(index or ()):
            if kept is not None:
                tensor = tensor.index_select(dim, kept.to(tensor.device))
        state[key] = tensor
    pruned.load_state_dict(state, strict=True)
    param = next(model.parameters())
    pruned = pruned.to(device=param.device, dtype=param.dtype)
    pruned.train(model.training)
    record = {
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_attention_heads": kept_heads_count,
        "width_importance": importance.source,
        "hidden_dims": h.tolist(),
        "teacher_hidden_size": width,
    }
    logger.info(
        f"Narrowed {type(model).__name__} from width {width} ({n_heads} heads, FFN {config.intermediate_size}) to "
        f"{hidden_size} ({kept_heads_count} heads, FFN {intermediate_size}) by {importance.source} importance; "
        f"heads kept per layer: {kept_heads}."
    )
    return pruned, record


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


def cut_student(
    teacher: PreTrainedModel,
    teacher_tokenizer,
    student_args: StudentArguments,
    texts: Sequence[str] | None = None,
    *,
    max_length: int = 128,
) -> tuple[PreTrainedModel, object]:
    """
    The student `student_args` describe, cut from `teacher`, and its tokenizer: the teacher's layers
    ([`student_from_teacher`]); a narrower student keeps the teacher's units most active on `texts` (the text it
    trains on, read at `max_length`; without `texts`, by weight norms); `student_vocabulary: trimmed` keeps the tokens
    `texts` use ([`trim_if_asked`]).
    """
    importance = None
    if student_args.narrows and texts:
        importance = activation_importance(teacher, teacher_tokenizer, texts, max_length=max_length)
    student = student_from_teacher(
        teacher,
        num_layers=student_args.student_num_layers,
        layer_ids=student_args.student_layer_ids,
        architecture=student_args.student_architecture,
        hidden_size=student_args.student_hidden_size,
        intermediate_size=student_args.student_intermediate_size,
        importance=importance,
    )
    return trim_if_asked(student, student_tokenizer(teacher_tokenizer, student), student_args, texts)


def trim_if_asked(student: PreTrainedModel, tokenizer, student_args: StudentArguments, texts: Sequence[str] | None):
    """`student` and `tokenizer` with the vocabulary trimmed to the tokens of `texts` when `student_vocabulary` is
    `trimmed` ([`hfkd.vocabulary.trim_vocabulary`]); else unchanged."""
    if student_args.student_vocabulary != "trimmed":
        return student, tokenizer
    if texts is None:
        raise ValueError(
            "student_vocabulary='trimmed' needs the student's training text, which this command does not pass: set "
            "student_vocabulary: full and trim the saved student afterwards with scripts/trim_vocabulary.py."
        )
    student, tokenizer, report = trim_vocabulary(student, tokenizer, texts)
    logger.info(f"student_vocabulary='trimmed': {report.to_dict()}")
    return student, tokenizer
