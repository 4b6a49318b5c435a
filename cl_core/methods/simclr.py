"""SimCLR: Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", arXiv 2002.05709."""

import torch
from torch import nn

from cl_core.distributed import global_offset
from cl_core.losses import info_nce
from cl_core.methods.base import Method, MethodOutput
from cl_core.methods.registry import register_method
from cl_core.modules import projection_mlp


@register_method("simclr")
class SimCLR(Method):
    """Two views, a projection MLP and NT-Xent over all 2b embeddings.

    Args:
        backbone: encoder with ``output_dim``.
        hidden_dim: projection hidden width (paper: 2048 for ResNet-50, i.e. the feature dim).
        projection_dim: output of g(.) (paper section 4.2: 128).
        temperature: NT-Xent temperature (official code's default flag: 0.1).
        gather: use negatives from every rank (paper: global BN/negatives over all cores).
    """

    sync_batchnorm_by_default = True  # paper section 3: global BN, mean/variance over all devices

    def __init__(
        self,
        backbone: nn.Module,
        hidden_dim: int = 2048,
        projection_dim: int = 128,
        temperature: float = 0.1,
        gather: bool = False,
    ) -> None:
        super().__init__(backbone)
        self.projector = projection_mlp(self.feature_dim, hidden_dim, projection_dim, num_layers=2)
        self.temperature = temperature
        self.gather = gather

    def forward(self, views: list[torch.Tensor], targets: torch.Tensor | None = None) -> MethodOutput:
        self.check_views(views, 2)
        b = views[0].shape[0]
        z = self.projector(self.backbone(torch.cat(views[:2])))  # (2b, projection_dim)
        # Both views of sample j share id j; ids are unique across ranks when gathering.
        offset = global_offset(b) if self.gather else 0
        ids = (torch.arange(b, device=z.device) + offset).repeat(2)  # (2b,)
        loss = info_nce(z, ids, temperature=self.temperature, gather=self.gather)
        return MethodOutput(loss, embeddings=z[:b].detach())
