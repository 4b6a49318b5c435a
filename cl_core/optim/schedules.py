"""Per-step schedules as data: float64 arrays, one value per step, like DINO's ``cosine_scheduler``
(github.com/facebookresearch/dino, ``utils.py``). Scalar forms take the progress in [0, 1]."""

import math

import numpy as np

LR_SCALING_RULES = ("linear", "sqrt", "none")


def _check_progress(progress: float) -> None:
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must lie in [0, 1], got {progress}")


def _check_steps(total_steps: int) -> None:
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")


def warmup_cosine(
    base: float,
    final: float,
    total_steps: int,
    warmup_steps: int = 0,
    warmup_start: float = 0.0,
) -> np.ndarray:
    """Linear warmup then cosine decay, one value per step.

    Step ``i < warmup_steps`` holds ``warmup_start + (base - warmup_start) * i / warmup_steps``;
    the other ``n`` steps ``final + (base - final) * (1 + cos(pi * j / (n - 1))) / 2``: exactly
    ``base`` first, exactly ``final`` last (DINO divides by ``n`` and never reaches ``final``);
    a single cosine step holds ``base``.

    Args:
        base: peak value.
        final: value at the last step.
        total_steps: schedule length.
        warmup_steps: linear warmup steps, ``0 <= warmup_steps <= total_steps``.
        warmup_start: value at step 0 when ``warmup_steps > 0``.

    Returns:
        (total_steps,) float64.
    """
    _check_steps(total_steps)
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must lie in [0, total_steps={total_steps}], got {warmup_steps}")
    ramp = np.arange(warmup_steps, dtype=np.float64) / max(warmup_steps, 1)  # (warmup_steps,) in [0, 1)
    warmup = warmup_start + (base - warmup_start) * ramp
    n = total_steps - warmup_steps
    phase = np.arange(n, dtype=np.float64) / max(n - 1, 1)  # (n,) in [0, 1]
    cosine = final + (base - final) * 0.5 * (1.0 + np.cos(np.pi * phase))
    if n >= 2:
        cosine[0], cosine[-1] = base, final  # exact endpoints despite rounding
    return np.concatenate([warmup, cosine])


def weight_decay_schedule(base: float, final: float | None, total_steps: int) -> np.ndarray | None:
    """Cosine from ``base`` to ``final`` over ``total_steps``, or None (constant) when ``final`` is.

    DINO (arXiv 2104.14294, appendix; official ``main_dino.py``: ``wd_schedule =
    cosine_scheduler(weight_decay, weight_decay_end, epochs, niter_per_ep)``, 0.04 to 0.4), one
    value per step. The training loop writes it into the param groups that have weight decay.

    Returns:
        (total_steps,) float64, or None.
    """
    if final is None:
        return None
    return warmup_cosine(base, final, total_steps)


def ema_momentum(base: float, progress: float, final: float = 1.0) -> float:
    """BYOL target momentum (arXiv 2006.07733, section 3.2).

    ``tau = final - (final - base) * (cos(pi * progress) + 1) / 2``: ``base`` at 0, ``final`` at 1.

    Args:
        base: tau_base (BYOL: 0.996).
        progress: fraction of training done, ``k / K``, in [0, 1].
        final: value at the end (BYOL: 1).
    """
    _check_progress(progress)
    return final - (final - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


def ema_momentum_schedule(base: float, total_steps: int, final: float = 1.0) -> np.ndarray:
    """:func:`ema_momentum` at progress ``i / total_steps`` for ``i`` in ``[0, total_steps)``.

    Entry ``i`` is the momentum at the start of step ``i``; ``final`` (progress 1) follows the end.

    Returns:
        (total_steps,) float64.
    """
    _check_steps(total_steps)
    values = [ema_momentum(base, i / total_steps, final) for i in range(total_steps)]
    return np.array(values, dtype=np.float64)


def teacher_temperature(
    progress: float,
    warmup_temperature: float = 0.04,
    temperature: float = 0.04,
    warmup_fraction: float = 0.0,
) -> float:
    """DINO teacher temperature (arXiv 2104.14294, section 4.2; official ``DINOLoss``).

    Linear from ``warmup_temperature`` to ``temperature`` over the first ``warmup_fraction`` of
    training, then constant. DINO warms up per epoch (``np.linspace`` over
    ``warmup_teacher_temp_epochs``); this is the continuous form.

    Args:
        progress: fraction of training done, in [0, 1].
        warmup_temperature: value at progress 0 (official default 0.04).
        temperature: value after the warmup (official default 0.04).
        warmup_fraction: fraction of training spent warming up, in [0, 1].
    """
    _check_progress(progress)
    if not 0.0 <= warmup_fraction <= 1.0:
        raise ValueError(f"warmup_fraction must lie in [0, 1], got {warmup_fraction}")
    if temperature <= 0.0 or warmup_temperature <= 0.0:
        raise ValueError(f"temperatures must be > 0, got {warmup_temperature}, {temperature}")
    if progress >= warmup_fraction:
        return temperature
    return warmup_temperature + (temperature - warmup_temperature) * progress / warmup_fraction


def teacher_temperature_schedule(
    total_steps: int,
    warmup_temperature: float = 0.04,
    temperature: float = 0.04,
    warmup_fraction: float = 0.0,
) -> np.ndarray:
    """:func:`teacher_temperature` at progress ``i / total_steps``; (total_steps,) float64."""
    _check_steps(total_steps)
    args = (warmup_temperature, temperature, warmup_fraction)
    values = [teacher_temperature(i / total_steps, *args) for i in range(total_steps)]
    return np.array(values, dtype=np.float64)


def scale_lr(
    base_lr: float, global_batch_size: int, reference_batch: int = 256, rule: str = "linear"
) -> float:
    """Learning rate for a global batch size.

    Args:
        base_lr: "linear": the LR at ``reference_batch`` (SimCLR / BYOL: ``lr = base * B / 256``);
            "sqrt": the coefficient of SimCLR appendix B.1 (``lr = 0.075 * sqrt(B)``, suggested
            for small batches / long training; ``reference_batch`` is unused);
            "none": the LR itself.
        global_batch_size: B, summed over all workers.
        reference_batch: batch size at which ``base_lr`` applies under "linear".
        rule: "linear", "sqrt" or "none".
    """
    if rule not in LR_SCALING_RULES:
        raise ValueError(f"unknown rule {rule!r}; allowed values: {', '.join(LR_SCALING_RULES)}")
    if global_batch_size < 1 or reference_batch < 1:
        raise ValueError(f"batch sizes must be >= 1, got {global_batch_size}, {reference_batch}")
    if rule == "linear":
        return base_lr * global_batch_size / reference_batch
    if rule == "sqrt":
        return base_lr * math.sqrt(global_batch_size)
    return base_lr
