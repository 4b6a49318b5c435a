"""Optimisers, parameter groups and per-step schedules."""

from cl_core.optim.lars import LARS
from cl_core.optim.param_groups import OPTIMIZERS, build_optimizer, split_decay_groups
from cl_core.optim.schedules import (
    ema_momentum,
    ema_momentum_schedule,
    scale_lr,
    teacher_temperature,
    teacher_temperature_schedule,
    warmup_cosine,
    weight_decay_schedule,
)

__all__ = [
    "LARS",
    "OPTIMIZERS",
    "build_optimizer",
    "ema_momentum",
    "ema_momentum_schedule",
    "scale_lr",
    "split_decay_groups",
    "teacher_temperature",
    "teacher_temperature_schedule",
    "warmup_cosine",
    "weight_decay_schedule",
]
