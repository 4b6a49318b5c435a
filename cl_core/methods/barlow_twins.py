"""Barlow Twins: Zbontar et al., "Self-Supervised Learning via Redundancy Reduction",
arXiv 2103.03230."""

import torch
from torch import nn

from cl_core.losses import barlow_twins_loss
from cl_core.methods.base import Method, MethodOutput
from cl_core.methods.registry import register_method
from cl_core.modules import projection_mlp


@register_method("barlow_twins")
class BarlowTwins(Method):
    """Cross-correlation of two views' projections pushed to the identity.

    Args:
        backbone: encoder with ``output_dim``.
        projector_dim: width and output of the 3-layer projector (paper section 4: 8192).
        lambda_offdiag: off-diagonal weight (paper: 5e-3).
        gather: compute the cross-correlation over every rank's batch.
    """

    sync_batchnorm_by_default = True  # official main.py converts the model to SyncBN

    def __init__(
        self,
        backbone: nn.Module,
        projector_dim: int = 8192,
        lambda_offdiag: float = 5e-3,
        gather: bool = False,
    ) -> None:
        super().__init__(backbone)
        self.projector = projection_mlp(self.feature_dim, projector_dim, projector_dim, num_layers=3)
        self.lambda_offdiag = lambda_offdiag
        self.gather = gather

    def forward(self, views: list[torch.Tensor], targets: torch.Tensor | None = None) -> MethodOutput:
        self.check_views(views, 2)
        b = views[0].shape[0]
        z = self.projector(self.backbone(torch.cat(views[:2])))  # (2b, projector_dim)
        loss = barlow_twins_loss(z[:b], z[b:], lambda_offdiag=self.lambda_offdiag, gather=self.gather)
        return MethodOutput(loss, embeddings=z[:b].detach())
