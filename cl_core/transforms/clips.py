"""Temporally consistent clip augmentation for CVRL (Qian et al. 2021, arXiv 2008.03800, section 3.3).

Every random parameter (crop box, flip, jitter factors and order, grayscale, blur, solarize) is
drawn once per clip and repeated over its T frames (``repeat_interleave(T)``), so the frames of
a clip share one augmentation and the two clips of a pair get different ones. The ops are the
batched image ops of this package applied to the (n * T) frames at once (on the CPU, to chunks
of them in turn, after every draw). Numbers follow the official CVRL code (tensorflow/models
``official/projects/video_ssl``): crop area U(0.3, 1) and aspect ratio (0.5, 2); flip p 0.5;
colour jitter of strength 1 (0.8, 0.8, 0.8, 0.2, random op order) with p 0.8 then grayscale
p 0.2 (``random_color_jitter_3d``); Gaussian blur with sigma U(0.1, 2) and a kernel of 10% of
the side, p 1.0 on clip 0 and 0.1 on clip 1; solarisation p 0.0 / 0.2 (BYOL's asymmetric
pair, as in the paper's appendix).
"""

from dataclasses import dataclass

import torch

from cl_core.transforms import colour_ops
from cl_core.transforms.batched import cpu_chunk_rows
from cl_core.transforms.crops import flip_where, resized_crops, sample_crop_boxes
from cl_core.transforms.jitter import JitterDraws, apply_jitter, apply_to, draw_jitter
from cl_core.transforms.params import ViewParams


@dataclass(frozen=True)
class ClipRecipe:
    """How the two clips of a CVRL pair are augmented (defaults: the paper's).

    Attributes:
        size: output side of every frame.
        min_scale: smallest crop area fraction (CVRL: 0.3).
        max_scale: largest crop area fraction (1.0).
        ratio: crop aspect-ratio range (CVRL: (0.5, 2.0)).
        flip_prob: horizontal flip probability.
        strength: colour jitter strength s: brightness, contrast, saturation 0.8 s, hue 0.2 s.
        jitter_prob: probability of the colour jitter (0.8).
        grayscale_prob: probability of grayscale (0.2).
        blur_prob: (clip 0, clip 1) blur probabilities (1.0, 0.1).
        blur_sigma: blur sigma range in pixels.
        solarize_prob: (clip 0, clip 1) solarisation probabilities (0.0, 0.2).
    """

    size: int
    min_scale: float = 0.3
    max_scale: float = 1.0
    ratio: tuple[float, float] = (0.5, 2.0)
    flip_prob: float = 0.5
    strength: float = 1.0
    jitter_prob: float = 0.8
    grayscale_prob: float = 0.2
    blur_prob: tuple[float, float] = (1.0, 0.1)
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_prob: tuple[float, float] = (0.0, 0.2)

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 2.5:
            raise ValueError(f"strength must be in [0, 2.5], got {self.strength}")
        _ = self.views  # validates every field through ViewParams

    @property
    def views(self) -> tuple[ViewParams, ViewParams]:
        """The ``ViewParams`` of clip 0 and clip 1."""
        s = self.strength
        common = dict(
            size=self.size,
            min_scale=self.min_scale,
            max_scale=self.max_scale,
            ratio=tuple(self.ratio),
            flip_prob=self.flip_prob,
            jitter_prob=self.jitter_prob,
            brightness=0.8 * s,
            contrast=0.8 * s,
            saturation=0.8 * s,
            hue=0.2 * s,
            grayscale_prob=self.grayscale_prob,
            blur_sigma=tuple(self.blur_sigma),
        )
        return tuple(
            ViewParams(**common, blur_prob=self.blur_prob[i], solarize_prob=self.solarize_prob[i])
            for i in range(2)
        )


def _repeat(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Per-clip draws (n, ...) -> per-frame draws (n * T, ...)."""
    return x.repeat_interleave(frames, dim=0)


def augment_clips(clips: torch.Tensor, params: ViewParams, generator: torch.Generator) -> torch.Tensor:
    """One augmentation per clip, shared by its frames: crop, flip, jitter, grayscale, blur, solarize.

    Args:
        clips: (n, T, C, H, W) uint8 clips, C in {1, 3}.
        params: the clip's view parameters.
        generator: CPU generator of every draw.

    Returns:
        (n, T, C, size, size) uint8 clips (the float result rounded back).
    """
    if clips.dtype != torch.uint8 or clips.ndim != 5 or clips.shape[2] not in (1, 3):
        raise ValueError(
            f"clips must be uint8 (n, T, C, H, W), C in {{1, 3}}, got {clips.dtype} {tuple(clips.shape)}"
        )
    n, t, c, h, w = clips.shape
    boxes = _repeat(sample_crop_boxes(n, h, w, params, generator), t)  # (n*T, 4)
    flip = _repeat(torch.rand(n, generator=generator) < params.flip_prob, t)  # (n*T,)
    frames = flip_where(
        resized_crops(clips.reshape(n * t, c, h, w), boxes, params.size), flip
    )  # (n*T, C, s, s)
    jitter = draw_jitter(n, params, generator)
    jitter = JitterDraws(*(_repeat(x, t) for x in (jitter.apply, jitter.order, jitter.factors)))
    gray = _repeat(torch.rand(n, generator=generator) < params.grayscale_prob, t)
    blur = _repeat(torch.rand(n, generator=generator) < params.blur_prob, t)
    sigma = _repeat(torch.empty(n).uniform_(*params.blur_sigma, generator=generator), t)
    solar = _repeat(torch.rand(n, generator=generator) < params.solarize_prob, t)
    out, kernel = torch.empty_like(frames), colour_ops.blur_kernel_size(params.size)
    step = cpu_chunk_rows(c, params.size) if frames.device.type == "cpu" else n * t
    for start in range(0, n * t, step):  # on the CPU in chunks of frames: see CPU_COLOUR_CHUNK_ELEMENTS
        part = slice(start, start + step)
        draws = JitterDraws(jitter.apply[part], jitter.order[part], jitter.factors[part])
        x = apply_jitter(frames[part].float().div_(255.0), params, draws)  # (m, C, s, s) float in [0, 1]
        if c == 3:
            x = apply_to(x, gray[part], colour_ops.to_grayscale)
        x = apply_to(x, blur[part], colour_ops.gaussian_blur, sigma[part], kernel)
        x = apply_to(x, solar[part], colour_ops.solarize, params.solarize_threshold / 255.0)
        out[part] = x.mul_(255.0).round_().clamp_(0, 255)
    return out.view(n, t, c, params.size, params.size)


def augment_clip_pair(
    clips_0: torch.Tensor, clips_1: torch.Tensor | None, recipe: ClipRecipe, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment the two clips of each pair, clip 0 with ``recipe.views[0]``, clip 1 with ``[1]``.

    Args:
        clips_0: (n, T, C, H, W) uint8 first clips.
        clips_1: (n, T, C, H, W) uint8 second clips; None augments ``clips_0`` twice.
        recipe: the pair's parameters.
        generator: CPU generator: the same seed gives the same pair.

    Returns:
        Two (n, T, C, size, size) uint8 tensors.
    """
    first, second = recipe.views
    out_0 = augment_clips(clips_0, first, generator)
    return out_0, augment_clips(clips_0 if clips_1 is None else clips_1, second, generator)
