"""Contrastive InfoNCE keyed by positive ids: SimCLR, SupCon and CVRL in one function."""

import torch
from torch import Tensor
from torch.nn import functional as F

from cl_core.distributed import all_reduce_sum, gather_no_grad, gather_with_grad, global_offset, world_size

#: SupCon's two losses: "out" (eq. 2, the mean over positives outside the log) and "in" (eq. 3).
SUPCON_VARIANTS = ("out", "in")


def info_nce(
    z: Tensor, positive_ids: Tensor, temperature: float = 0.1, gather: bool = False, variant: str = "out"
) -> Tensor:
    """Supervised-contrastive InfoNCE, SupCon's L_out (Khosla et al., arXiv 2004.11362, eq. 2).

    Row i's positives are the other rows with the same id; its denominator is every other row
    (j != i). The loss is the mean over positives, then over anchors that have at least one
    positive. With ``positive_ids = cat(arange(b), arange(b))`` it is SimCLR's NT-Xent
    (Chen et al., arXiv 2002.05709); with class labels it is SupCon; with video ids, CVRL.

    ``variant="in"`` is SupCon's L_in (eq. 3): the mean over positives inside the log,
    ``-log(mean_p softmax_ip)``. By Jensen L_in <= L_out (paper eq. 4); the paper found L_in to
    train worse (Table 2). Both are equal when every anchor has exactly one positive.

    With ``gather`` the local rows are the anchors and every rank's rows are candidates. The
    returned value is ``sum of local anchor losses * world_size / global anchor count``, so its
    mean over ranks (what DDP optimises) is the mean over every anchor of the global batch.

    Args:
        z: embeddings (n, d); L2-normalised here.
        positive_ids: integer ids (n,).
        temperature: softmax temperature (SimCLR 0.1 to 0.5, SupCon 0.1).
        gather: use the rows of every rank as candidates.
        variant: "out" (eq. 2) or "in" (eq. 3).

    Returns:
        Scalar loss.

    Raises:
        ValueError: when no anchor has a positive, or an unknown ``variant``.
    """
    if variant not in SUPCON_VARIANTS:
        raise ValueError(f"variant must be one of {SUPCON_VARIANTS}, got {variant!r}")
    n = z.shape[0]
    z = F.normalize(z, dim=1)  # (n, d)
    if gather:
        candidates = gather_with_grad(z)  # (N, d)
        candidate_ids = gather_no_grad(positive_ids)  # (N,)
        offset = global_offset(n)
    else:
        candidates, candidate_ids, offset = z, positive_ids, 0
    logits = z @ candidates.T / temperature  # (n, N)
    rows = torch.arange(n, device=z.device)
    is_self = torch.zeros_like(logits, dtype=torch.bool)  # (n, N)
    is_self[rows, rows + offset] = True
    logits = logits.masked_fill(is_self, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # (n, N), -inf on self
    is_pos = (positive_ids[:, None] == candidate_ids[None, :]) & ~is_self  # (n, N)
    num_pos = is_pos.sum(dim=1)  # (n,)
    has_pos = num_pos > 0  # (n,)
    if variant == "out":  # -(1/|P|) sum_p log softmax_ip
        pos_log_prob = torch.where(is_pos, log_prob, torch.zeros_like(log_prob)).sum(dim=1)  # (n,)
        per_anchor = -pos_log_prob[has_pos] / num_pos[has_pos]  # (m,)
    else:  # -log((1/|P|) sum_p softmax_ip); rows without positives dropped first (all -inf)
        pos_only = log_prob[has_pos].masked_fill(~is_pos[has_pos], float("-inf"))  # (m, N)
        per_anchor = torch.log(num_pos[has_pos].to(z.dtype)) - torch.logsumexp(pos_only, dim=1)  # (m,)
    count = all_reduce_sum(has_pos.sum()) if gather else has_pos.sum()
    if int(count) == 0:
        raise ValueError("info_nce: no anchor has a positive (every id occurs only once)")
    scale = world_size() if gather else 1
    return per_anchor.sum() * scale / count
