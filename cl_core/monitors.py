"""Collapse monitors computed on a batch of embeddings."""

import torch
from torch.nn import functional as F


@torch.no_grad()
def embedding_std(z: torch.Tensor) -> float:
    """Mean per-dimension std of L2-normalised embeddings, times sqrt(d).

    About 1 for well-spread embeddings and 0 under complete collapse (SimSiam paper, section
    4.1, arXiv 2011.10566, uses std of normalised outputs ~ 1/sqrt(d)).

    Args:
        z: (n, d) embeddings, n >= 2.
    """
    z = F.normalize(z.float(), dim=1)
    return float(z.std(dim=0).mean() * z.shape[1] ** 0.5)


@torch.no_grad()
def effective_rank(z: torch.Tensor) -> float:
    """exp(entropy of the normalised singular values) of centred embeddings (Roy & Vetterli,
    2007); between 1 (dimensional collapse) and min(n, d).

    Args:
        z: (n, d) embeddings.
    """
    z = z.float() - z.float().mean(dim=0)
    s = torch.linalg.svdvals(z)
    p = s / s.sum().clamp_min(1e-12)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return float(torch.exp(entropy))
