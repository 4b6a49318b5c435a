"""MoCo v3: Chen, Xie, He, "An Empirical Study of Training Self-Supervised Vision
Transformers", arXiv 2104.02057."""

import torch
from torch import nn

from cl_core.losses import moco_v3_loss
from cl_core.methods.base import Method, MethodOutput
from cl_core.methods.registry import register_method
from cl_core.modules import ema_update, frozen_copy, projection_mlp
from cl_core.optim.schedules import ema_momentum


@register_method("moco_v3")
class MoCoV3(Method):
    """Symmetric MoCo without a queue: the predictor's query of one view against the momentum
    encoder's keys of the other view, negatives from the same batch (paper Algorithm 1).

    Heads follow the official ``MoCo_ResNet`` (moco-v3 builder.py): projector 3 layers,
    predictor 2 layers, hidden 4096, output 256, BN after every Linear, the last one without
    affine. Each view goes through the encoder on its own, as in the official ``forward`` (BN
    statistics per view). The momentum rises from ``base_momentum`` to 1 on a cosine
    (official ``--moco-m-cos``); it is applied after each optimiser step instead of before the
    keys are computed (the same sequence of updates, one step apart).

    Args:
        backbone: encoder with ``output_dim``.
        hidden_dim: MLP hidden width (4096).
        projection_dim: output dimension (256).
        temperature: tau (paper: 1.0 for ResNet-50, 0.2 for ViT).
        base_momentum: momentum at the start (ResNet-50: 0.99).
        gather: keys of every rank are negatives.
    """

    sync_batchnorm_by_default = True  # official main_moco.py converts the model to SyncBN

    def __init__(
        self,
        backbone: nn.Module,
        hidden_dim: int = 4096,
        projection_dim: int = 256,
        temperature: float = 1.0,
        base_momentum: float = 0.99,
        gather: bool = False,
    ) -> None:
        super().__init__(backbone)
        self.projector = projection_mlp(
            self.feature_dim,
            hidden_dim,
            projection_dim,
            3,
            last_norm=nn.BatchNorm1d(projection_dim, affine=False),
        )
        self.predictor = projection_mlp(
            projection_dim,
            hidden_dim,
            projection_dim,
            2,
            last_norm=nn.BatchNorm1d(projection_dim, affine=False),
        )
        self.key_backbone = frozen_copy(self.backbone)
        self.key_projector = frozen_copy(self.projector)
        self.temperature = temperature
        self.base_momentum = base_momentum
        self.gather = gather

    def forward(self, views: list[torch.Tensor], targets: torch.Tensor | None = None) -> MethodOutput:
        self.check_views(views, 2)
        z1, z2 = (self.projector(self.backbone(v)) for v in views[:2])  # (b, projection_dim) each
        q1, q2 = self.predictor(z1), self.predictor(z2)  # (b, projection_dim) each
        with torch.no_grad():
            k1, k2 = (self.key_projector(self.key_backbone(v)) for v in views[:2])  # (b, d) each
        t, gather = self.temperature, self.gather
        loss = moco_v3_loss(q1, k2, t, gather) + moco_v3_loss(q2, k1, t, gather)
        return MethodOutput(loss, embeddings=z1.detach())

    def after_optimizer_step(self, progress: float) -> None:
        super().after_optimizer_step(progress)
        # Official: m = 1 - 0.5 * (1 + cos(pi * epoch / epochs)) * (1 - moco_m), per step here.
        momentum = ema_momentum(self.base_momentum, progress)
        ema_update(self.key_backbone, self.backbone, momentum)
        ema_update(self.key_projector, self.projector, momentum)
