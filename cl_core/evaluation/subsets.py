"""Class-balanced, seeded label subsets for semi-supervised evaluation (1% / 10% of the labels).

SimCLR's semi-supervised protocol (arXiv 2002.05709, section 6.2) fine-tunes on 1% and 10% of
ImageNet's labels drawn "in a class-balanced way"; the same number of images per class is drawn
here, with a fixed seed, so every method is fine-tuned on the same images.
"""

import torch
from torch import Tensor


def balanced_subset(labels: Tensor, fraction: float, seed: int = 0) -> Tensor:
    """Indices of ``round(fraction * n / C)`` images of each of the C classes present (at least 1,
    at most the class's size), drawn without replacement by a generator seeded with ``seed``.

    Args:
        labels: (n,) integer labels.
        fraction: share of the n labels to keep, in (0, 1].
        seed: the draw; the same (labels, fraction, seed) gives the same indices.

    Returns:
        (m,) int64 indices into ``labels``, sorted.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    labels = labels.long().cpu()
    classes = labels.unique()  # sorted
    per_class = max(1, round(fraction * labels.numel() / classes.numel()))
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c in classes.tolist():
        members = (labels == c).nonzero().squeeze(1)  # (n_c,)
        order = torch.randperm(members.numel(), generator=generator)
        chosen.append(members[order[:per_class]])
    return torch.cat(chosen).sort().values
