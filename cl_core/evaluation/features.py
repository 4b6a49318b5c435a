"""Frozen-encoder feature extraction for kNN and linear-probe evaluation."""

from collections.abc import Callable

import torch
from torch import Tensor, nn


def _default_transform(x: Tensor) -> Tensor:
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    images: Tensor,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    transform: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Encode ``images`` batch by batch in eval mode.

    The encoder is switched to eval mode (BatchNorm running statistics, no dropout) and restored
    to its previous mode afterwards, even if encoding raises. Batches are moved to ``device``
    before ``transform`` so uint8 travels (4x less traffic than float32).

    Args:
        encoder: maps (b, c, h, w) to (b, d); must already live on ``device``.
        images: (n, c, h, w) uint8 or float.
        batch_size: images per forward pass.
        device: where the encoder runs.
        transform: maps a (b, c, h, w) batch to the encoder's float input (e.g. scale and
            normalise); default: uint8 -> float / 255, float unchanged.

    Returns:
        (n, d) float32 on the CPU.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    prepare = transform or _default_transform
    was_training = encoder.training
    encoder.eval()
    try:
        chunks = []
        for start in range(0, images.shape[0], batch_size):
            x = prepare(images[start : start + batch_size].to(device, non_blocking=True))  # (b, c, h, w)
            chunks.append(encoder(x).float().flatten(1).cpu())  # (b, d)
    finally:
        encoder.train(was_training)
    if not chunks:
        raise ValueError("images is empty")
    return torch.cat(chunks)
