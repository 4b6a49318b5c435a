"""NNCLR: the nearest neighbour in a support set of past embeddings as the positive."""

import torch
from torch import Tensor
from torch.nn import functional as F


@torch.no_grad()
def nearest_neighbour(z: Tensor, support: Tensor) -> Tensor:
    """The row of ``support`` with the highest cosine similarity to each row of ``z``.

    Args:
        z: queries (b, d).
        support: support set (Q, d).

    Returns:
        Detached, L2-normalised neighbours (b, d).
    """
    support = F.normalize(support.detach(), dim=1)  # (Q, d)
    similarity = F.normalize(z.detach(), dim=1) @ support.T  # (b, Q)
    return support[similarity.argmax(dim=1)]  # (b, d)


def nnclr_loss(z: Tensor, p: Tensor, support: Tensor, temperature: float = 0.1) -> Tensor:
    """One direction of NNCLR's loss: Dwibedi et al., arXiv 2104.14548, eq. 2.

    ``L_i = -log exp(NN(z_i) . p_i / tau) / sum_k exp(NN(z_i) . p_k / tau)`` with cosine
    similarities, averaged over the batch; ``NN(z_i)`` is ``z_i``'s nearest neighbour in the
    support set (no gradient), ``p`` the predictions of the other view. The paper's symmetric
    loss is the mean of this over both view orders.

    Args:
        z: projections of one view (b, d); only used to find the neighbours.
        p: predictions of the other view (b, d); L2-normalised here.
        support: the support set (Q, d).
        temperature: tau (paper: 0.1).

    Returns:
        Scalar loss.
    """
    neighbours = nearest_neighbour(z, support)  # (b, d), normalised, detached
    logits = neighbours @ F.normalize(p, dim=1).T / temperature  # (b, b)
    target = torch.arange(z.shape[0], device=z.device)  # the positive is on the diagonal
    return F.cross_entropy(logits, target)
