"""The optimisation steps of one epoch, shared by the single-process trainer and the Ray Train
worker. Returns metrics; never logs."""

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cl_core.distributed import all_ranks
from cl_core.methods.base import Method, MethodOutput
from cl_core.monitors import effective_rank, embedding_std

#: A batch as the loop sees it: views ready for the network (float, on device) and labels.
Batch = tuple[list[torch.Tensor], torch.Tensor | None]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; carries the step and the last finite metrics."""

    def __init__(self, step: int, method: str, last_metrics: dict[str, float]) -> None:
        self.step = step
        self.method = method
        self.last_metrics = last_metrics
        super().__init__(
            f"non-finite loss at step {step} (method {method!r}); last finite metrics: {last_metrics}"
        )

    def __reduce__(self):  # pickles with its fields: Ray sends it from the worker to the driver
        return type(self), (self.step, self.method, self.last_metrics)


@dataclass
class StepSchedules:
    """Per-step values (schedules are data): ``lr[step]``, ``weight_decay[step]`` (None: each
    param group keeps its own; else written into the groups whose weight decay is > 0)."""

    lr: np.ndarray
    weight_decay: np.ndarray | None = None

    @property
    def total_steps(self) -> int:
        return len(self.lr)


def unwrap(model: nn.Module) -> Method:
    """The method inside a DDP (or similar) wrapper."""
    return getattr(model, "module", model)


def _set_hyperparameters(optimizer: torch.optim.Optimizer, schedules: StepSchedules, step: int) -> None:
    for group in optimizer.param_groups:
        group["lr"] = float(schedules.lr[step])
        if schedules.weight_decay is not None and group.get("weight_decay", 0.0) > 0.0:
            group["weight_decay"] = float(schedules.weight_decay[step])


def _timed(batches: Iterable[Any]) -> Iterator[tuple[Any, float]]:
    """Yield each batch with the seconds spent waiting for it."""
    it = iter(batches)
    while True:
        start = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            return
        yield batch, time.perf_counter() - start


def _optimizer_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    views: list[torch.Tensor],
    targets: torch.Tensor | None,
    autocast_dtype: torch.dtype | None,
    grad_clip: float | None,
) -> MethodOutput:
    """Forward under optional autocast, backward, clip, step. Raises on a non-finite loss
    before the backward, so a NaN never reaches the weights; under DDP every rank raises when
    any rank's loss is non-finite (one rank going on into the backward's all-reduce would hang)."""
    with torch.autocast(
        views[0].device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
    ):
        output: MethodOutput = model(views, targets)
    if not all_ranks(torch.isfinite(output.loss.detach())):
        raise FloatingPointError("non-finite loss")
    optimizer.zero_grad(set_to_none=True)
    output.loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return output


def train_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[Any],
    prepare: Callable[[Any], Batch],
    schedules: StepSchedules,
    start_step: int,
    autocast_dtype: torch.dtype | None = None,
    grad_clip: float | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, float]:
    """Run one pass over ``batches``: forward, backward, step, post-step hook.

    Args:
        model: a :class:`Method`, possibly wrapped in DDP.
        optimizer: its optimizer.
        batches: any iterable; ``prepare`` turns an item into (views, targets) on device.
        prepare: moves/normalises a raw batch; its time counts as compute, not data wait.
        schedules: per-step lr (and weight decay); training ends at ``schedules.total_steps``.
        start_step: global index of the first step of this pass.
        autocast_dtype: e.g. ``torch.bfloat16`` to run forward under autocast.
        grad_clip: max global grad norm, or None.
        on_step: called after each step with (step, step metrics), e.g. for progress output.

    Returns:
        Mean metrics of the pass: ``loss``, ``lr``, method metrics, ``images_per_s``,
        ``wait_fraction`` (time waiting for data / wall time), ``steps`` and ``last_step``
        (global index of the next step), plus collapse monitors of the last batch.

    Raises:
        NonFiniteLossError: the loss was NaN/inf; no update was applied for that step.
    """
    model.train()
    method = unwrap(model)
    step, sums, count, images, waited = start_step, {}, 0, 0, 0.0
    output: MethodOutput | None = None
    started = time.perf_counter()
    for raw, wait in _timed(batches):
        if step >= schedules.total_steps:
            break
        waited += wait
        views, targets = prepare(raw)
        _set_hyperparameters(optimizer, schedules, step)
        try:
            output = _optimizer_step(model, optimizer, views, targets, autocast_dtype, grad_clip)
        except FloatingPointError:
            last = {k: v / max(count, 1) for k, v in sums.items()}
            raise NonFiniteLossError(
                step, getattr(method, "method_name", type(method).__name__), last
            ) from None
        step += 1
        method.after_optimizer_step(step / schedules.total_steps)
        step_metrics = {
            "loss": float(output.loss.detach()),
            "lr": float(schedules.lr[step - 1]),
            **output.metrics,
        }
        if schedules.weight_decay is not None:
            step_metrics["weight_decay"] = float(schedules.weight_decay[step - 1])
        for key, value in step_metrics.items():
            sums[key] = sums.get(key, 0.0) + float(value)
        count, images = count + 1, images + views[0].shape[0]
        if on_step is not None:
            on_step(step, step_metrics)
    elapsed = max(time.perf_counter() - started, 1e-9)
    result = {k: v / max(count, 1) for k, v in sums.items()}
    result.update(
        steps=float(count),
        last_step=float(step),
        images_per_s=images / elapsed,
        wait_fraction=waited / elapsed,
    )
    if output is not None and output.embeddings is not None:
        result["embedding_std"] = embedding_std(output.embeddings)
        result["effective_rank"] = effective_rank(output.embeddings)
    return result
