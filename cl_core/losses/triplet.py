"""Triplet margin loss and in-batch negative mining."""

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


#: In-batch negative mining: the nearest negative, or FaceNet's semi-hard one.
MINING = ("hard", "semihard")


@torch.no_grad()
def mine_negatives(z: Tensor, ids: Tensor, positive_index: Tensor, mining: str = "semihard") -> Tensor:
    """For each anchor, the index of its negative among the rows with another id.

    "hard": the nearest negative. "semihard": FaceNet's (arXiv 1503.03832, eq. 4, section 3.2)
    nearest negative farther than the anchor's positive; where no negative is, the farthest
    negative (TensorFlow Addons ``triplet_semihard_loss``). Distances are Euclidean.

    Args:
        z: embeddings (n, d).
        ids: integer ids (n,); rows with another id are negatives.
        positive_index: (n,) index of each anchor's positive.
        mining: "hard" or "semihard".

    Returns:
        (n,) int64 negative indices, detached.
    """
    if mining not in MINING:
        raise ValueError(f"mining must be one of {MINING}, got {mining!r}")
    dist = torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist")  # (n, n), exact
    is_neg = ids[:, None] != ids[None, :]  # (n, n)
    hardest = dist.masked_fill(~is_neg, float("inf")).argmin(dim=1)  # (n,)
    if mining == "hard":
        return hardest
    d_pos = dist.gather(1, positive_index[:, None])  # (n, 1)
    beyond = is_neg & (dist > d_pos)  # (n, n): semi-hard candidates
    nearest_beyond = dist.masked_fill(~beyond, float("inf")).argmin(dim=1)  # (n,)
    farthest = dist.masked_fill(~is_neg, float("-inf")).argmax(dim=1)  # (n,)
    return torch.where(beyond.any(dim=1), nearest_beyond, farthest)


def mined_triplet_loss(
    z: Tensor, ids: Tensor, positive_index: Tensor, margin: float = 0.2, mining: str = "semihard"
) -> Tensor:
    """:func:`triplet_loss` over every row as an anchor, its given positive and a mined negative.

    Args:
        z: embeddings (n, d).
        ids: integer ids (n,).
        positive_index: (n,) index of each anchor's positive (same id).
        margin: alpha (FaceNet: 0.2 on unit-norm embeddings).
        mining: "hard" or "semihard" (:func:`mine_negatives`).

    Returns:
        Scalar loss, the mean over the n anchors.
    """
    negative_index = mine_negatives(z, ids, positive_index, mining)  # (n,)
    return triplet_loss(z, z[positive_index], z[negative_index], margin)
