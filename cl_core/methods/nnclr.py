"""NNCLR: Dwibedi et al., "With a Little Help from My Friends: Nearest-Neighbor Contrastive
Learning of Visual Representations", arXiv 2104.14548."""

import torch
from torch import nn
from torch.nn import functional as F

from cl_core.distributed import gather_no_grad
from cl_core.losses import nnclr_loss
from cl_core.methods.base import Method, MethodOutput
from cl_core.methods.registry import register_method
from cl_core.modules import FeatureQueue, projection_mlp


@register_method("nnclr")
class NNCLR(Method):
    """SimCLR whose positive is the nearest neighbour of a view's projection in a support set.

    The support set is a FIFO queue (a checkpointed buffer) of the first view's normalised
    projections. The loss is paper eq. 2 made symmetric (paper section 3.2): the mean of
    ``nnclr_loss(z1, p2)`` and ``nnclr_loss(z2, p1)``, the predictions of the other view as
    the candidates. Heads follow lightly's ``NNCLRProjectionHead`` / ``NNCLRPredictionHead``
    with the paper's sizes (section 4.1: projector 3 layers, 2048 hidden, 256 out; predictor
    4096 hidden).

    Departures: the support set starts empty (the official code is not public; lightly starts
    from random vectors); until the first push the batch's own first-view projections are the
    support set. The loss's candidates are the local batch; ``gather`` only shares the pushed
    projections of every rank (the paper's TPU batch is global).

    Args:
        backbone: encoder with ``output_dim``.
        hidden_dim: projector hidden width (2048).
        projection_dim: projection output (256).
        predictor_hidden_dim: predictor hidden width (4096).
        queue_size: support-set size (paper: 98304).
        temperature: tau (paper: 0.1).
        gather: push the projections of every rank into the support set.
    """

    sync_batchnorm_by_default = True  # SimCLR's global BN (the paper builds on SimCLR / BYOL)

    def __init__(
        self,
        backbone: nn.Module,
        hidden_dim: int = 2048,
        projection_dim: int = 256,
        predictor_hidden_dim: int = 4096,
        queue_size: int = 98304,
        temperature: float = 0.1,
        gather: bool = False,
    ) -> None:
        super().__init__(backbone)
        last_norm = nn.BatchNorm1d(projection_dim)
        self.projector = projection_mlp(self.feature_dim, hidden_dim, projection_dim, 3, last_norm=last_norm)
        self.predictor = projection_mlp(projection_dim, predictor_hidden_dim, projection_dim, 2)
        self.queue = FeatureQueue(queue_size, projection_dim, init="zeros")
        self.temperature = temperature
        self.gather = gather

    def forward(self, views: list[torch.Tensor], targets: torch.Tensor | None = None) -> MethodOutput:
        self.check_views(views, 2)
        b = views[0].shape[0]
        z = self.projector(self.backbone(torch.cat(views[:2])))  # (2b, projection_dim)
        p = self.predictor(z)  # (2b, projection_dim)
        z1, z2, p1, p2 = z[:b], z[b:], p[:b], p[b:]
        support = self.queue.valid() if int(self.queue.filled) > 0 else z1.detach()  # (Q, d)
        loss = (
            nnclr_loss(z1, p2, support, self.temperature) + nnclr_loss(z2, p1, support, self.temperature)
        ) / 2
        if self.training:
            keys = F.normalize(z1.detach(), dim=1)  # (b, d)
            self.queue.push(gather_no_grad(keys) if self.gather else keys)
        return MethodOutput(loss, embeddings=z1.detach())
