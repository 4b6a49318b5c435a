"""MoCo v2: He et al., "Momentum Contrast for Unsupervised Visual Representation Learning",
arXiv 1911.05722, with Chen et al.'s v2 improvements (MLP head, blur, cosine LR),
arXiv 2003.04297."""

import torch
from torch import nn
from torch.nn import functional as F

from cl_core.distributed import gather_no_grad
from cl_core.losses import moco_loss
from cl_core.methods.base import Method, MethodOutput
from cl_core.methods.registry import register_method
from cl_core.modules import FeatureQueue, ema_update, frozen_copy, projection_mlp


@register_method("moco")
class MoCo(Method):
    """Query encoder, momentum key encoder and a queue of K keys (a checkpointed buffer).

    Departures: shuffle-BN is not implemented; use SyncBN (the trainer's ``sync_batchnorm``)
    under DDP to stop BN from leaking the batch statistic. The queue accepts any batch size
    (it wraps around) instead of asserting ``K % batch == 0`` as the official code does.

    Args:
        backbone: encoder with ``output_dim``.
        hidden_dim: MLP hidden width (v2: 2048 = the ResNet-50 feature dim).
        projection_dim: key/query dimension (paper: 128).
        queue_size: K (paper: 65536).
        momentum: key-encoder EMA momentum m (paper: 0.999), constant.
        temperature: InfoNCE temperature (v2: 0.2).
        gather: enqueue the keys of every rank (the official ``concat_all_gather``).
    """

    sync_batchnorm_by_default = True  # SyncBN stands in for the official shuffle-BN (see Departures)

    def __init__(
        self,
        backbone: nn.Module,
        hidden_dim: int = 2048,
        projection_dim: int = 128,
        queue_size: int = 65536,
        momentum: float = 0.999,
        temperature: float = 0.2,
        gather: bool = False,
    ) -> None:
        super().__init__(backbone)
        # MoCo v2 head: fc-ReLU-fc, no BN (official moco/builder.py with --mlp).
        self.projector = projection_mlp(self.feature_dim, hidden_dim, projection_dim, 2, norm_layer=None)
        self.key_backbone = frozen_copy(self.backbone)
        self.key_projector = frozen_copy(self.projector)
        self.queue = FeatureQueue(queue_size, projection_dim, init="random")
        self.momentum = momentum
        self.temperature = temperature
        self.gather = gather

    def forward(self, views: list[torch.Tensor], targets: torch.Tensor | None = None) -> MethodOutput:
        self.check_views(views, 2)
        q = self.projector(self.backbone(views[0]))  # (b, projection_dim)
        with torch.no_grad():
            k = F.normalize(self.key_projector(self.key_backbone(views[1])), dim=1)  # (b, d)
        loss = moco_loss(q, k, self.queue.values.clone(), temperature=self.temperature)
        if self.training:
            self.queue.push(gather_no_grad(k) if self.gather else k)
        return MethodOutput(loss, embeddings=q.detach())

    def after_optimizer_step(self, progress: float) -> None:
        super().after_optimizer_step(progress)
        ema_update(self.key_backbone, self.backbone, self.momentum)
        ema_update(self.key_projector, self.projector, self.momentum)
