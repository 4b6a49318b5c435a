"""VICReg: Bardes et al., "Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", arXiv 2105.04906."""

import torch
from torch import nn

from cl_core.losses import vicreg_loss
from cl_core.methods.base import Method, MethodOutput
from cl_core.methods.registry import register_method
from cl_core.modules import projection_mlp


@register_method("vicreg")
class VICReg(Method):
    """Two views through an expander; invariance, variance and covariance terms.

    Args:
        backbone: encoder with ``output_dim``.
        expander_dim: width and output of the 3-layer expander (paper section 4.1: 8192).
        invariance_weight: lambda (paper: 25).
        variance_weight: mu (paper: 25).
        covariance_weight: nu (paper: 1).
        gather: compute the statistics over every rank's batch (official FullGatherLayer).
    """

    sync_batchnorm_by_default = True  # official main_vicreg.py converts the model to SyncBN

    def __init__(
        self,
        backbone: nn.Module,
        expander_dim: int = 8192,
        invariance_weight: float = 25.0,
        variance_weight: float = 25.0,
        covariance_weight: float = 1.0,
        gather: bool = False,
    ) -> None:
        super().__init__(backbone)
        self.projector = projection_mlp(self.feature_dim, expander_dim, expander_dim, num_layers=3)
        self.weights = (invariance_weight, variance_weight, covariance_weight)
        self.gather = gather

    def forward(self, views: list[torch.Tensor], targets: torch.Tensor | None = None) -> MethodOutput:
        self.check_views(views, 2)
        b = views[0].shape[0]
        z = self.projector(self.backbone(torch.cat(views[:2])))  # (2b, expander_dim)
        inv, var, cov = self.weights
        loss = vicreg_loss(z[:b], z[b:], inv, var, cov, gather=self.gather)
        return MethodOutput(loss, embeddings=z[:b].detach())
