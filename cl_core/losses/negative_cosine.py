"""Negative cosine similarity with a stop-gradient target (BYOL, SimSiam)."""

from torch import Tensor
from torch.nn import functional as F


def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    """Mean of ``-cos(p, stopgrad(z))``.

    SimSiam's D (Chen & He, arXiv 2011.10566, eq. 1). BYOL's loss (Grill et al., arXiv
    2006.07733, eq. 2) is ``2 - 2 cos = 2 + 2 * negative_cosine``.

    Args:
        p: predictions (b, d).
        z: targets (b, d); detached.

    Returns:
        Scalar loss in [-1, 1].
    """
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()  # mean of (b,)
