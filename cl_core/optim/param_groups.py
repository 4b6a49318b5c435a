"""Parameter groups and the optimizer factory.

Biases and normalisation parameters (every parameter with ``ndim <= 1``) get no weight decay
and no LARS adaptation, as in SimCLR (arXiv 2002.05709, appendix B.1) and BYOL
(arXiv 2006.07733, appendix C.1).
"""

from typing import Any

import torch
from torch import nn

from cl_core.optim.lars import LARS

OPTIMIZERS = ("lars", "sgd", "adamw")


def split_decay_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split the trainable parameters of ``module`` into a decay and a no-decay group.

    Args:
        module: the model; parameters with ``requires_grad=False`` (e.g. EMA targets) are skipped.
        weight_decay: coefficient of the decay group.

    Returns:
        ``[decay_group, no_decay_group]``: the first holds parameters with ``ndim >= 2``
        (``weight_decay``, ``lars_exclude=False``), the second biases and norm parameters
        (``weight_decay=0.0``, ``lars_exclude=True``). Either list may be empty.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in module.parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay, "lars_exclude": False},
        {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True},
    ]


def build_optimizer(
    module: nn.Module,
    name: str,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """Build an optimizer over :func:`split_decay_groups` of ``module``.

    Args:
        module: the model.
        name: "lars", "sgd" or "adamw" (AdamW ignores ``momentum`` and keeps PyTorch's betas).
        lr: learning rate (the loop overwrites it per step from the schedule).
        weight_decay: coefficient of the decay group.
        momentum: LARS / SGD momentum.

    Returns:
        The optimizer; empty groups are dropped.

    Raises:
        ValueError: unknown ``name``, or ``module`` has no trainable parameters.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; allowed values: {', '.join(OPTIMIZERS)}")
    groups = [g for g in split_decay_groups(module, weight_decay) if g["params"]]
    if not groups:
        raise ValueError(f"{type(module).__name__} has no trainable parameters")
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
