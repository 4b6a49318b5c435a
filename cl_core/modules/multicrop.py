"""Run a network over crops of several resolutions, one forward per resolution."""

import torch
from torch import nn


def encode_crops(network: nn.Module, views: list[torch.Tensor]) -> list[torch.Tensor]:
    """Apply ``network`` to each view, batching consecutive views of equal size together
    (DINO's ``MultiCropWrapper``): 2 global + 6 local crops cost 2 forwards, not 8.

    Args:
        network: maps (n, c, h, w) to (n, d).
        views: list of (b, c, h_i, w_i) tensors.

    Returns:
        One (b, d) tensor per view, in order.
    """
    outputs: list[torch.Tensor] = []
    start = 0
    while start < len(views):
        end = start + 1
        while end < len(views) and views[end].shape[-2:] == views[start].shape[-2:]:
            end += 1
        out = network(torch.cat(views[start:end]))  # ((end - start) * b, d)
        outputs.extend(out.chunk(end - start))
        start = end
    return outputs
