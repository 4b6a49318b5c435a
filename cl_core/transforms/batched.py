"""The fast path: a view recipe applied to a whole uint8 batch with batched tensor ops.

Every sample draws its own parameters from an explicit CPU ``torch.Generator`` (so a seed fixes
the views on any device); images stay on their device. Python loops run over views and over the
4 jitter positions x 4 ops; the one loop over samples is the CPU crop resampler, which measured
faster than its batched twin there (``crops.resized_crops``; accelerators use the batched one).

Geometric stage (uint8 out, so it can cross the object store) then colour stage (float out):
crop -> flip -> jitter (random op order per sample) -> grayscale -> blur -> solarize, the order
of SimCLR appendix A, BYOL table 6 and DINO's ``DataAugmentationDINO``.
"""

from collections.abc import Sequence

import torch

from cl_core.transforms import colour_ops
from cl_core.transforms.crops import flip_where, resized_crops, sample_crop_boxes
from cl_core.transforms.jitter import apply_jitter, apply_to, draw_jitter
from cl_core.transforms.params import ViewParams, ViewRecipe

__all__ = [
    "colour_stage",
    "cpu_chunk_rows",
    "geometric_stage",
    "make_views",
    "normalize",
    "sample_crop_boxes",
]

#: Float elements per chunk of images when a colour stage runs on the CPU (``augment_clips``,
#: ``pipelines.data.augment_batch``): ~8 MB temporaries, below glibc's 32 MB mmap threshold, so
#: they are reused from the heap instead of mapped and page-faulted anew by every op.
CPU_COLOUR_CHUNK_ELEMENTS = 2**21


def cpu_chunk_rows(channels: int, size: int) -> int:
    """Images of (channels, size, size) per chunk of a CPU colour stage (>= 1): about
    ``CPU_COLOUR_CHUNK_ELEMENTS`` floats."""
    return max(1, CPU_COLOUR_CHUNK_ELEMENTS // (channels * size * size))


def geometric_stage(
    images: torch.Tensor, params: ViewParams, generator: torch.Generator, antialias: bool = True
) -> torch.Tensor:
    """Per-sample random resized crop (bilinear) and horizontal flip.

    Args:
        images: (b, c, h, w) uint8 images, any device.
        params: the view's parameters (``size``, scales, ratio, ``flip_prob``).
        generator: CPU generator for the random parameters.
        antialias: low-pass filter when shrinking, as torchvision's ``RandomResizedCrop``
            (whose default is True; the papers' PIL resizes always filter).

    Returns:
        (b, c, size, size) uint8 crops on the images' device.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 (b, c, h, w), got {images.dtype} {tuple(images.shape)}")
    b, _, h, w = images.shape
    boxes = sample_crop_boxes(b, h, w, params, generator)  # (b, 4) CPU
    flip = torch.rand(b, generator=generator) < params.flip_prob  # (b,) CPU
    crops = resized_crops(images, boxes, params.size, antialias=antialias)  # (b, c, s, s) uint8
    return flip_where(crops, flip)


def colour_stage(images: torch.Tensor, params: ViewParams, generator: torch.Generator) -> torch.Tensor:
    """Per-sample colour distortion: jitter, grayscale, Gaussian blur, solarize.

    On 1-channel images saturation, hue and grayscale are identities and are skipped.

    Args:
        images: (b, c, s, s) uint8 images or float images in [0, 1], c in {1, 3}, any device.
        params: the view's parameters.
        generator: CPU generator for the random parameters.

    Returns:
        (b, c, s, s) float32 images in [0, 1] on the images' device.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (b, c, h, w) with c in {{1, 3}}, got {tuple(images.shape)}")
    x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float().clone()
    b = x.shape[0]
    x = apply_jitter(x, params, draw_jitter(b, params, generator))  # random op order per sample
    gray = torch.rand(b, generator=generator) < params.grayscale_prob  # (b,)
    blur = torch.rand(b, generator=generator) < params.blur_prob  # (b,)
    sigma = torch.empty(b).uniform_(*params.blur_sigma, generator=generator)  # (b,)
    solar = torch.rand(b, generator=generator) < params.solarize_prob  # (b,)
    if x.shape[1] == 3:
        x = apply_to(x, gray, colour_ops.to_grayscale)
    kernel_size = colour_ops.blur_kernel_size(params.size)
    x = apply_to(x, blur, colour_ops.gaussian_blur, sigma, kernel_size)
    return apply_to(x, solar, colour_ops.solarize, params.solarize_threshold / 255.0)


def make_views(
    images: torch.Tensor,
    recipe: ViewRecipe,
    generator: torch.Generator,
    colour: bool = True,
    antialias: bool = True,
) -> list[torch.Tensor]:
    """All views of a batch: per view the geometric stage, then (if ``colour``) the colour stage.

    Args:
        images: (b, c, h, w) uint8 images, any device.
        recipe: the views to make.
        generator: CPU generator for every random parameter.
        colour: False returns the uint8 crops only, for ``colour_stage`` to run later (e.g. on
            the training device after the uint8 batch crossed the object store).
        antialias: see ``geometric_stage``.

    Returns:
        One (b, c, size_i, size_i) tensor per view: float [0, 1] if ``colour`` else uint8.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 (b, c, h, w), got {images.dtype} {tuple(images.shape)}")
    views = []
    for params in recipe.views:
        view = geometric_stage(images, params, generator, antialias)
        views.append(colour_stage(view, params, generator) if colour else view)
    return views


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel.

    Args:
        x: (b, c, h, w) float images in [0, 1].
        mean: c per-channel means on the [0, 1] scale.
        std: c per-channel standard deviations.

    Returns:
        (b, c, h, w) normalised images.
    """
    if len(mean) != x.shape[1] or len(std) != x.shape[1]:
        raise ValueError(f"mean and std need {x.shape[1]} values each, got {len(mean)} and {len(std)}")
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def normalize_clips(clips: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 clips to the video backbones' float layout, normalised per channel.

    Args:
        clips: (b, t, c, h, w) uint8 frames (the data pipeline's clip layout).
        mean: c per-channel means on the [0, 1] scale.
        std: c per-channel standard deviations.

    Returns:
        (b, c, t, h, w) float32 (torchvision's video model layout).
    """
    b, t = clips.shape[:2]
    frames = normalize(clips.flatten(0, 1).float().div_(255.0), mean, std)  # (b*t, c, h, w)
    return frames.unflatten(0, (b, t)).transpose(1, 2)
