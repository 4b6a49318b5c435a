"""Triplet margin loss."""

import torch
from torch import Tensor
from torch.nn import functional as F


def triplet_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 1.0) -> Tensor:
    """Mean of ``relu(||a - p||_2 - ||a - n||_2 + margin)``.

    Schroff et al., "FaceNet", arXiv 1503.03832, eq. 1-2 (with Euclidean, not squared, distances,
    as ``torch.nn.TripletMarginLoss`` but without its 1e-6 distance offset).

    Args:
        anchor: (b, d).
        positive: (b, d).
        negative: (b, d).
        margin: alpha (1.0).

    Returns:
        Scalar loss.
    """
    d_pos = torch.linalg.vector_norm(anchor - positive, dim=1)  # (b,)
    d_neg = torch.linalg.vector_norm(anchor - negative, dim=1)  # (b,)
    return F.relu(d_pos - d_neg + margin).mean()
