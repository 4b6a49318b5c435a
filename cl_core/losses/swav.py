"""SwAV: Sinkhorn-Knopp codes and the swapped-prediction loss."""

import torch
from torch import Tensor
from torch.nn import functional as F

from cl_core.distributed import all_reduce_sum, gather_no_grad, world_size


@torch.no_grad()
def sinkhorn_knopp(
    scores: Tensor, epsilon: float = 0.05, iterations: int = 3, gather: bool = False
) -> Tensor:
    """Equipartitioned soft assignments, SwAV's ``distributed_sinkhorn`` (arXiv 2006.09882, eq. 3).

    ``Q = exp(scores / eps)^T``, scaled to sum 1; then ``iterations`` times: each prototype
    (row) to sum 1/K, each sample (column) to sum 1/B; finally ``Q *= B``. Each returned row
    sums to 1; each prototype's total is B/K only at convergence.

    Computed in (at least) float32, with the global max subtracted before ``exp``: this scales
    Q by a constant that the first normalisation removes, so Q is unchanged but cannot overflow.

    Args:
        scores: prototype scores (b, K).
        epsilon: entropic regularisation (0.05).
        iterations: Sinkhorn iterations (3).
        gather: sums over samples run over every rank; B is the global batch.

    Returns:
        Detached assignments (b, K), in the dtype of ``scores``.
    """
    s = scores.detach().to(torch.promote_types(scores.dtype, torch.float32))  # (b, K)
    peak = gather_no_grad(s.max().reshape(1)).max() if gather else s.max()
    q = torch.exp((s - peak) / epsilon).T  # (K, b)
    num_prototypes = q.shape[0]
    num_samples = q.shape[1] * (world_size() if gather else 1)  # B
    total = all_reduce_sum if gather else torch.clone
    q /= total(q.sum())
    for _ in range(iterations):
        q /= total(q.sum(dim=1, keepdim=True))  # (K, 1): prototype totals over every sample
        q /= num_prototypes
        q /= q.sum(dim=0, keepdim=True)  # (1, b): each sample's total is local to its column
        q /= num_samples
    q *= num_samples  # each sample's column sums to 1
    return q.T.to(scores.dtype)  # (b, K)


def swav_loss(
    scores: list[Tensor],
    num_assign: int = 2,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    sinkhorn_iterations: int = 3,
    queue_scores: list[Tensor] | None = None,
    gather: bool = False,
) -> Tensor:
    """SwAV swapped prediction: Caron et al., arXiv 2006.09882, eq. 1-2; official main_swav.py.

    For each assignment crop i < ``num_assign``: codes ``q_i`` from Sinkhorn-Knopp (on the
    queued scores followed by the batch's, keeping the last b rows), then the mean over every
    other crop v of ``mean_batch(-sum_k q_i log softmax(scores[v] / T))``; then the mean over i.

    Args:
        scores: one (b, K) prototype-score tensor per crop, assignment (global) crops first.
        num_assign: crops used for assignments (2).
        temperature: softmax temperature (0.1).
        epsilon: Sinkhorn regularisation (0.05).
        sinkhorn_iterations: 3.
        queue_scores: optional, one (Q, K) tensor of queued-embedding scores per assignment crop.
        gather: Sinkhorn over the batch of every rank.

    Returns:
        Scalar loss.
    """
    b = scores[0].shape[0]
    log_probs = [F.log_softmax(s / temperature, dim=1) for s in scores]  # crops x (b, K)
    loss = scores[0].new_zeros(())
    for i in range(num_assign):
        assign_in = scores[i].detach()  # (b, K)
        if queue_scores is not None:
            assign_in = torch.cat([queue_scores[i].detach(), assign_in])  # (Q + b, K)
        q = sinkhorn_knopp(assign_in, epsilon, sinkhorn_iterations, gather)[-b:]  # (b, K)
        others = [v for v in range(len(scores)) if v != i]
        sub = sum(-(q * log_probs[v]).sum(dim=1).mean() for v in others)
        loss = loss + sub / len(others)
    return loss / num_assign
