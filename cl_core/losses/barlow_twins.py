"""Barlow Twins redundancy-reduction loss."""

import torch
from torch import Tensor

from cl_core.distributed import gather_with_grad

# Official code standardises with nn.BatchNorm1d(affine=False) in training mode: biased
# variance (divide by N) and eps 1e-5 inside the square root.
BATCH_NORM_EPS = 1e-5


def _standardise(z: Tensor) -> Tensor:
    """Per-dimension (z - mean) / sqrt(biased var + 1e-5) over the batch; (N, d) -> (N, d)."""
    mean = z.mean(dim=0, keepdim=True)  # (1, d)
    var = z.var(dim=0, unbiased=False, keepdim=True)  # (1, d)
    return (z - mean) / torch.sqrt(var + BATCH_NORM_EPS)


def barlow_twins_loss(z_a: Tensor, z_b: Tensor, lambda_offdiag: float = 5e-3, gather: bool = False) -> Tensor:
    """Barlow Twins: Zbontar et al., arXiv 2103.03230, eq. 1 and Algorithm 1.

    ``c = std(z_a)^T std(z_b) / N``; loss ``sum_i (1 - c_ii)^2 + lambda * sum_{i != j} c_ij^2``.
    Standardisation follows the official code (facebookresearch/barlowtwins main.py,
    ``self.bn = nn.BatchNorm1d(sizes[-1], affine=False)``): biased variance, eps 1e-5.
    Swapping the branches transposes ``c`` and leaves the loss unchanged.

    Args:
        z_a: projections of the first view (n, d).
        z_b: projections of the second view (n, d).
        lambda_offdiag: off-diagonal weight (paper: 5e-3).
        gather: standardise and correlate over the global batch of every rank (the official
            code's SyncBatchNorm plus all_reduce of ``c``).

    Returns:
        Scalar loss.
    """
    if gather:
        z_a, z_b = gather_with_grad(z_a), gather_with_grad(z_b)  # (N, d) each
    n, d = z_a.shape
    c = _standardise(z_a).T @ _standardise(z_b) / n  # (d, d)
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_mask = ~torch.eye(d, dtype=torch.bool, device=c.device)  # (d, d)
    off_diag = c[off_mask].pow(2).sum()
    return on_diag + lambda_offdiag * off_diag
