"""SimSiam: Chen & He, "Exploring Simple Siamese Representation Learning", arXiv 2011.10566."""

import torch
from torch import nn

from cl_core.losses import negative_cosine
from cl_core.methods.base import Method, MethodOutput
from cl_core.methods.registry import register_method
from cl_core.modules import projection_mlp


@register_method("simsiam")
class SimSiam(Method):
    """BYOL without a target network: stop-gradient on the other branch's projection.

    Args:
        backbone: encoder with ``output_dim``.
        projection_dim: projector width and output (paper section 4: 2048, 3 layers, BN on
            every layer including the output, which has no affine as in the official code).
        predictor_hidden_dim: predictor bottleneck (paper: 512).
    """

    sync_batchnorm_by_default = True  # official main_simsiam.py converts the model to SyncBN

    def __init__(
        self, backbone: nn.Module, projection_dim: int = 2048, predictor_hidden_dim: int = 512
    ) -> None:
        super().__init__(backbone)
        self.projector = projection_mlp(
            self.feature_dim,
            projection_dim,
            projection_dim,
            num_layers=3,
            last_norm=nn.BatchNorm1d(projection_dim, affine=False),
        )
        self.predictor = projection_mlp(projection_dim, predictor_hidden_dim, projection_dim, 2)

    def forward(self, views: list[torch.Tensor], targets: torch.Tensor | None = None) -> MethodOutput:
        self.check_views(views, 2)
        b = views[0].shape[0]
        z = self.projector(self.backbone(torch.cat(views[:2])))  # (2b, projection_dim)
        p = self.predictor(z)  # (2b, projection_dim)
        # Paper eq. 3-4: L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2.
        loss = 0.5 * (negative_cosine(p[:b], z[b:]) + negative_cosine(p[b:], z[:b]))
        return MethodOutput(loss, embeddings=z[:b].detach())
