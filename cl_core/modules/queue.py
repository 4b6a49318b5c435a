"""A FIFO queue of embeddings held in registered buffers, so checkpoints carry it.

lightly keeps its MoCo queue outside ``state_dict`` and loses it on resume; this one is part
of the module state, pointer included.
"""

import torch
from torch import nn
from torch.nn import functional as F


class FeatureQueue(nn.Module):
    """Ring buffer of ``size`` vectors of dimension ``dim``.

    Args:
        size: number of stored vectors (K).
        dim: vector dimension.
        init: "random" fills with L2-normalised Gaussian vectors (MoCo's initialisation);
            "zeros" fills with zeros and counts how many slots are valid (SwAV's queue).
    """

    def __init__(self, size: int, dim: int, init: str = "random") -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"queue size must be >= 1, got {size}")
        if init not in ("random", "zeros"):
            raise ValueError(f"init must be 'random' or 'zeros', got {init!r}")
        values = F.normalize(torch.randn(size, dim), dim=1) if init == "random" else torch.zeros(size, dim)
        self.register_buffer("values", values)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.tensor(size if init == "random" else 0, dtype=torch.long))

    @property
    def size(self) -> int:
        return self.values.shape[0]

    @torch.no_grad()
    def push(self, x: torch.Tensor) -> None:
        """Write ``x`` (n, dim) at the pointer, wrapping around; the oldest entries go first."""
        x = x.detach().to(self.values.dtype)[-self.size :]  # only the newest K fit
        idx = (self.ptr + torch.arange(x.shape[0], device=x.device)) % self.size
        self.values[idx] = x
        self.ptr.copy_((self.ptr + x.shape[0]) % self.size)
        self.filled.copy_(torch.clamp(self.filled + x.shape[0], max=self.size))

    def valid(self) -> torch.Tensor:
        """The filled part of the queue, (filled, dim), oldest-first order not guaranteed."""
        return self.values[: int(self.filled)] if int(self.filled) < self.size else self.values
