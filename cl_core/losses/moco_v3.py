"""MoCo v3's InfoNCE over the (global) batch of momentum keys, scaled by 2 tau."""

import torch
from torch import Tensor
from torch.nn import functional as F

from cl_core.distributed import gather_no_grad, global_offset


def moco_v3_loss(q: Tensor, k: Tensor, temperature: float = 1.0, gather: bool = False) -> Tensor:
    """Chen, Xie, He, arXiv 2104.02057, Algorithm 1 (``ctr``) and official moco-v3 builder.py.

    ``CrossEntropy(q k^T / tau, diagonal) * 2 tau``: query i's positive is key i, its negatives
    the other keys of the batch (no queue). The ``2 tau`` factor is the official code's
    (``nn.CrossEntropyLoss()(logits, labels) * (2 * self.T)``); it makes the gradient's scale
    independent of tau. No gradient flows into ``k``.

    Args:
        q: queries (b, d), the predictor's outputs; L2-normalised here.
        k: keys (b, d) from the momentum encoder; L2-normalised here, detached.
        temperature: tau (paper: 1.0 for ResNet, 0.2 for ViT).
        gather: keys of every rank are negatives (official ``concat_all_gather``).

    Returns:
        Scalar loss, the mean over local queries.
    """
    q = F.normalize(q, dim=1)  # (b, d)
    k = F.normalize(k.detach(), dim=1)  # (b, d)
    offset = 0
    if gather:
        k, offset = gather_no_grad(k), global_offset(q.shape[0])  # (N, d)
    logits = q @ k.T / temperature  # (b, N)
    target = torch.arange(q.shape[0], device=q.device) + offset  # key i of this rank
    return F.cross_entropy(logits, target) * (2 * temperature)
