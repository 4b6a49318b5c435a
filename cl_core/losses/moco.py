"""MoCo's InfoNCE against a queue of momentum-encoded keys."""

import torch
from torch import Tensor
from torch.nn import functional as F


def moco_loss(q: Tensor, k: Tensor, queue: Tensor, temperature: float = 0.2) -> Tensor:
    """InfoNCE of queries against their key and a queue of negatives.

    He et al., "Momentum Contrast", arXiv 1911.05722 (eq. 1, Algorithm 1); the default
    temperature 0.2 is MoCo v2's (Chen et al., arXiv 2003.04297). No gradient flows into ``k``
    or ``queue``.

    Args:
        q: queries (b, d); L2-normalised here.
        k: positive keys (b, d); L2-normalised here, detached.
        queue: negative keys (K, d), already L2-normalised; detached.
        temperature: softmax temperature.

    Returns:
        Scalar loss, the mean over queries.
    """
    q = F.normalize(q, dim=1)  # (b, d)
    k = F.normalize(k.detach(), dim=1)  # (b, d)
    l_pos = (q * k).sum(dim=1, keepdim=True)  # (b, 1)
    l_neg = q @ queue.detach().T  # (b, K)
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature  # (b, 1 + K)
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)  # positive at index 0
    return F.cross_entropy(logits, target)
