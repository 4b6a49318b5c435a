"""Random resized crops: torchvision's box sampling, vectorised, and bilinear resampling of the boxes."""

import math

import torch
import torch.nn.functional as F

from cl_core.transforms.params import ViewParams

#: Attempts before the centre-crop fallback (torchvision ``RandomResizedCrop.get_params``).
ATTEMPTS = 10


def sample_crop_boxes(
    b: int, h: int | torch.Tensor, w: int | torch.Tensor, params: ViewParams, generator: torch.Generator
) -> torch.Tensor:
    """Random crop boxes with ``torchvision.transforms.RandomResizedCrop.get_params`` semantics.

    Per sample: up to 10 attempts of area ``U(min_scale, max_scale) * h * w`` and aspect ratio
    ``exp(U(log r0, log r1))``; the first attempt that fits is placed uniformly; if none fits,
    the centre crop clamped to the ratio range. All 10 attempts are drawn for every sample (so
    the random stream differs from torchvision's, the distribution does not).

    Args:
        b: number of samples.
        h: image height, or (b,) int64 heights of images of different sizes.
        w: image width, or (b,) widths.
        params: the view's crop parameters.
        generator: CPU generator the draws come from.

    Returns:
        (b, 4) int64 CPU boxes ``(top, left, height, width)``, as ``get_params`` returns them.
    """
    # scale, ratio: (b, ATTEMPTS), in float64 like get_params' Python floats
    draws = torch.rand(b, 2, ATTEMPTS, dtype=torch.float64, generator=generator)
    scale = params.min_scale + draws[:, 0] * (params.max_scale - params.min_scale)
    lo, hi = math.log(params.ratio[0]), math.log(params.ratio[1])
    ratio = torch.exp(lo + draws[:, 1] * (hi - lo))
    area = scale * (h * w if isinstance(h, int) else (h * w).double()[:, None])
    # torch.round is round-half-to-even, like Python's round in get_params.
    cw = torch.round(torch.sqrt(area * ratio)).long()
    ch = torch.round(torch.sqrt(area / ratio)).long()
    hh, ww = (h, w) if isinstance(h, int) else (h[:, None], w[:, None])
    fits = (cw > 0) & (cw <= ww) & (ch > 0) & (ch <= hh)  # (b, ATTEMPTS)
    first = fits.long().argmax(dim=1, keepdim=True)  # index of the first fitting attempt
    found = fits.any(dim=1)
    crop_w = cw.gather(1, first).squeeze(1)
    crop_h = ch.gather(1, first).squeeze(1)
    u = torch.rand(b, 2, generator=generator)  # uniform placement, like torch.randint
    top = torch.floor(u[:, 0] * (h - crop_h + 1)).long().clamp_(max=h - crop_h)
    left = torch.floor(u[:, 1] * (w - crop_w + 1)).long().clamp_(max=w - crop_w)
    if isinstance(h, int):
        fh, fw = _fallback_size(h, w, params.ratio)
        fallback = torch.tensor([(h - fh) // 2, (w - fw) // 2, fh, fw])
    else:  # per image: the same rule, (b, 4)
        sizes = [_fallback_size(int(hi), int(wi), params.ratio) for hi, wi in zip(h.tolist(), w.tolist())]
        fh, fw = torch.tensor(sizes, dtype=torch.long).reshape(-1, 2).unbind(dim=1)
        fallback = torch.stack([(h - fh) // 2, (w - fw) // 2, fh, fw], dim=1)
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


def resized_crops(
    images: torch.Tensor, boxes: torch.Tensor, size: int, antialias: bool = True, batched: bool | None = None
) -> torch.Tensor:
    """Crop ``boxes`` out of uint8 ``images`` and resize each to ``size`` x ``size``, bilinearly.

    Two implementations, picked by device unless ``batched`` is given:

    * per-sample loop (CPU default): ``interpolate(mode="bilinear", antialias=antialias)`` on
      each uint8 crop, i.e. exactly torchvision's tensor ``resized_crop``. The loop is deliberate:
      PyTorch's vectorised uint8 resampling kernel made it 4x faster than the batched RoI-align on
      2 CPU cores (32 x 256 px -> 224 px: 16 ms vs 63 ms), and on CPU there are no launches to save.
    * batched (accelerator default): one ``roi_align(aligned=True)`` call on float images. Bin
      centres sit at ``left + (k + 0.5) * w / size - 0.5`` with the same edge clamping as
      ``interpolate(align_corners=False)``, so ``antialias=False`` equals the loop (up to
      rounding); with ``antialias=True`` each output pixel averages ``ceil(crop_side / size)``
      bilinear samples per axis when shrinking (identical when enlarging), a box-filter
      approximation of the triangle filter of torchvision / PIL.

    Args:
        images: (b, c, h, w) uint8 images.
        boxes: (b, 4) ``(top, left, height, width)`` boxes.
        size: output side.
        antialias: low-pass filter when shrinking, as torchvision's ``antialias``.
        batched: force the RoI-align path (True) or the loop (False).

    Returns:
        (b, c, size, size) uint8 crops on the images' device.
    """
    if batched is None:
        batched = images.device.type != "cpu"
    if not batched:
        out = images.new_empty((images.shape[0], images.shape[1], size, size))
        for i, (top, left, height, width) in enumerate(boxes.tolist()):
            crop = images[i : i + 1, :, top : top + height, left : left + width]
            out[i] = F.interpolate(
                crop, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias
            )[0]
        return out
    from torchvision.ops import roi_align  # here: a CPU data task never pays torchvision's import

    floats = images.float()
    boxes = boxes.to(device=images.device, dtype=floats.dtype)
    top, left, height, width = boxes.unbind(dim=1)
    index = torch.arange(images.shape[0], device=images.device, dtype=floats.dtype)
    rois = torch.stack([index, left, top, left + width, top + height], dim=1)  # (b, 5): i, x1, y1, x2, y2
    crops = roi_align(
        floats,
        rois,
        output_size=(size, size),
        spatial_scale=1.0,
        sampling_ratio=0 if antialias else 1,
        aligned=True,
    )
    return crops.round_().clamp_(0, 255).to(torch.uint8)


def flip_where(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Horizontally flip, in place, the samples where the CPU mask ``flip`` (b,) is true.

    Args:
        images: (b, c, h, w) images (modified in place and returned).
        flip: (b,) bool CPU mask.
    """
    index = flip.nonzero().squeeze(1).to(images.device)  # (m,)
    return images.index_copy_(0, index, images.index_select(0, index).flip(-1))
