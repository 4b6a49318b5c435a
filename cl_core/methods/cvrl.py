"""CVRL: Qian et al., "Spatiotemporal Contrastive Video Representation Learning",
arXiv 2008.03800 (CVPR 2021)."""

import torch
from torch import nn

from cl_core.distributed import global_offset
from cl_core.losses import info_nce
from cl_core.methods.base import Method, MethodOutput
from cl_core.methods.registry import register_method
from cl_core.modules import projection_mlp


@register_method("cvrl")
class CVRL(Method):
    """Two clips of one video are positives; clips of every other video are negatives.

    The clip pair itself (temporal distance drawn from a decreasing distribution, one spatial
    augmentation per clip) is made by the data pipeline (``cl_core.video``). Here: a video
    backbone, an MLP projection and InfoNCE keyed by video id, so two pairs of the same video
    in one batch are all positives of each other (SupCon's L_out over video ids).

    Args:
        backbone: video encoder mapping (b, c, t, h, w) to (b, output_dim).
        hidden_dim: projection hidden width (paper section 4.1: 2048).
        projection_dim: output of the projection (paper: 128).
        num_layers: Linear layers of the projection (paper: a 3-layer MLP head).
        temperature: InfoNCE temperature (paper section 4.1: 0.1).
        gather: negatives from every rank (paper: global batch of 1024 across TPU cores).
    """

    video = True
    needs_targets = False  # video ids when given; without them each pair is its own video

    def __init__(
        self,
        backbone: nn.Module,
        hidden_dim: int = 2048,
        projection_dim: int = 128,
        num_layers: int = 3,
        temperature: float = 0.1,
        gather: bool = False,
    ) -> None:
        super().__init__(backbone)
        self.projector = projection_mlp(self.feature_dim, hidden_dim, projection_dim, num_layers=num_layers)
        self.temperature = temperature
        self.gather = gather

    def forward(self, views: list[torch.Tensor], targets: torch.Tensor | None = None) -> MethodOutput:
        """Args:
        views: two clips per video, each (b, c, t, h, w).
        targets: (b,) video ids, globally unique per video (across ranks too); None: pair index.
        """
        self.check_views(views, 2)
        b = views[0].shape[0]
        z = self.projector(self.backbone(torch.cat(views[:2])))  # (2b, projection_dim)
        if targets is None:
            offset = global_offset(b) if self.gather else 0
            targets = torch.arange(b, device=z.device) + offset
        ids = targets.to(z.device).repeat(2)  # (2b,): clip 0s then clip 1s
        loss = info_nce(z, ids, temperature=self.temperature, gather=self.gather)
        return MethodOutput(loss, embeddings=z[:b].detach())
