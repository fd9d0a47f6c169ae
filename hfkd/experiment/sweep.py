"""What `scripts/sweep.py` does: search the student's recipe (learning rate, epochs, warm-up, clipping, temperature,
alpha) with `Trainer.hyperparameter_search` (optuna), selecting on the source domains' validation split only, and write
the best recipe as a config the other scripts take.

The teacher is loaded once (or, for an experiment config without one, fine-tuned once by the cross-domain experiment's
own teacher stage, which `scripts/cross_domain.py` then reuses); with the teacher-logit cache its logits are computed
once and every trial reads them. Each trial distils a fresh student, cut from the teacher as the config says (the
`model_init` of the [`DistillationTrainer`]), from the same seed, on the same rows. Only the source domains are loaded,
and only their train and validation splits are used: no target domain, no test split, takes part in the selection.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import yaml
from accelerate import PartialState
from datasets import DatasetDict
from transformers import TrainerCallback, TrainingArguments
from transformers.utils import logging

from ..arguments import check_choice, check_range
from ..data.arguments import DataArguments
from ..data.domains import concatenate_domains, tokenize_domains
from ..data.source import domain_label_names, load_data
from ..distillation_config import DistillationArguments, StudentArguments
from ..evaluation.statistics import Bootstrap, paired_difference
from ..fingerprints import domain_fingerprints
from ..grad_health import PLOT_FILE, add_gradient_health
from ..metrics import make_compute_metrics
from ..models import load_teacher, load_tokenizer, set_loading_policy
from ..parser import config_to_dict
from ..pipelines.distill import attach_teacher_logits, build_student
from ..pipelines.finetune import ModelArguments
from ..trainer import DistillationTrainer
from .arguments import ExperimentArguments
from .cross_domain import Block, Experiment

logger = logging.get_logger(__name__)

INSTALL_HINT = 'pip install "hfkd[sweep]"'
TRIALS_FILE = "sweep_trials.json"
RECIPE_FILE = "best_recipe.yaml"
SCRATCH_DIR = "sweep"
STUDY_NAME = "hfkd-sweep"


# ---- the search space --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dimension:
    """One searched hyperparameter: a float range (`uniform` or `log`), an integer range (`int`), or `choice`s."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[float, ...] = ()

    def suggest(self, trial) -> float | int:
        """The trial's value (floats rounded to 3 significant digits: that value is trained and written)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high))
        return _round(trial.suggest_float(self.name, self.low, self.high, log=self.kind == "log"))

    def contains(self, value: Any) -> bool:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        if self.kind == "choice":
            return any(math.isclose(value, c, rel_tol=1e-9, abs_tol=1e-12) for c in self.choices)
        if self.kind == "int" and value != int(value):
            return False
        return self.low <= value <= self.high

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of {" + ", ".join(_number(c) for c in self.choices) + "}"
        what = {"log": "log-uniform", "uniform": "uniform", "int": "integer"}[self.kind]
        return f"{what} [{_number(self.low)}, {_number(self.high)}]"

    def spec(self) -> str:
        """The `--space` entry that gives this dimension back."""
        if self.kind == "choice":
            return f"{self.name}=" + ",".join(_number(c) for c in self.choices)
        suffix = "" if self.kind == "uniform" else f":{self.kind}"
        return f"{self.name}={_number(self.low)}:{_number(self.high)}{suffix}"


def _round(value: float) -> float:
    return float(f"{value:.3g}")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e6 else f"{value:g}"


DEFAULT_SPACE: dict[str, Dimension] = {
    "learning_rate": Dimension("learning_rate", "log", 1e-5, 5e-4),
    "num_train_epochs": Dimension("num_train_epochs", "choice", choices=(2, 3, 4, 6, 8)),
    # a fraction of all optimizer steps, as `warmup_steps: 0.1` in the configs
    "warmup_steps": Dimension("warmup_steps", "uniform", 0.0, 0.2),
    # 0 turns clipping off (TrainingArguments clips only when max_grad_norm > 0)
    "max_grad_norm": Dimension("max_grad_norm", "choice", choices=(0.5, 1.0, 5.0, 0.0)),
    "temperature": Dimension("temperature", "uniform", 1.0, 8.0),
    "alpha": Dimension("alpha", "uniform", 0.1, 0.9),
}
"""What the sweep searches by default: the student recipe the shipped configs set by hand."""

# Every hyperparameter the sweep can search, with the values it allows: (low, high, low_open, high_open, integer).
SEARCHABLE: dict[str, tuple[float, float | None, bool, bool, bool]] = {
    "learning_rate": (0.0, None, True, False, False),
    "num_train_epochs": (0.0, None, True, False, False),
    "warmup_steps": (0.0, None, False, False, False),
    "max_grad_norm": (0.0, None, False, False, False),
    "temperature": (0.0, None, True, False, False),
    "alpha": (0.0, 1.0, False, False, False),
    "weight_decay": (0.0, None, False, False, False),
    "per_device_train_batch_size": (1.0, None, False, False, True),
    "gradient_accumulation_steps": (1.0, None, False, False, True),
    "adam_beta1": (0.0, 1.0, False, True, False),
    "adam_beta2": (0.0, 1.0, False, True, False),
}

_SPACE_FORMS = "name (its default range), name=low:high, name=low:high:log, name=low:high:int or name=a,b,c"


def parse_space(entries: Sequence[str] | None) -> dict[str, Dimension]:
    """The dimensions of `--space` entries (`None`: [`DEFAULT_SPACE`]); raises a `ValueError` naming the bad entry.

    An entry is a name (its default range), `name=low:high` (uniform), `name=low:high:log`, `name=low:high:int` or
    `name=a,b,c` (choices). Only the named hyperparameters are searched.
    """
    if entries is None:
        return dict(DEFAULT_SPACE)
    if not entries:
        raise ValueError(f"space is empty; name at least one hyperparameter ({_SPACE_FORMS}) or leave space unset.")
    space: dict[str, Dimension] = {}
    for entry in entries:
        name, sep, spec = str(entry).partition("=")
        name, spec = name.strip(), spec.strip()
        if name not in SEARCHABLE:
            close = difflib.get_close_matches(name, SEARCHABLE, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"space entry {entry!r}: {name!r} is not a hyperparameter the sweep can search{hint}. Fix: use one "
                f"of {sorted(SEARCHABLE)}."
            )
        if name in space:
            raise ValueError(f"space names {name!r} twice ({entry!r}); keep one entry per hyperparameter.")
        if not sep:
            if name not in DEFAULT_SPACE:
                raise ValueError(
                    f"space entry {entry!r}: {name!r} has no default range; give one, e.g. {name}=0:0.1 "
                    f"({_SPACE_FORMS})."
                )
            space[name] = DEFAULT_SPACE[name]
            continue
        space[name] = _check_dimension(entry, _parse_dimension(entry, name, spec))
    return space


def _parse_dimension(entry: str, name: str, spec: str) -> Dimension:
    bad = ValueError(f"space entry {entry!r} is not valid; write {_SPACE_FORMS}, e.g. learning_rate=1e-5:5e-4:log.")
    try:
        if ":" in spec:
            parts = spec.split(":")
            kind = parts[2].strip().lower() if len(parts) == 3 else "uniform"
            if len(parts) not in (2, 3) or kind not in ("uniform", "log", "int"):
                raise bad
            low, high = float(parts[0]), float(parts[1])
            if not low < high:
                raise ValueError(f"space entry {entry!r}: low must be below high; got {low:g} and {high:g}.")
            return Dimension(name, kind, low, high)
        choices = tuple(float(c) for c in spec.split(",") if c.strip())
        if not choices or len(set(choices)) != len(choices):
            raise bad
        return Dimension(name, "choice", choices=tuple(int(c) if c.is_integer() else c for c in choices))
    except ValueError as error:
        if error is bad or "low must be below" in str(error):
            raise
        raise bad from None


def _check_dimension(entry: str, dim: Dimension) -> Dimension:
    low, high, low_open, high_open, integer = SEARCHABLE[dim.name]
    values = list(dim.choices) if dim.kind == "choice" else [dim.low, dim.high]
    for value in values:
        try:
            check_range(dim.name, value, low, high, low_open=low_open, high_open=high_open)
        except ValueError:
            left, right = "(" if low_open else "[", ")" if high_open else "]"
            allowed = f"{left}{low:g}, {'inf' if high is None else f'{high:g}'}{right}"
            raise ValueError(
                f"space entry {entry!r}: {dim.name} must lie in {allowed}; got {value:g}. Fix the range of {dim.name}."
            ) from None
        if (integer or dim.kind == "int") and value != int(value):
            raise ValueError(f"space entry {entry!r}: {dim.name} takes whole numbers; got {value:g}.")
    if integer and dim.kind == "uniform":  # a whole-number option: draw whole numbers
        dim = dataclasses.replace(dim, kind="int")
    if integer and dim.kind == "log":
        raise ValueError(f"space entry {entry!r}: {dim.name} takes whole numbers; write {dim.name}=low:high:int.")
    if dim.kind == "log" and dim.low <= 0:
        raise ValueError(f"space entry {entry!r}: a log range needs low > 0; got {dim.low:g}.")
    if dim.name == "warmup_steps" and min(values) < 1 <= max(values):
        raise ValueError(
            f"space entry {entry!r}: warmup_steps below 1 is a fraction of all steps, from 1 on a number of steps; "
            "keep the range on one side, e.g. warmup_steps=0:0.2."
        )
    return dim


# ---- the sweep's own options -------------------------------------------------------------------------------------


@dataclass
class SweepArguments:
    """The recipe search (`scripts/sweep.py`): how many trials, over which space, judged by which metric."""

    n_trials: int = field(default=12, metadata={"help": "Number of trials (students trained) in the search."})
    space: list[str] | None = field(
        default=None,
        metadata={
            "help": "The hyperparameters to search, each as 'name' (its default range), 'name=low:high', "
            "'name=low:high:log', 'name=low:high:int' or 'name=a,b,c'; only those named are searched. Default: "
            + ", ".join(d.spec() for d in DEFAULT_SPACE.values())
            + " (max_grad_norm 0 = no clipping)."
        },
    )
    objective: str = field(
        default="eval_macro_f1",
        metadata={
            "help": "The metric a trial is judged by, on the validation split of the source domains at the end of "
            "its training: eval_macro_f1, eval_accuracy, eval_loss, ..."
        },
    )
    direction: str | None = field(
        default=None,
        metadata={"help": "'maximize' or 'minimize' the objective. Default: minimize a loss, maximize anything else."},
    )
    sweep_seed: int = field(default=42, metadata={"help": "Seed of the sampler (optuna's TPE) that picks the trials."})
    sweep_timeout: float | None = field(
        default=None, metadata={"help": "Start no new trial after this many seconds (the running one finishes)."}
    )
    try_config_recipe: bool = field(
        default=True,
        metadata={
            "help": "Make the first trial the config's own recipe (when it lies in the space), so that the sweep "
            "measures it under the same conditions as the others."
        },
    )
    output_config: str | None = field(
        default=None,
        metadata={
            "help": f"Where to write the config with the best recipe (every trial goes to {TRIALS_FILE} beside it). "
            f"Default: <output_dir>/{RECIPE_FILE}."
        },
    )

    def __post_init__(self):
        check_range("n_trials", self.n_trials, 1, hint="use e.g. 12 (each trial trains one student)")
        check_range("sweep_timeout", self.sweep_timeout, 0, low_open=True, hint="use a number of seconds, e.g. 3600")
        if not self.objective.startswith("eval_"):
            raise ValueError(
                f"objective={self.objective!r} is not an evaluation metric; name one as the Trainer logs it, e.g. "
                "eval_macro_f1, eval_accuracy or eval_loss."
            )
        if self.direction is not None:
            check_choice("direction", self.direction, ("maximize", "minimize"))
        self.search_space = parse_space(self.space)

    @property
    def resolved_direction(self) -> str:
        """`direction`, or `minimize` for a loss and `maximize` for anything else."""
        return self.direction or ("minimize" if self.objective.endswith("loss") else "maximize")


SWEEP_FIELDS = {f.name for f in dataclasses.fields(SweepArguments)} | {"config"}
"""Keys of the sweep's own options, which the written config leaves out (the other scripts do not take them)."""


def require_optuna():
    """The `optuna` module, or an `ImportError` that says how to install it."""
    try:
        import optuna
    except ImportError:
        raise ImportError(f"The recipe search needs optuna, which is not installed: {INSTALL_HINT}") from None
    return optuna


# ---- what a trial did ----------------------------------------------------------------------------------------------


class TrialLog(TrainerCallback):
    """Records each trial: the values it trained with, the objective after every evaluation, the optimizer steps, the
    clipping rate and the last validation predictions (for the paired comparison with the config's recipe)."""

    def __init__(self, objective: str, health=None, progress_file: str | None = None):
        self.objective = objective
        self.health = health
        self.progress_file = progress_file  # rewritten after every trial: a killed sweep keeps what it finished
        self.trials: dict[int, dict[str, Any]] = {}
        self.current: dict[str, Any] | None = None
        self.predictions: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def begin(self, number: int, params: dict[str, Any], from_config: bool) -> None:
        self.current = {
            "number": number,
            "recipe": "config" if from_config else "sampled",
            "params": dict(params),
            "evaluations": [],
        }
        self.trials[number] = self.current

    def compute_metrics(self, base):
        """`base` (the Trainer's `compute_metrics`) that also keeps the predicted and true label ids."""

        def compute(eval_prediction):
            predictions, labels = eval_prediction.predictions, eval_prediction.label_ids
            predictions = predictions[0] if isinstance(predictions, (tuple, list)) else predictions
            if self.current is not None:
                ids = np.asarray(predictions).argmax(-1) if np.ndim(predictions) > 1 else np.asarray(predictions)
                self.predictions[self.current["number"]] = (np.asarray(labels), ids)
            return base(eval_prediction)

        return compute

    def on_train_begin(self, args, state, control, **kwargs):
        if self.current is not None:
            self.current["started"] = time.perf_counter()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.current is None or not metrics:
            return
        self.current["evaluations"].append(
            {"epoch": state.epoch, "step": state.global_step, self.objective: metrics.get(self.objective)}
        )
        self.current["eval_metrics"] = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}

    def on_train_end(self, args, state, control, **kwargs):
        if self.current is None:
            return
        trial = self.current
        trial["optimizer_steps"] = state.global_step
        trial["train_seconds"] = round(time.perf_counter() - trial.pop("started", time.perf_counter()), 1)
        if self.health is not None and self.health.health is not None:
            trial["clip_fraction"] = self.health.health.clip_fraction()
            # the gradient-health callback (called before this one) drew the trial's plot: keep one per trial
            plot = os.path.join(args.output_dir, PLOT_FILE)
            if state.is_world_process_zero and os.path.isfile(plot):
                stem, ext = os.path.splitext(PLOT_FILE)
                os.replace(plot, os.path.join(args.output_dir, f"{stem}_trial{trial['number']}{ext}"))
        if self.progress_file and state.is_world_process_zero:
            done = [
                t | {"objective": t["evaluations"][-1][self.objective]}
                for t in self.trials.values()
                if t["evaluations"] and "optimizer_steps" in t
            ]
            write_json(self.progress_file, {"objective": self.objective, "finished": False, "trials": done})


def write_json(path: str, content: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(content, f, indent=2, default=str)
    os.replace(tmp, path)  # atomic: a kill never leaves half a file


# ---- the sweep -----------------------------------------------------------------------------------------------------


def check_sweep_inputs(
    sweep_args: SweepArguments, exp_args: ExperimentArguments, data_args: DataArguments, args: DistillationArguments
) -> None:
    """Refuse what the sweep cannot do, before anything is loaded or trained."""
    space = sweep_args.search_space
    if args.uses_intermediate_terms:
        raise ValueError(
            "hidden_weight / attention_weight / embedding_weight > 0: the sweep tunes the logit-distillation recipe "
            "(each trial builds a fresh student, which the intermediate terms' projections are not rebuilt for). Set "
            "those weights to 0 for the sweep."
        )
    if args.world_size > 1:
        raise ValueError(
            f"the sweep runs in one process (this launch has {args.world_size}); run `python scripts/sweep.py ...`."
        )
    if exp_args.mode != "single":
        raise ValueError(
            f"mode={exp_args.mode!r}: the sweep selects on the validation split of one set of source domains; set "
            "mode: single and source_domains to the domains to tune on."
        )
    if args.max_steps > 0 and "num_train_epochs" in space:
        raise ValueError(
            f"max_steps={args.max_steps} overrides num_train_epochs, which the space searches; set max_steps: -1 or "
            "leave num_train_epochs out of space."
        )
    if not args.teacher_model_name_or_path and not data_args.source_domains:
        raise ValueError(
            "source_domains is not set and no teacher is given; name the domain(s) to tune on, e.g. "
            "source_domains: [airline] (the teacher is fine-tuned on them first)."
        )


def train_experiment_teacher(
    exp_args: ExperimentArguments,
    model_args: ModelArguments,
    data_args: DataArguments,
    student_args: StudentArguments,
    args: DistillationArguments,
    domains: dict[str, DatasetDict],
) -> str:
    """The teacher of a cross-domain experiment with this config: `model_name_or_path` fine-tuned on the source
    domains by the experiment's own teacher stage, in the same folder (`<output_dir>/<sources>/teacher-<hash>`), so
    `scripts/cross_domain.py` reuses it. Returns its folder."""
    experiment = Experiment(exp_args, model_args, data_args, student_args, args)
    experiment.labels = domain_label_names(domains)
    experiment.fingerprints = domain_fingerprints(domains)
    sources = list(domains)
    data_key = {  # as Experiment.run_block keys a block's stages
        "sources": {d: experiment.fingerprints[d] for d in sources},
        "max_length": data_args.max_length,
        "labels": experiment.labels,
    }
    name = "+".join(sources)
    block = Block(name, sources, [], domains, os.path.join(args.output_dir, name), data_key)
    logger.info(
        f"No teacher_model_name_or_path: fine-tuning {model_args.model_name_or_path} on {sources} first (the "
        "cross-domain experiment's teacher stage; scripts/cross_domain.py reuses it)."
    )
    return experiment.teacher_stage(block, args)["path"]


@dataclass
class SweepTrainer:
    """What every trial shares: the trainer (its `model_init` cuts a fresh student), its log, the teacher used."""

    trainer: DistillationTrainer
    log: TrialLog
    teacher_path: str
    teacher_trained: bool
    source_domains: list[str]
    train_rows: int
    validation_rows: int
    num_labels: int


def sweep_trainer(
    sweep_args: SweepArguments,
    exp_args: ExperimentArguments,
    model_args: ModelArguments,
    data_args: DataArguments,
    student_args: StudentArguments,
    args: DistillationArguments,
    progress_file: str | None = None,
) -> SweepTrainer:
    """Load the source domains (train and validation only) and the teacher (or fine-tune it, see
    [`train_experiment_teacher`]), attach the teacher's cached logits once, and build the [`DistillationTrainer`]
    whose `model_init` cuts a fresh student from the teacher for every trial. `progress_file` gets the finished trials
    after each one."""
    state = PartialState()
    with state.main_process_first():
        domains = load_data(data_args)  # the source domains only: no target domain is read for the selection
    labels = domain_label_names(domains)
    sources = list(domains)
    teacher_path = args.teacher_model_name_or_path
    if not teacher_path:
        teacher_path = train_experiment_teacher(exp_args, model_args, data_args, student_args, args, domains)
    teacher = load_teacher(teacher_path, labels)
    teacher_tokenizer = load_tokenizer(teacher_path)
    if exp_args.seeds and len(exp_args.seeds) > 1:
        logger.info(f"seeds={exp_args.seeds}: the sweep trains every trial with seed {args.seed} only.")
    trial_args = dataclasses.replace(
        args,
        teacher_model_name_or_path=teacher_path,
        output_dir=os.path.join(args.output_dir, SCRATCH_DIR),
        eval_strategy="epoch",  # the objective is the last evaluation: that of the trained student
        save_strategy="no",  # no checkpoints: a trial is cheap to redo, and the winner is retrained by the user
        load_best_model_at_end=False,
        push_to_hub=False,
        hub_token=None,
        resume_from_checkpoint=None,
    )
    texts = [text for name in sources for text in domains[name]["train"]["text"]]
    made = dict(texts=texts, max_length=data_args.max_length)  # what a narrower or trimmed student is made from
    student, tokenizer = build_student(teacher, teacher_tokenizer, student_args, trial_args, labels, **made)

    def model_init():
        return build_student(teacher, teacher_tokenizer, student_args, trial_args, labels, **made)[0]

    cache, options = trial_args.uses_logit_cache, data_args.long_text_options
    # train and validation only: the test split takes no part in the selection
    kept = {name: DatasetDict(train=d["train"], validation=d["validation"]) for name, d in domains.items()}
    with state.main_process_first():
        tokenized = tokenize_domains(
            kept, tokenizer, max_length=data_args.max_length, keep_text=cache, long_text_options=options
        )
    train = concatenate_domains(tokenized, sources, "train")
    validation = concatenate_domains(tokenized, sources, "validation")
    if cache:  # computed once (or found in the cache); every trial reads them, as scripts/distill.py would
        train, validation = attach_teacher_logits(
            [train, validation], trial_args, labels, data_args.max_length, teacher, teacher_tokenizer, options
        )
    num_labels = student.config.num_labels
    log = TrialLog(sweep_args.objective, progress_file=progress_file)
    trainer = DistillationTrainer(
        model_init=model_init,  # a fresh student for every trial
        teacher_model=None if cache else teacher,  # with the cache the teacher only serves model_init
        args=trial_args,
        train_dataset=train,
        eval_dataset=validation,
        processing_class=tokenizer,
        teacher_processing_class=teacher_tokenizer,
        compute_metrics=log.compute_metrics(make_compute_metrics(num_labels)),
    )
    if args.grad_health:
        log.health = add_gradient_health(trainer)
    trainer.add_callback(log)
    return SweepTrainer(
        trainer,
        log,
        teacher_path,
        teacher_trained=not args.teacher_model_name_or_path,
        source_domains=sources,
        train_rows=len(train),
        validation_rows=len(validation),
        num_labels=num_labels,
    )


def search(setup: SweepTrainer, sweep_args: SweepArguments, args: DistillationArguments):
    """Run the trials (`Trainer.hyperparameter_search`, optuna); the first is the config's own recipe when
    `try_config_recipe` and it lies in the space. Returns the optuna study."""
    optuna = require_optuna()
    space, objective, log = sweep_args.search_space, sweep_args.objective, setup.log
    config_recipe = {name: getattr(args, name) for name in space}
    first_is_config = sweep_args.try_config_recipe and all(space[n].contains(v) for n, v in config_recipe.items())
    if sweep_args.try_config_recipe and not first_is_config:
        outside = [f"{n}={v!r}" for n, v in config_recipe.items() if not space[n].contains(v)]
        logger.warning(
            f"The config's recipe is not tried first: {', '.join(outside)} lie outside the space. Widen the space to "
            "compare with it, or set try_config_recipe: false to silence this."
        )

    def hp_space(trial) -> dict[str, Any]:
        params = {name: dim.suggest(trial) for name, dim in space.items()}
        log.begin(trial.number, params, from_config=first_is_config and trial.number == 0)
        logger.info(f"Trial {trial.number} ({trial.number + 1} of {sweep_args.n_trials}): {_format_params(params)}")
        return params

    def compute_objective(metrics: dict[str, float]) -> float:
        if objective not in metrics:
            known = sorted(k for k in metrics if k.startswith("eval_"))
            raise ValueError(f"objective={objective!r} is not among the evaluation metrics {known}; use one of them.")
        return float(metrics[objective])

    # The study is made here, on a storage passed on, to queue the config's recipe first and read every trial after.
    direction = sweep_args.resolved_direction
    storage = optuna.storages.InMemoryStorage()
    sampler = optuna.samplers.TPESampler(seed=sweep_args.sweep_seed, n_startup_trials=_startup_trials(sweep_args))
    pruner = optuna.pruners.NopPruner()  # a trial is judged when trained: early epochs are unfair to long schedules
    study = optuna.create_study(
        study_name=STUDY_NAME, storage=storage, direction=direction, sampler=sampler, pruner=pruner
    )
    if first_is_config:
        study.enqueue_trial(config_recipe)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the trials are logged here, with the values trained
    try:
        setup.trainer.hyperparameter_search(
            hp_space=hp_space,
            compute_objective=compute_objective,
            n_trials=sweep_args.n_trials,
            direction=direction,
            backend="optuna",
            study_name=STUDY_NAME,
            storage=storage,
            load_if_exists=True,
            sampler=sampler,
            pruner=pruner,
            timeout=sweep_args.sweep_timeout,
        )
    finally:
        optuna.logging.set_verbosity(verbosity)
    return study


def run_sweep(
    sweep_args: SweepArguments,
    exp_args: ExperimentArguments,
    model_args: ModelArguments,
    data_args: DataArguments,
    student_args: StudentArguments,
    args: DistillationArguments,
    base_config: dict[str, Any] | None = None,
    config_path: str | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Search the student's recipe and write the best one as a config (see the module docstring).

    Args:
        base_config (`dict`, *optional*): the flat config the best recipe is merged into (the script passes the
            `--config` YAML plus the flags given on its command line). Default: the settings of the arguments that
            differ from their defaults.
        config_path (`str`, *optional*): the config the sweep started from, for the header of the written one.
        command (`str`, *optional*): the command line, for the same header.

    Returns:
        `dict`: what `sweep_trials.json` holds: `best_trial`, `best_value`, `best_params`, `config_trial` /
        `config_value` (the config's own recipe, when it was tried), `comparison` (best minus config's, with its
        interval over the validation rows), `trials` (each with `params`, `objective`, `optimizer_steps`, ...),
        `output_config`, `trials_file`.
    """
    optuna = require_optuna()
    check_sweep_inputs(sweep_args, exp_args, data_args, args)
    set_loading_policy(args.allow_pickle_weights)
    objective, direction = sweep_args.objective, sweep_args.resolved_direction
    output_config = sweep_args.output_config or os.path.join(args.output_dir, RECIPE_FILE)
    trials_file = os.path.join(os.path.dirname(os.path.abspath(output_config)), TRIALS_FILE)

    setup = sweep_trainer(sweep_args, exp_args, model_args, data_args, student_args, args, progress_file=trials_file)
    logger.info(f"Sweep on the validation split of {setup.source_domains}: {objective} ({direction})")
    started = time.perf_counter()
    study = search(setup, sweep_args, args)
    wall = time.perf_counter() - started

    log = setup.log
    trials = []
    for trial in study.trials:
        if trial.state == optuna.trial.TrialState.COMPLETE:
            trials.append(log.trials[trial.number] | {"objective": trial.value})
    best = next(t for t in trials if t["number"] == study.best_trial.number)
    config_trial = next((t for t in trials if t["recipe"] == "config"), None)
    summary = {
        "objective": objective,
        "finished": True,
        "direction": direction,
        "split": "validation",
        "source_domains": setup.source_domains,
        "train_rows": setup.train_rows,
        "validation_rows": setup.validation_rows,
        "space": {name: dim.describe() for name, dim in sweep_args.search_space.items()},
        "n_trials": len(trials),
        "sampler": f"optuna {optuna.__version__} TPE sampler, seed {sweep_args.sweep_seed}, "
        f"{_startup_trials(sweep_args)} random start-up trials",
        "teacher": setup.teacher_path,
        "teacher_trained_by_sweep": setup.teacher_trained,
        "seed": args.seed,
        "wall_seconds": round(wall, 1),
        "date": time.strftime("%Y-%m-%d"),
        "config": config_path,
        "command": command,
        "best_trial": best["number"],
        "best_value": best["objective"],
        "best_params": best["params"],
        "config_trial": None if config_trial is None else config_trial["number"],
        "config_value": None if config_trial is None else config_trial["objective"],
        "comparison": _compare(best, config_trial, log.predictions, objective, setup.num_labels),
        "trials": trials,
        "output_config": output_config,
        "trials_file": trials_file,
    }
    if PartialState().is_main_process:
        base = (
            base_config
            if base_config is not None
            else non_default_settings(exp_args, model_args, data_args, student_args, args)
        )
        body = recipe_config(base, best["params"], args, exp_args, teacher_pins=setup.teacher_trained)
        write_recipe(output_config, body, summary)
        write_json(trials_file, summary)
        logger.info(f"Best recipe (trial {best['number']}, {objective} {best['objective']:.4f}) -> {output_config}")
    return summary


def _startup_trials(sweep_args: SweepArguments) -> int:
    # TPE's default is 10 random trials before it models anything; a sweep of 8-12 trials would be random throughout
    return max(2, min(10, sweep_args.n_trials // 2))


def _format_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_number(v) if isinstance(v, (int, float)) else v}" for k, v in params.items())


def _compare(best, config_trial, predictions, objective: str, num_labels: int) -> dict[str, Any] | None:
    """The best trial's objective minus the config recipe's on the same validation rows, with a paired bootstrap
    interval over those rows (macro-F1 or accuracy only). It does not count the selection among the trials: the best
    trial's validation score is optimistic, which only a held-out split (the test split) can show."""
    metric = objective.removeprefix("eval_")
    if config_trial is None or metric not in ("macro_f1", "accuracy"):
        return None
    if best["number"] not in predictions or config_trial["number"] not in predictions:
        return None
    references, best_ids = predictions[best["number"]]
    _, config_ids = predictions[config_trial["number"]]
    keep = references != -100
    plan = Bootstrap({"validation": int(keep.sum())}, n_seeds=1)
    figures = [
        plan.figure("validation", references[keep], ids[keep][None], metric, num_labels)
        for ids in (best_ids, config_ids)
    ]
    names = (f"trial {best['number']}", f"trial {config_trial['number']} (config)", objective)
    return paired_difference(*figures, names=names).as_dict()


# ---- the written config ------------------------------------------------------------------------------------------


# TrainingArguments fields that a recipe config says (the others, and those TrainingArguments derives, are left out).
RECIPE_TRAINING_FIELDS = (
    "output_dir", "num_train_epochs", "max_steps", "learning_rate", "warmup_steps", "max_grad_norm", "weight_decay",
    "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps", "seed",
    "lr_scheduler_type", "logging_steps", "eval_strategy", "save_strategy", "save_total_limit", "bf16", "fp16",
)  # fmt: skip


def non_default_settings(*dataclass_objs: Any) -> dict[str, Any]:
    """The settings of argument dataclasses that differ from their field defaults (what a config would have to say);
    of `TrainingArguments` only the recipe's fields (`RECIPE_TRAINING_FIELDS`)."""
    training = {f.name for f in dataclasses.fields(TrainingArguments)} - set(RECIPE_TRAINING_FIELDS)
    flat: dict[str, Any] = {}
    for obj in dataclass_objs:
        values = config_to_dict(obj)
        for f in dataclasses.fields(obj):
            value = values.get(f.name)
            if value is None or (isinstance(obj, TrainingArguments) and f.name in training):
                continue
            default = f.default
            if f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            if value != getattr(default, "value", default):
                flat[f.name] = value
    return flat


def recipe_config(
    base: dict[str, Any],
    params: dict[str, Any],
    args: DistillationArguments,
    exp_args: ExperimentArguments,
    teacher_pins: bool,
) -> dict[str, Any]:
    """`base` with the found `params` in place (new keys at the end). When the sweep trained the experiment's
    teacher, that teacher's epochs and learning rate (`teacher_<name>`, where the experiment has such an option) are
    kept at the values it was trained with, so that `scripts/cross_domain.py` trains the same teacher."""
    body = {k: v for k, v in base.items() if k not in SWEEP_FIELDS}
    for name, value in params.items():
        body[name] = _plain(value)
    if teacher_pins:
        options = {f.name for f in dataclasses.fields(ExperimentArguments)}
        for name in params:
            pin = f"teacher_{name}"
            if pin in options and getattr(exp_args, pin) is None and pin not in body:
                body[pin] = _plain(getattr(args, name))
    return body


def _plain(value: Any) -> Any:
    """`4.0` as `4` in the YAML (the flag's type reads it back as a float)."""
    return int(value) if isinstance(value, float) and value.is_integer() and abs(value) < 1e6 else value


def write_recipe(path: str, body: dict[str, Any], summary: dict[str, Any]) -> str:
    """Write the config: a comment saying what was searched and found, then the flat YAML `body`."""
    objective, best = summary["objective"], summary["best_value"]
    lines = [
        f"Recipe found by scripts/sweep.py on {summary['date']}: the best of {summary['n_trials']} trials "
        f"({summary['sampler']}).",
        f"Objective: {objective} on the validation split of {summary['source_domains']} "
        f"({summary['validation_rows']} rows; no target domain, no test split), {summary['direction']}d.",
        f"Best: {best:.4f} (trial {summary['best_trial']}: {_format_params(summary['best_params'])}).",
    ]
    if summary["config_trial"] is not None:
        lines.append(f"The config's own recipe (trial {summary['config_trial']}): {summary['config_value']:.4f}.")
    comparison = summary.get("comparison")
    if comparison:
        lines.append(
            f"Best minus config: {comparison['diff']:+.4f}, 95% interval [{comparison['ci_low']:+.4f}, "
            f"{comparison['ci_high']:+.4f}] over the validation rows ({comparison['verdict']}; the selection among "
            "trials is not counted, so this is optimistic: judge on the test split)."
        )
    lines.append("Searched: " + "; ".join(f"{k} {v}" for k, v in summary["space"].items()) + ".")
    if summary.get("teacher_trained_by_sweep"):
        lines.append(f"Teacher: {summary['teacher']} (fine-tuned by the sweep, reused by scripts/cross_domain.py).")
        shared = [n for n in summary["best_params"] if n in ("warmup_steps", "max_grad_norm", "weight_decay")]
        if shared:
            lines.append(
                f"{', '.join(shared)} also reach the experiment's teacher (it has no teacher_* option for them), so "
                "scripts/cross_domain.py may fine-tune a new teacher with them."
            )
    if summary.get("config"):
        lines.append(f"Input config: {summary['config']}.")
    if summary.get("command"):
        lines.append(f"Command: {summary['command']}")
    lines.append(f"Every trial: {TRIALS_FILE} beside this file.")
    header = "".join(f"# {line}\n" for line in _wrap(lines))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    text = header + yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=119)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _wrap(lines: list[str], width: int = 117) -> list[str]:
    wrapped = []
    for line in lines:
        wrapped += textwrap.wrap(line, width=width, subsequent_indent="  ", break_long_words=False) or [""]
    return wrapped


def given_settings(argv: Sequence[str], parsed: Sequence[Any], config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The flat config a run was given: the `--config` YAML (`config`), then every flag named on the command line
    `argv` with its parsed value (from the dataclasses `parsed`); the sweep's own options left out."""
    values = config_to_dict(*(obj for obj in parsed if not isinstance(obj, SweepArguments)))
    given = {k: v for k, v in (config or {}).items() if k not in SWEEP_FIELDS}
    for arg in argv:
        if not arg.startswith("--"):
            continue
        name = arg[2:].split("=", 1)[0].replace("-", "_")
        if name.startswith("no_") and name[3:] in values:  # HfArgumentParser's --no_<flag> for true booleans
            name = name[3:]
        if name in values and name not in SWEEP_FIELDS:
            given[name] = values[name]
    return given
