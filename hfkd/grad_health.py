"""Gradient health: per-layer-group gradient norms, how often clipping acts, warnings for vanishing and exploding
gradients, and a `grad_health.png` of the run.

The groups are the embeddings, each encoder layer, the head (pooler / classifier) and any distillation projections.
[`GradientHealth`] does the bookkeeping for any training loop; [`GradientHealthCallback`] plugs it into a
`transformers.Trainer` and the Accelerate loop of `hfkd.pipelines.finetune` calls it directly. Norms are computed only
at logging steps (one host sync there); the clipping count is kept on the device every step.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict

import torch
from torch import nn
from transformers import TrainerCallback
from transformers.utils import logging

logger = logging.get_logger(__name__)

PLOT_FILE = "grad_health.png"
_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|h|block)\.(\d+)\.")


def group_of(name: str) -> str:
    """`'bert.encoder.layer.3.attention...'` -> `'layer_3'`; embeddings, projections and the rest (the head)."""
    if "hfkd_projection" in name:
        return "projection"
    match = _LAYER.search(name)
    if match:
        return f"layer_{int(match.group(1))}"
    return "embeddings" if "embeddings" in name else "head"


def parameter_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    groups: dict[str, list[nn.Parameter]] = defaultdict(list)
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups[group_of(name)].append(param)

    def order(group: str) -> tuple[int, int]:
        if group.startswith("layer_"):
            return 1, int(group[6:])
        return {"embeddings": 0, "head": 2}.get(group, 3), 0

    return dict(sorted(groups.items(), key=lambda kv: order(kv[0])))


class GradientHealth:
    """Bookkeeping of one run's gradient health.

    Args:
        model: the model being trained (unwrapped).
        max_grad_norm: the clipping threshold (0 or less: no clipping).
        vanishing_threshold: a group whose norm stays below this for `patience` logging steps is reported.
    """

    def __init__(self, model: nn.Module, max_grad_norm: float, vanishing_threshold: float = 1e-8, patience: int = 3):
        self.groups = parameter_groups(model)
        self.max_grad_norm, self.threshold, self.patience = max_grad_norm, vanishing_threshold, patience
        self.history: list[dict[str, float]] = []
        self._low: dict[str, int] = defaultdict(int)
        self._clipped: torch.Tensor | None = None
        self._steps = 0
        self._reported: set[tuple[str, str]] = set()

    def group_norms(self) -> dict[str, float]:
        """The 2-norm of each group's gradients now (one host sync)."""
        norms = []
        for params in self.groups.values():
            grads = [p.grad.detach() for p in params if p.grad is not None]
            norms.append(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else None)
        device = next((n.device for n in norms if n is not None), "cpu")
        values = torch.stack([n.float() if n is not None else torch.zeros((), device=device) for n in norms])
        return dict(zip(self.groups, values.tolist(), strict=True))

    def count_step(self, total_norm: torch.Tensor | float, after_clipping: bool = False) -> None:
        """Every optimizer step: whether clipping acted, kept on the device. Given the global norm before clipping,
        it acted when that exceeds `max_grad_norm`; given the norm after clipping, when that reached it."""
        self._steps += 1
        if self.max_grad_norm and self.max_grad_norm > 0:
            norm = torch.as_tensor(total_norm).detach().float()
            acted = norm >= self.max_grad_norm * (1 - 1e-3) if after_clipping else norm > self.max_grad_norm
            self._clipped = acted.to(torch.float32) if self._clipped is None else self._clipped + acted

    def clip_fraction(self) -> float:
        return float(self._clipped) / self._steps if self._clipped is not None and self._steps else 0.0

    def record(self, step: int, norms: dict[str, float], global_norm: float | None) -> dict[str, float]:
        """Store one logging step and warn about vanishing or exploding groups; returns the entries to log."""
        entry = {"step": step, **({"global": global_norm} if global_norm is not None else {}), **norms}
        self.history.append(entry)
        for group, value in norms.items():
            if not torch.isfinite(torch.tensor(value)):
                self._warn(group, "exploding", f"the gradient norm of {group} is {value} at step {step} (exploding)")
                continue
            self._low[group] = self._low[group] + 1 if value < self.threshold else 0
            if self._low[group] == self.patience:
                self._warn(
                    group,
                    "vanishing",
                    f"the gradient norm of {group} has stayed below {self.threshold:g} for {self.patience} logging "
                    f"steps (step {step}): vanishing gradients; check the learning rate, frozen layers or the loss",
                )
        logs = {f"grad_norm/{group}": value for group, value in norms.items()}
        logs["grad_clip_fraction"] = self.clip_fraction()
        return logs

    def _warn(self, group: str, kind: str, text: str) -> None:
        if (group, kind) not in self._reported:  # once per group and kind, not every logging step
            self._reported.add((group, kind))
            logger.warning(f"Gradient health: {text}.")

    def plot(self, path: str) -> str | None:
        """Each group's norm (and the global one) against the step, log scale; None when nothing was recorded."""
        if not self.history:
            return None
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(8, 4.5), dpi=120, layout="constrained")
        FigureCanvasAgg(figure)
        ax = figure.subplots()
        steps = [h["step"] for h in self.history]
        names = [k for k in self.history[0] if k != "step"]
        for name in names:
            values = [max(h.get(name, float("nan")), 1e-12) for h in self.history]
            style = dict(color="black", linewidth=2) if name == "global" else dict(linewidth=1)
            ax.plot(steps, values, label=name, **style)
        if self.max_grad_norm and self.max_grad_norm > 0:
            ax.axhline(self.max_grad_norm, linestyle="--", color="grey", linewidth=1, label="clip threshold")
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("gradient norm (before clipping)")
        ax.set_title(f"Gradient health: clipping acted on {100 * self.clip_fraction():.0f}% of {self._steps} steps")
        ax.legend(fontsize=7, ncols=2, loc="best")
        figure.savefig(path)
        return path


class GradientHealthCallback(TrainerCallback):
    """Gradient health for a `transformers.Trainer`: per-group norms at each logging step (before clipping), the
    clipping fraction, warnings, `grad_norm/<group>` entries in the logs (TensorBoard included: add it with
    [`add_gradient_health`] so that it runs before the reporting callbacks) and `grad_health.png` at the end.

    The Trainer clips before callbacks see the gradients, so the callback takes the norms after clipping and scales
    them back with the pre-clip global norm the Trainer logs (clipping scales every gradient by the same factor)."""

    def __init__(self, vanishing_threshold: float = 1e-8, patience: int = 3, grad_norm_of=None):
        self.threshold, self.patience = vanishing_threshold, patience
        # () -> the pre-clip global norm of this step, when the trainer keeps it (DistillationTrainer does): then
        # counting clipped steps costs nothing; otherwise each step takes one extra norm of the gradients
        self.grad_norm_of = grad_norm_of
        self.seconds = 0.0  # time spent in this callback (its own overhead, for the benchmark)
        self.health: GradientHealth | None = None
        self._pending: tuple[dict[str, float], float] | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.health = GradientHealth(model, args.max_grad_norm, self.threshold, self.patience)

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        start = time.perf_counter()
        try:
            self._observe(args, state)
        finally:
            self.seconds += time.perf_counter() - start

    def _observe(self, args, state) -> None:
        health, every = self.health, max(int(args.logging_steps), 1)
        logging_step = args.logging_strategy == "steps" and (state.global_step + 1) % every == 0
        if logging_step:  # group norms (one host sync), kept until on_log brings the pre-clip global norm
            norms = health.group_norms()
            post = sum(v * v for v in norms.values()) ** 0.5
            self._pending = (norms, post)
            health.count_step(post, after_clipping=True)
        elif args.max_grad_norm and args.max_grad_norm > 0:  # the clipping count
            known = self.grad_norm_of() if self.grad_norm_of is not None else None
            if known is not None:
                health.count_step(known)  # the pre-clip norm the trainer already has
                return
            grads = [p.grad.detach() for params in health.groups.values() for p in params if p.grad is not None]
            if grads:  # one norm, no host sync
                health.count_step(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))), True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._pending is None or logs is None or "grad_norm" not in logs:
            return
        start = time.perf_counter()
        norms, post = self._pending
        self._pending = None
        pre = float(logs["grad_norm"])
        scale = pre / post if post > 0 and torch.isfinite(torch.tensor(pre)) and pre > post else 1.0
        entries = self.health.record(state.global_step, {g: v * scale for g, v in norms.items()}, pre)
        logs.update(entries)  # for the reporting callbacks after this one (TensorBoard, ...)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(entries)  # the Trainer copied `logs` there before calling back
        self.seconds += time.perf_counter() - start

    def on_train_end(self, args, state, control, **kwargs):
        if self.health is not None and state.is_world_process_zero:
            import os

            self.health.plot(os.path.join(args.output_dir, PLOT_FILE))


def add_gradient_health(trainer, **kwargs) -> GradientHealthCallback:
    """Add a [`GradientHealthCallback`] before the Trainer's reporting callbacks, so that they log its entries."""
    if hasattr(trainer, "last_grad_norm"):
        kwargs.setdefault("grad_norm_of", lambda: trainer.last_grad_norm)
    callback = GradientHealthCallback(**kwargs)
    trainer.callback_handler.callbacks.insert(0, callback)
    return callback
