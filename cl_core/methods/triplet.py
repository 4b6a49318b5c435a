"""Self-supervised triplet learning: FaceNet's triplet loss (Schroff et al., arXiv 1503.03832)
with in-batch mining, the two views of an image as anchor and positive."""

import torch
from torch import nn
from torch.nn import functional as F

from cl_core.losses import mined_triplet_loss
from cl_core.methods.base import Method, MethodOutput
from cl_core.methods.registry import register_method
from cl_core.modules import projection_mlp


@register_method("triplet")
class Triplet(Method):
    """Every one of the 2b view embeddings is an anchor; its positive is the other view of the
    same image (no labels: self-supervised, as SimCLR's positive pairs); its negative is mined
    among the 2b - 2 views of the other images (``mining``: "hard" or "semihard", see
    :func:`cl_core.losses.mine_negatives`). Other images of the same class are negatives too,
    as in every label-free method. Embeddings are L2-normalised as in FaceNet (section 3), so
    the margin is on the unit sphere (FaceNet: 0.2).

    Args:
        backbone: encoder with ``output_dim``.
        hidden_dim: projection hidden width (SimCLR's 2-layer head; FaceNet has a linear one).
        projection_dim: embedding dimension (FaceNet: 128).
        margin: alpha (0.2).
        mining: "semihard" (FaceNet) or "hard".
    """

    def __init__(
        self,
        backbone: nn.Module,
        hidden_dim: int = 2048,
        projection_dim: int = 128,
        margin: float = 0.2,
        mining: str = "semihard",
    ) -> None:
        super().__init__(backbone)
        if mining not in ("hard", "semihard"):
            raise ValueError(f"mining must be 'hard' or 'semihard', got {mining!r}")
        self.projector = projection_mlp(self.feature_dim, hidden_dim, projection_dim, num_layers=2)
        self.margin = margin
        self.mining = mining

    def forward(self, views: list[torch.Tensor], targets: torch.Tensor | None = None) -> MethodOutput:
        self.check_views(views, 2)
        b = views[0].shape[0]
        z = self.projector(self.backbone(torch.cat(views[:2])))  # (2b, projection_dim)
        unit = F.normalize(z, dim=1)  # (2b, d)
        rows = torch.arange(2 * b, device=z.device)
        ids = rows % b  # both views of image j share id j
        positive = (rows + b) % (2 * b)  # the other view
        loss = mined_triplet_loss(unit, ids, positive, self.margin, self.mining)
        return MethodOutput(loss, embeddings=z[:b].detach())
