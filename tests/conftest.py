"""Shared fixtures: tiny BERT/DistilBERT models built from configs, a tiny WordPiece tokenizer, tiny datasets."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach the Hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast  # noqa: E402

LABELS = ["negative", "neutral", "positive"]
WORDS = (
    "good great love happy nice fine bad awful hate sad late delay flight plane phone apple car road music festival "
    "ball game the a is was my your not very so and but"
).split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
POSITIVE, NEGATIVE = {"good", "great", "love", "happy", "nice"}, {"bad", "awful", "hate", "sad", "late"}


def write_vocab(folder) -> str:
    path = os.path.join(folder, "vocab.txt")
    with open(path, "w") as f:
        f.write("\n".join(SPECIAL + WORDS) + "\n")
    return path


def make_tokenizer(folder) -> BertTokenizerFast:
    # transformers 5 ignores `vocab_file=` in the constructor; `vocab=` takes the file.
    tok = BertTokenizerFast(vocab=write_vocab(folder), model_max_length=64)
    assert tok.convert_tokens_to_ids("good") != tok.unk_token_id
    return tok


def tiny_bert_config(num_layers: int = 2, labels: list[str] | None = LABELS, **overrides) -> BertConfig:
    """A 2-layer BERT of width 32 for the tiny vocabulary; `labels=None` leaves the placeholder labels."""
    kwargs = dict(
        vocab_size=len(SPECIAL) + len(WORDS),
        hidden_size=32,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    if labels is not None:
        kwargs.update(
            num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
        )
    kwargs.update(overrides)
    return BertConfig(**kwargs)


def tiny_bert(num_layers: int = 2, seed: int = 0, **overrides) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(tiny_bert_config(num_layers, **overrides))


def sentiment_of(text: str) -> int:
    words = set(text.split())
    if words & POSITIVE:
        return 2
    if words & NEGATIVE:
        return 0
    return 1


def tiny_texts(n: int, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    texts = []
    for _ in range(n):
        length = int(torch.randint(2, 9, (1,), generator=g))
        idx = torch.randint(0, len(WORDS), (length,), generator=g).tolist()
        texts.append(" ".join(WORDS[i] for i in idx))
    return texts


def tiny_dataset(n: int = 32, seed: int = 0) -> Dataset:
    texts = tiny_texts(n, seed)
    return Dataset.from_dict({"text": texts, "label": [sentiment_of(t) for t in texts]})


@pytest.fixture
def tokenizer(tmp_path):
    return make_tokenizer(tmp_path)


@pytest.fixture
def tiny_teacher():
    return tiny_bert(num_layers=2, seed=0).eval()


@pytest.fixture
def tokenized(tokenizer):
    """A tiny tokenised training set with `labels` (some unlabeled rows are added by the tests that need them)."""

    def tokenize(n: int = 32, seed: int = 0) -> Dataset:
        ds = tiny_dataset(n, seed)
        ds = ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=32), batched=True)
        return ds.rename_column("label", "labels").remove_columns("text")

    return tokenize


# --- the scripts, as a user runs them ---

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.yaml")


def load_script(name):
    """`scripts/<name>.py` as a module (its `make_parser()` and `main()`)."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", os.path.join(ROOT, "scripts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses in a script look their module up there
    spec.loader.exec_module(module)
    return module


def run_script(name, *args):
    """Run a script in-process on configs/tiny.yaml plus `args`; returns what its `main` returns."""
    script = load_script(name)
    return script.main(*script.make_parser().parse_args_and_config(["--config", TINY, *args]))


def launch_ddp(*args, timeout=600):
    """Run a script under `accelerate launch` with 2 CPU processes (DDP); returns its stdout and stderr."""
    # `accelerate launch --num_processes 2 --cpu` starts ONE process (huggingface/accelerate#2741); the shipped
    # config starts two through torchrun and the scripts switch them to CPU DDP.
    config = os.path.join(ROOT, "configs", "accelerate", "cpu_ddp.yaml")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config, *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


# --- a tiny cross-domain experiment ---

DOMAINS = ("air", "phone", "car")


def write_domains(folder, n=48):
    os.makedirs(folder, exist_ok=True)
    for i, name in enumerate(DOMAINS):
        with open(os.path.join(folder, f"{name}.jsonl"), "w") as f:
            for text in tiny_texts(n, seed=10 + i):
                f.write(json.dumps({"text": f"{name} {text}", "label": LABELS[sentiment_of(text)]}) + "\n")
    return folder


def run_experiment(tmp_path, *args, source=("air",)):
    """scripts/cross_domain.py with tiny models on three tiny domains, into `tmp_path / "exp"`."""
    script = load_script("cross_domain")
    common = ["--source_domains", *source] if source else []
    common += [
        "--dataset", str(write_domains(tmp_path / "domains")),
        "--model_name_or_path", "builtin:tiny-bert", "--student_num_layers", "1", "--max_length", "32",
        "--num_train_epochs", "1", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16",
        "--learning_rate", "1e-3", "--logging_steps", "2", "--save_total_limit", "1", "--seed", "0",
        "--report_to", "none", "--disable_tqdm", "true", "--output_dir", str(tmp_path / "exp"),
    ]  # fmt: skip
    return script.main(*script.make_parser().parse_args_and_config(common + list(args)))


def copy_run(src, dst) -> None:
    """Copy a folder of runs, rewriting the absolute paths its JSON and markdown files hold to the copy's."""
    shutil.copytree(src, dst, dirs_exist_ok=True)
    old, new = os.path.abspath(src), os.path.abspath(dst)
    for folder, _, files in os.walk(dst):
        for name in files:
            if name.endswith((".json", ".md")):
                path = os.path.join(folder, name)
                with open(path) as f:
                    text = f.read()
                if old in text:
                    with open(path, "w") as f:
                        f.write(text.replace(old, new))


@pytest.fixture(scope="session")
def experiment_once(tmp_path_factory):
    """The tiny experiment, trained once per test session."""
    tmp_path = tmp_path_factory.mktemp("experiment")
    run_experiment(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def loo_experiment(tmp_path_factory):
    """`(tmp_path, results)`: the tiny experiment in leave-one-out mode over the three domains, with the distilled
    and the multi_teacher students, trained once per test session."""
    tmp_path = tmp_path_factory.mktemp("experiment-loo")
    args = ["--mode", "leave_one_out", "--models", "teacher", "distilled", "multi_teacher"]
    return tmp_path, run_experiment(tmp_path, *args, source=None)


OPT_IN_MODELS = ["teacher", "distilled", "adaptive", "self_trained", "augmented", "adaptive_augmented", "dapt_student"]


@pytest.fixture(scope="session")
def opt_in_experiment(experiment_once, tmp_path_factory):
    """`(tmp_path, results)`: the session's tiny experiment plus the opt-in students (`self_trained` in two rounds,
    `augmented`, `adaptive_augmented`, `dapt_teacher` and `dapt_student`), trained once in a copy for the tests of
    their modules; the teacher, distilled and adaptive stages are reused."""
    tmp_path = tmp_path_factory.mktemp("experiment-opt-in")
    copy_run(experiment_once, tmp_path)
    args = ["--models", *OPT_IN_MODELS, "--self_training_rounds", "2", "--self_training_fraction", "0.5"]
    args += ["--augment_factor", "1", "--dapt_learning_rate", "5e-3", "--dapt_num_train_epochs", "2"]
    return tmp_path, run_experiment(tmp_path, *args)


@pytest.fixture(scope="module")
def experiment(experiment_once, tmp_path_factory):
    """`(tmp_path, results)`: a test module's own copy of the session's experiment (its tests may rerun stages or
    rewrite cards in it), and its `results.json`."""
    tmp_path = tmp_path_factory.mktemp("experiment-copy")
    copy_run(experiment_once, tmp_path)
    with open(tmp_path / "exp" / "results.json") as f:
        return tmp_path, json.load(f)
