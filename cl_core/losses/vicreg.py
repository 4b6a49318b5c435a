"""VICReg: variance, invariance and covariance terms."""

import torch
from torch import Tensor
from torch.nn import functional as F

from cl_core.distributed import gather_with_grad


def variance_loss(z: Tensor, eps: float = 1e-4) -> Tensor:
    """Mean over dimensions of ``relu(1 - sqrt(var + eps))``, unbiased variance; z: (N, d)."""
    std = torch.sqrt(z.var(dim=0) + eps)  # (d,)
    return F.relu(1 - std).mean()


def covariance_loss(z: Tensor) -> Tensor:
    """Sum of squared off-diagonal covariances (divide by N - 1) over d; z: (N, d)."""
    n, d = z.shape
    z = z - z.mean(dim=0)  # (N, d)
    cov = z.T @ z / (n - 1)  # (d, d)
    off_mask = ~torch.eye(d, dtype=torch.bool, device=z.device)
    return cov[off_mask].pow(2).sum() / d


def vicreg_loss(
    z_a: Tensor,
    z_b: Tensor,
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
    eps: float = 1e-4,
    gather: bool = False,
) -> Tensor:
    """VICReg: Bardes et al., arXiv 2105.04906, eq. 1-6; weights are the paper's (25, 25, 1).

    Follows the official code (facebookresearch/vicreg main_vicreg.py, ``VICReg.forward``):
    invariance ``F.mse_loss(x, y)`` on the local batch; variance
    ``mean(relu(1 - std_x)) / 2 + mean(relu(1 - std_y)) / 2``; covariance
    ``off_diagonal(cov_x).pow(2).sum() / d + off_diagonal(cov_y).pow(2).sum() / d`` with
    ``cov = x^T x / (N - 1)`` after centring. Symmetric in the two branches.

    Args:
        z_a: expander outputs of the first view (n, d).
        z_b: expander outputs of the second view (n, d).
        invariance_weight: lambda (25).
        variance_weight: mu (25).
        covariance_weight: nu (1).
        eps: added to the variance before the square root (1e-4).
        gather: variance and covariance over the global batch of every rank (official
            ``FullGatherLayer``); invariance stays local, as in the official code: it is a
            per-sample mean, so its mean over ranks is already the global one.

    Returns:
        Scalar loss.
    """
    invariance = F.mse_loss(z_a, z_b)
    if gather:
        z_a, z_b = gather_with_grad(z_a), gather_with_grad(z_b)  # (N, d) each
    variance = (variance_loss(z_a, eps) + variance_loss(z_b, eps)) / 2
    covariance = covariance_loss(z_a) + covariance_loss(z_b)
    return invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance
