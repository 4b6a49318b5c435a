"""DINO's projection head (arXiv 2104.14294, section 3.1 and official vision_transformer.py)."""

import torch
from torch import nn
from torch.nn import functional as F


class DINOHead(nn.Module):
    """3-layer MLP (GELU, hidden 2048) -> bottleneck (256) -> L2 norm -> weight-normalised
    linear layer to ``out_dim`` prototypes, with the weight norm fixed to 1
    (``norm_last_layer=True`` in the official code).

    Args:
        in_dim: backbone feature dimension.
        out_dim: K (paper: 65536).
        hidden_dim: MLP width (paper: 2048).
        bottleneck_dim: (paper: 256).
    """

    def __init__(
        self, in_dim: int, out_dim: int = 65536, hidden_dim: int = 2048, bottleneck_dim: int = 256
    ) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        # Direction v of the weight-normalised last layer; its norm g is fixed at 1.
        self.last_direction = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        nn.init.trunc_normal_(self.last_direction, std=0.02)

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """The L2-normalised bottleneck embedding: (b, in_dim) -> (b, bottleneck_dim)."""
        return F.normalize(self.mlp(x), dim=-1)

    def prototypes(self, h: torch.Tensor, freeze_last_layer: bool = False) -> torch.Tensor:
        """Scores of a bottleneck embedding against the prototypes: (b, bottleneck_dim) -> (b, out_dim)."""
        v = self.last_direction.detach() if freeze_last_layer else self.last_direction
        return F.linear(h, F.normalize(v, dim=1))

    def forward(self, x: torch.Tensor, freeze_last_layer: bool = False) -> torch.Tensor:
        # x: (b, in_dim) -> (b, out_dim)
        return self.prototypes(self.bottleneck(x), freeze_last_layer)
