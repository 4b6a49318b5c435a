"""Batched colour operations with one factor per sample, on float images in [0, 1].

Each function equals the matching ``torchvision.transforms.v2.functional`` op applied sample by
sample with that sample's factor (float images; tests pin this). Images are (b, c, h, w) with
c in {1, 3}; factors are (b,) tensors on the images' device.
"""

import torch
import torch.nn.functional as F

#: ITU-R 601-2 luma weights as torchvision's ``rgb_to_grayscale`` uses them.
LUMA = (0.2989, 0.587, 0.114)


def _per_sample(factor: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """(b,) factor -> (b, 1, 1, 1) on the images' device and dtype."""
    return factor.to(device=images.device, dtype=images.dtype).view(-1, 1, 1, 1)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """Luma of RGB images: (b, 3, h, w) -> (b, 1, h, w); 1-channel images are returned as is."""
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(dim=1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)


def to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """``rgb_to_grayscale(num_output_channels=c)``: luma repeated over the input's c channels."""
    return grayscale(images).expand_as(images).contiguous()


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``clamp(factor * images + (1 - factor) * other, 0, 1)`` with a per-sample factor."""
    f = _per_sample(factor, images)
    return (f * images + (1.0 - f) * other).clamp_(0.0, 1.0)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Multiply by ``factor`` (b,) and clamp (torchvision: blend with black)."""
    return (images * _per_sample(factor, images)).clamp_(0.0, 1.0)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the mean luma of each image (a scalar per sample)."""
    mean = grayscale(images).mean(dim=(1, 2, 3), keepdim=True)  # (b, 1, 1, 1)
    return _blend(images, mean, factor)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the per-pixel luma (identity on 1-channel images)."""
    if images.shape[1] == 1:
        return images
    return _blend(images, grayscale(images), factor)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``shift`` (b,) turns in [-0.5, 0.5] via HSV (identity on 1-channel images).

    RGB -> HSV as torchvision (hue in sextants: ``(g - b) / d`` if r is the max, ``2 + (b - r) / d``
    if g, else ``4 + (r - g) / d`` with ``d = max - min``); HSV -> RGB in the closed form
    ``c_n = v - v s clamp(min(k, 4 - k), 0, 1)``, ``k = (n + 6 h) mod 6``, n = 5, 3, 1 for
    r, g, b, which equals torchvision's sextant table. Since ``v s = d``, s is never formed.
    """
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(dim=1)  # each (b, h, w)
    minc, maxc = torch.aminmax(images, dim=1)
    delta = maxc - minc  # = v * s
    is_r, is_g = maxc == r, maxc == g
    numerator = torch.where(is_r, g - b, torch.where(is_g, b - r, r - g))
    offset = torch.where(is_r, 0.0, torch.where(is_g, 2.0, 4.0))
    hue6 = numerator.div_(torch.where(delta > 0, delta, 1.0)).add_(offset)  # (b, h, w), sextants
    hue6 = hue6.add_(6.0 * _per_sample(shift, images)[:, 0]).remainder_(6.0)
    n = torch.tensor([5.0, 3.0, 1.0], device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + hue6.unsqueeze(1), 6.0)  # (b, 3, h, w)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return maxc.unsqueeze(1) - delta.unsqueeze(1) * ramp


def solarize(images: torch.Tensor, threshold: float) -> torch.Tensor:
    """Invert pixels >= ``threshold`` (on the [0, 1] scale), as torchvision/PIL solarize."""
    return torch.where(images >= threshold, 1.0 - images, images)


def blur_kernel_size(size: int) -> int:
    """Odd kernel side of 10% of the image side, as SimCLR's official ``gaussian_blur``
    (``radius = (side // 10) // 2; kernel = 2 * radius + 1``: 23 for 224, 9 for 96)."""
    return 2 * ((size // 10) // 2) + 1


def gaussian_kernels(sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Normalised 1-D Gaussians, one per sample: sigma (b,) -> (b, kernel_size)."""
    half = (kernel_size - 1) * 0.5
    x = torch.linspace(-half, half, kernel_size, device=sigma.device, dtype=sigma.dtype)
    pdf = torch.exp(-0.5 * (x[None, :] / sigma[:, None]) ** 2)
    return pdf / pdf.sum(dim=1, keepdim=True)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with per-sample ``sigma`` (b,), reflect padding (torchvision's).

    One grouped conv per axis: every (sample, channel) plane is its own group with its
    sample's kernel, so the whole batch is two convolutions.

    Args:
        images: (b, c, h, w) float images.
        sigma: (b,) standard deviations in pixels.
        kernel_size: odd kernel side (``blur_kernel_size``).

    Returns:
        (b, c, h, w) blurred images.
    """
    b, c, h, w = images.shape
    if kernel_size <= 1 or b == 0:
        return images
    pad = kernel_size // 2
    kernels = gaussian_kernels(sigma.to(device=images.device, dtype=images.dtype), kernel_size)
    weight = kernels.repeat_interleave(c, dim=0)  # (b * c, k)
    x = F.pad(images.reshape(1, b * c, h, w), (pad, pad, pad, pad), mode="reflect")
    x = F.conv2d(x, weight.view(b * c, 1, 1, kernel_size), groups=b * c)  # rows: (1, b*c, h+2p, w)
    x = F.conv2d(x, weight.view(b * c, 1, kernel_size, 1), groups=b * c)  # cols: (1, b*c, h, w)
    return x.view(b, c, h, w)
