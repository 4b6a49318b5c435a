"""A per-instance memory bank held in registered buffers, so checkpoints carry it."""

import torch
from torch import nn
from torch.nn import functional as F


class MemoryBank(nn.Module):
    """One L2-normalised vector per training image (Wu et al., arXiv 1805.01978, section 3.2).

    Entries start as random unit vectors (as MoCo's queue; the official lemniscate code draws
    uniform vectors); :meth:`update` is PIRL's proximal update (Misra & van der Maaten, arXiv
    1912.01991, section 3.1) ``m_i <- normalise(m * m_i + (1 - m) * v_i)``, except that an
    entry's first update writes ``v_i`` itself (``seen``): mixing with the random start would pull
    the first epoch towards noise (measured: kNN fell below random init). Negatives are drawn
    uniformly from a generator keyed by the ``draws`` buffer, so a resumed run draws what the
    uninterrupted one would have, and an eval-mode forward is repeatable.

    Args:
        size: N, the number of training images.
        dim: vector dimension.
        momentum: m (InstDisc / PIRL: 0.5).
        seed: seeds the negative draws together with ``draws``.
    """

    values: torch.Tensor
    draws: torch.Tensor
    seen: torch.Tensor

    def __init__(self, size: int, dim: int, momentum: float = 0.5, seed: int = 0) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"memory bank size must be >= 1, got {size}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"memory bank momentum must lie in [0, 1), got {momentum}")
        self.register_buffer("values", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))
        self.register_buffer("seen", torch.zeros(size, dtype=torch.bool))
        self.momentum, self.seed = momentum, seed

    @property
    def size(self) -> int:
        return self.values.shape[0]

    def negative_indices(self, count: int, advance: bool = True) -> torch.Tensor:
        """``count`` uniform indices (with replacement), on the bank's device; the same for
        the same ``draws``, which ``advance`` increments."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.draws))
        index = torch.randint(self.size, (count,), generator=generator)  # (count,)
        if advance:
            self.draws.add_(1)
        return index.to(self.values.device)

    @torch.no_grad()
    def update(self, index: torch.Tensor, x: torch.Tensor) -> None:
        """Proximal update of the rows ``index`` (n,) with the vectors ``x`` (n, dim)."""
        x = x.detach().to(self.values.dtype)  # (n, dim)
        m = torch.where(self.seen[index], self.momentum, 0.0)[:, None]  # (n, 1): 0 on a first visit
        self.values[index] = F.normalize(m * self.values[index] + (1.0 - m) * x, dim=1)  # (n, dim)
        self.seen[index] = True
