"""Weighted kNN classifier: Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination" (InstDisc), arXiv 1805.01978, section 3.4 (the monitor used by MoCo, DINO, ...).
"""

import torch
from torch import Tensor
from torch.nn import functional as F


def knn_predict(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    batch_size: int = 1024,
) -> Tensor:
    """Predict labels by temperature-weighted votes of the k nearest (cosine) training samples.

    Each of the top-k neighbours ``i`` votes for its class with ``exp(s_i / temperature)``, where
    ``s_i`` is the cosine similarity (InstDisc eq. 9 with ``k=200``, ``tau=0.1``); the class with
    the largest summed vote wins (ties: the lowest class index).

    Args:
        train_features: (n, d), normalised here.
        train_labels: (n,) integers in [0, num_classes).
        test_features: (m, d), normalised here.
        num_classes: C.
        k: neighbours; clipped to n.
        temperature: tau.
        batch_size: test rows per similarity block (memory: batch_size * n floats).

    Returns:
        (m,) int64 predictions on the device of ``test_features``.
    """
    if k < 1 or temperature <= 0.0 or batch_size < 1:
        raise ValueError(f"k, temperature, batch_size must be positive, got {k}, {temperature}, {batch_size}")
    train = F.normalize(train_features.float(), dim=1)  # (n, d)
    test = F.normalize(test_features.float(), dim=1).to(train.device)  # (m, d)
    labels = train_labels.to(train.device).long()  # (n,)
    k = min(k, train.shape[0])
    predictions = []
    for start in range(0, test.shape[0], batch_size):
        sims = test[start : start + batch_size] @ train.T  # (b, n)
        top_sims, top_idx = sims.topk(k, dim=1)  # (b, k)
        weights = (top_sims / temperature).exp()  # (b, k)
        votes = torch.zeros(sims.shape[0], num_classes, device=train.device)  # (b, C)
        votes.scatter_add_(1, labels[top_idx], weights)
        predictions.append(votes.argmax(dim=1))  # (b,)
    return torch.cat(predictions).to(test_features.device)


def knn_top1(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
) -> float:
    """Top-1 accuracy in [0, 1] of :func:`knn_predict` on (m,) ``test_labels``.

    ``num_classes`` defaults to one more than the largest label in either split.
    """
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    predictions = knn_predict(train_features, train_labels, test_features, num_classes, k, temperature)
    return int((predictions.cpu() == test_labels.cpu().long()).sum()) / test_labels.numel()
