"""Supervised contrastive learning: Khosla et al., "Supervised Contrastive Learning",
arXiv 2004.11362."""

import torch
from torch import nn

from cl_core.losses import info_nce
from cl_core.losses.info_nce import SUPCON_VARIANTS
from cl_core.methods.base import Method, MethodOutput
from cl_core.methods.registry import register_method
from cl_core.modules import projection_mlp


@register_method("supcon")
class SupCon(Method):
    """SimCLR's architecture with labels as positive ids: L_out (paper eq. 2, the paper's choice)
    or L_in (eq. 3), the mean over positives outside or inside the log.

    Args:
        backbone: encoder with ``output_dim``.
        hidden_dim: projection hidden width (paper: 2048).
        projection_dim: projection output (paper section 3: 128).
        temperature: paper section 4 uses 0.1.
        gather: use positives/negatives from every rank.
        variant: "out" (eq. 2) or "in" (eq. 3).
    """

    needs_targets = True

    def __init__(
        self,
        backbone: nn.Module,
        hidden_dim: int = 2048,
        projection_dim: int = 128,
        temperature: float = 0.1,
        gather: bool = False,
        variant: str = "out",
    ) -> None:
        super().__init__(backbone)
        if variant not in SUPCON_VARIANTS:
            raise ValueError(f"variant must be one of {SUPCON_VARIANTS}, got {variant!r}")
        self.projector = projection_mlp(self.feature_dim, hidden_dim, projection_dim, num_layers=2)
        self.temperature = temperature
        self.gather = gather
        self.variant = variant

    def forward(self, views: list[torch.Tensor], targets: torch.Tensor | None = None) -> MethodOutput:
        self.check_views(views, 2)
        if targets is None:
            raise ValueError("supcon needs labels: pass targets (b,) to forward")
        b = views[0].shape[0]
        z = self.projector(self.backbone(torch.cat(views)))  # (n_views * b, projection_dim)
        ids = targets.to(z.device).repeat(len(views))  # every view of a sample keeps its label
        loss = info_nce(z, ids, self.temperature, self.gather, self.variant)
        return MethodOutput(loss, embeddings=z[:b].detach())
