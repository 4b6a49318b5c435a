"""Batched random resized crops: torchvision's box sampling, vectorised, and RoI-align resampling."""

import math

import torch
from torchvision.ops import roi_align

from cl_core.transforms.params import ViewParams

#: Attempts before the centre-crop fallback (torchvision ``RandomResizedCrop.get_params``).
ATTEMPTS = 10


def sample_crop_boxes(b: int, h: int, w: int, params: ViewParams, generator: torch.Generator) -> torch.Tensor:
    """Random crop boxes with ``torchvision.transforms.RandomResizedCrop.get_params`` semantics.

    Per sample: up to 10 attempts of area ``U(min_scale, max_scale) * h * w`` and aspect ratio
    ``exp(U(log r0, log r1))``; the first attempt that fits is placed uniformly; if none fits,
    the centre crop clamped to the ratio range. All 10 attempts are drawn for every sample (so
    the random stream differs from torchvision's, the distribution does not).

    Args:
        b: number of samples.
        h: image height.
        w: image width.
        params: the view's crop parameters.
        generator: CPU generator the draws come from.

    Returns:
        (b, 4) int64 CPU boxes ``(top, left, height, width)``, as ``get_params`` returns them.
    """
    # scale, log_ratio: (b, ATTEMPTS)
    scale = torch.empty(b, ATTEMPTS).uniform_(params.min_scale, params.max_scale, generator=generator)
    lo, hi = math.log(params.ratio[0]), math.log(params.ratio[1])
    ratio = torch.exp(torch.empty(b, ATTEMPTS).uniform_(lo, hi, generator=generator))
    area = scale * float(h * w)
    # torch.round is round-half-to-even, like Python's round in get_params.
    cw = torch.round(torch.sqrt(area * ratio)).long()
    ch = torch.round(torch.sqrt(area / ratio)).long()
    fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)  # (b, ATTEMPTS)
    first = fits.long().argmax(dim=1, keepdim=True)  # index of the first fitting attempt
    found = fits.any(dim=1)
    crop_w = cw.gather(1, first).squeeze(1)
    crop_h = ch.gather(1, first).squeeze(1)
    u = torch.rand(b, 2, generator=generator)  # uniform placement, like torch.randint
    top = torch.floor(u[:, 0] * (h - crop_h + 1)).long().clamp_(max=h - crop_h)
    left = torch.floor(u[:, 1] * (w - crop_w + 1)).long().clamp_(max=w - crop_w)
    fh, fw = _fallback_size(h, w, params.ratio)
    fallback = torch.tensor([(h - fh) // 2, (w - fw) // 2, fh, fw])
    boxes = torch.stack([top, left, crop_h, crop_w], dim=1)  # (b, 4)
    return torch.where(found[:, None], boxes, fallback)


def _fallback_size(h: int, w: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """Centre-crop (height, width) used when no attempt fits (torchvision's fallback)."""
    in_ratio = w / h
    if in_ratio < min(ratio):
        return int(round(w / min(ratio))), w
    if in_ratio > max(ratio):
        return h, int(round(h * max(ratio)))
    return h, w


def resized_crops(images: torch.Tensor, boxes: torch.Tensor, size: int, antialias: bool = True) -> torch.Tensor:
    """Crop ``boxes`` out of ``images`` and resize each to ``size`` x ``size``, bilinearly.

    RoI-align with ``aligned=True`` samples bin centres at ``left + (k + 0.5) * w / size - 0.5``,
    the source coordinate ``interpolate(mode="bilinear", align_corners=False)`` uses, with the
    same edge clamping. With ``antialias=False`` (one sample per output pixel) the result is
    torchvision's ``resized_crop(..., antialias=False)``. With ``antialias=True`` each output
    pixel averages ``ceil(crop_side / size)`` bilinear samples per axis when a crop is shrunk
    (identical when it is enlarged): a box-filter approximation of PIL's antialiased resize,
    which the papers' torchvision/PIL pipelines used.

    Args:
        images: (b, c, h, w) floating images (any scale).
        boxes: (b, 4) ``(top, left, height, width)`` boxes.
        size: output side.
        antialias: average several samples per output pixel when shrinking.

    Returns:
        (b, c, size, size) floating crops, same dtype and device as ``images``.
    """
    b = images.shape[0]
    boxes = boxes.to(device=images.device, dtype=images.dtype)
    top, left, height, width = boxes.unbind(dim=1)
    index = torch.arange(b, device=images.device, dtype=images.dtype)
    rois = torch.stack([index, left, top, left + width, top + height], dim=1)  # (b, 5) x1 y1 x2 y2
    return roi_align(images, rois, output_size=(size, size), spatial_scale=1.0,
                     sampling_ratio=0 if antialias else 1, aligned=True)  # fmt: skip


def flip_where(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Horizontally flip the samples where ``flip`` (b,) is true; images: (b, c, h, w)."""
    return torch.where(flip.to(images.device)[:, None, None, None], images.flip(-1), images)
