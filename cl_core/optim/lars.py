"""LARS: You et al., "Large Batch Training of Convolutional Networks", arXiv 1708.03888.

The update follows the official Barlow Twins PyTorch ``LARS``
(github.com/facebookresearch/barlowtwins, ``main.py``), which is the same chain as BYOL's
optax ``lars`` (github.com/deepmind/deepmind-research, ``byol/utils/optimizers.py``):
weight decay is added to the gradient *before* the trust ratio, the trust ratio multiplies the
update, momentum accumulates the scaled update and the learning rate is applied last.
Departure: ``eps`` is added to the update norm in the trust ratio's denominator, as in NVIDIA
apex ``LARC`` (the references guard a zero norm only with ``where``); at the default 1e-8 it is
far below float32 resolution for any non-degenerate gradient.
"""

from collections.abc import Callable, Iterable
from typing import Any

import torch


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling with heavy-ball momentum.

    Per parameter ``p`` with gradient ``grad`` (shapes of ``p``):

        g = grad + weight_decay * p
        if not lars_exclude and ||p|| > 0 and ||g|| > 0:
            g = g * trust_coefficient * ||p|| / (||g|| + eps)
        v = momentum * v + g
        p = p - lr * v

    A param group with ``lars_exclude=True`` (biases and norm parameters, as in SimCLR / BYOL,
    see :func:`cl_core.optim.param_groups.split_decay_groups`) skips both the weight decay and
    the trust ratio: it is plain SGD with momentum.

    Args:
        params: parameters or param-group dicts (groups may set any default below).
        lr: learning rate.
        momentum: heavy-ball momentum (BYOL / SimCLR: 0.9).
        weight_decay: L2 coefficient added to the gradient.
        trust_coefficient: eta of the paper (BYOL / SimCLR: 0.001).
        eps: added to the update norm in the trust ratio.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        eps: float = 1e-8,
    ) -> None:
        for name, value in (
            ("lr", lr),
            ("momentum", momentum),
            ("weight_decay", weight_decay),
            ("trust_coefficient", trust_coefficient),
            ("eps", eps),
        ):
            if value < 0.0:
                raise ValueError(f"LARS {name} must be >= 0, got {value}")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            trust_coefficient=trust_coefficient,
            eps=eps,
            lars_exclude=False,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Apply one update; ``closure`` re-evaluates the loss (optional)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                self._update(p, group)
        return loss

    def _update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        g = p.grad
        if not group["lars_exclude"]:
            if group["weight_decay"] != 0.0:
                g = g.add(p, alpha=group["weight_decay"])
            p_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
            ratio = group["trust_coefficient"] * p_norm / (g_norm + group["eps"])
            # Trust ratio 1 where either norm is zero (paper's layers at init / dead gradients).
            ratio = torch.where((p_norm > 0) & (g_norm > 0), ratio, torch.ones_like(ratio))
            g = g * ratio
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buf = state["momentum_buffer"]
        buf.mul_(group["momentum"]).add_(g)
        p.add_(buf, alpha=-group["lr"])
