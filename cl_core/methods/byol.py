"""BYOL: Grill et al., "Bootstrap Your Own Latent", arXiv 2006.07733."""

import torch
from torch import nn

from cl_core.losses import negative_cosine
from cl_core.methods.base import Method, MethodOutput
from cl_core.methods.registry import register_method
from cl_core.modules import ema_update, frozen_copy, projection_mlp
from cl_core.optim.schedules import ema_momentum


@register_method("byol")
class BYOL(Method):
    """Online network with a predictor regresses the EMA target's projection of the other view.

    Args:
        backbone: encoder with ``output_dim``.
        hidden_dim: projector/predictor hidden width (paper section 3.3: 4096).
        projection_dim: projection output (paper: 256).
        base_momentum: tau_base (paper: 0.996), raised to 1 with a cosine schedule.
    """

    sync_batchnorm_by_default = True  # official JAX code: BN with a cross_replica_axis

    def __init__(
        self,
        backbone: nn.Module,
        hidden_dim: int = 4096,
        projection_dim: int = 256,
        base_momentum: float = 0.996,
    ) -> None:
        super().__init__(backbone)
        self.projector = projection_mlp(self.feature_dim, hidden_dim, projection_dim, 2)
        self.predictor = projection_mlp(projection_dim, hidden_dim, projection_dim, 2)
        self.target_backbone = frozen_copy(self.backbone)
        self.target_projector = frozen_copy(self.projector)
        self.base_momentum = base_momentum

    def forward(self, views: list[torch.Tensor], targets: torch.Tensor | None = None) -> MethodOutput:
        self.check_views(views, 2)
        b = views[0].shape[0]
        x = torch.cat(views[:2])
        z = self.projector(self.backbone(x))  # (2b, projection_dim)
        p = self.predictor(z)  # (2b, projection_dim)
        with torch.no_grad():
            t = self.target_projector(self.target_backbone(x))  # (2b, projection_dim)
        p1, p2 = p[:b], p[b:]
        t1, t2 = t[:b], t[b:]
        # Paper eq. 2 symmetrised: ||p - t||^2 = 2 - 2 cos(p, t) per direction.
        loss = 4.0 + 2.0 * (negative_cosine(p1, t2) + negative_cosine(p2, t1))
        return MethodOutput(loss, embeddings=z[:b].detach())

    def after_optimizer_step(self, progress: float) -> None:
        super().after_optimizer_step(progress)
        # Paper section 3.2: tau = 1 - (1 - tau_base) * (cos(pi * k / K) + 1) / 2.
        momentum = ema_momentum(self.base_momentum, progress)
        ema_update(self.target_backbone, self.backbone, momentum)
        ema_update(self.target_projector, self.projector, momentum)
