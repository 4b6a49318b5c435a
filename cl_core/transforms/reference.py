"""The per-sample torchvision + PIL implementation of a view recipe: the baseline to beat.

This is how the official SimCLR/MoCo/BYOL/SwAV/DINO PyTorch pipelines build views: one PIL
image at a time through ``torchvision.transforms`` (here ``v2``). It draws each sample's
parameters from the same distributions as ``batched.make_views`` (not the same random
stream) and is used by benchmarks and distribution tests.
"""

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from cl_core.transforms.colour_ops import blur_kernel_size
from cl_core.transforms.params import ViewParams, ViewRecipe


def view_transform(params: ViewParams) -> v2.Compose:
    """The torchvision pipeline of one view, PIL image in, float (c, s, s) tensor in [0, 1] out."""
    jitter = v2.ColorJitter(
        brightness=params.brightness, contrast=params.contrast, saturation=params.saturation, hue=params.hue
    )
    blur = v2.GaussianBlur(kernel_size=blur_kernel_size(params.size), sigma=params.blur_sigma)
    return v2.Compose(
        [
            v2.RandomResizedCrop(
                params.size,
                scale=(params.min_scale, params.max_scale),
                ratio=params.ratio,
                interpolation=InterpolationMode.BILINEAR,
                antialias=True,
            ),
            v2.RandomHorizontalFlip(p=params.flip_prob),
            v2.RandomApply([jitter], p=params.jitter_prob),
            v2.RandomGrayscale(p=params.grayscale_prob),
            v2.RandomApply([blur], p=params.blur_prob),
            v2.RandomSolarize(threshold=params.solarize_threshold, p=params.solarize_prob),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


def _to_pil_list(images: np.ndarray | torch.Tensor) -> list[Image.Image]:
    """uint8 numpy (b, h, w, c) or torch (b, c, h, w), c in {1, 3} -> PIL "L" / "RGB" images."""
    if isinstance(images, torch.Tensor):
        images = images.permute(0, 2, 3, 1).cpu().numpy()  # (b, h, w, c)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        shape = f"{images.dtype} {images.shape}"
        raise ValueError(f"images must be uint8 (b, h, w, c) with c in {{1, 3}}, got {shape}")
    if images.shape[-1] == 1:
        return [Image.fromarray(np.ascontiguousarray(img[..., 0]), mode="L") for img in images]
    return [Image.fromarray(np.ascontiguousarray(img), mode="RGB") for img in images]


def reference_views(images: np.ndarray | torch.Tensor, recipe: ViewRecipe, seed: int) -> list[torch.Tensor]:
    """All views of a batch, one PIL image at a time through torchvision.

    The global torch RNG is seeded with ``seed`` inside ``torch.random.fork_rng``, so the
    caller's RNG state is left untouched and the result is reproducible.

    Args:
        images: uint8 images, numpy (b, h, w, c) or torch (b, c, h, w), c in {1, 3}.
        recipe: the views to make.
        seed: seed of the torchvision random draws.

    Returns:
        One (b, c, size_i, size_i) float tensor in [0, 1] per view.
    """
    pil_images = _to_pil_list(images)
    transforms = [view_transform(params) for params in recipe.views]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        per_sample = [[t(img) for t in transforms] for img in pil_images]  # the honest per-sample loop
    return [torch.stack([views[i] for views in per_sample]) for i in range(len(transforms))]
