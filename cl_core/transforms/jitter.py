"""Colour jitter with a random op order per sample, as ``torchvision.transforms.ColorJitter``.

ColorJitter draws ``randperm(4)`` and its four factors per image and skips an op whose strength
is 0. Here each sample's permutation is the argsort of 4 uniforms (a uniform permutation), and at
each of the 4 positions every op is applied to the samples that hold it there, so the batch is
processed with 16 masked batched ops and no loop over samples.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from cl_core.transforms import colour_ops
from cl_core.transforms.params import ViewParams

#: Op ids: the columns of ``JitterDraws.factors`` and the entries of ``JitterDraws.order``.
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)
JITTER_OPS: tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ...] = (
    colour_ops.adjust_brightness,
    colour_ops.adjust_contrast,
    colour_ops.adjust_saturation,
    colour_ops.adjust_hue,
)


@dataclass(frozen=True)
class JitterDraws:
    """One batch's jitter parameters (CPU tensors).

    Attributes:
        apply: (b,) bool, whether the jitter is applied (``RandomApply(p=jitter_prob)``).
        order: (b, 4) op id at each position (a permutation per sample).
        factors: (b, 4) brightness, contrast, saturation factors and hue shift.
    """

    apply: torch.Tensor
    order: torch.Tensor
    factors: torch.Tensor


def draw_jitter(b: int, params: ViewParams, generator: torch.Generator) -> JitterDraws:
    """Draw ``b`` samples' jitter parameters.

    Factors follow ColorJitter: brightness, contrast, saturation ~ U[max(0, 1 - x), 1 + x],
    hue ~ U[-hue, hue]. All are drawn whatever the strengths, so the stream never depends on them.
    """
    apply = torch.rand(b, generator=generator) < params.jitter_prob
    order = torch.rand(b, 4, generator=generator).argsort(dim=1)
    strengths = (params.brightness, params.contrast, params.saturation)
    low = torch.tensor([max(0.0, 1.0 - s) for s in strengths] + [-params.hue])
    high = torch.tensor([1.0 + s for s in strengths] + [params.hue])
    factors = low + torch.rand(b, 4, generator=generator) * (high - low)
    return JitterDraws(apply=apply, order=order, factors=factors)


def apply_to(
    x: torch.Tensor, mask: torch.Tensor, fn: Callable[..., torch.Tensor], *args: torch.Tensor | float | int
) -> torch.Tensor:
    """Apply ``fn`` to the samples of ``x`` (b, ...) where the CPU ``mask`` (b,) is true.

    ``x`` is updated in place when only some samples are selected. Tensors in ``args`` are
    per-sample (b,) CPU tensors and are indexed with the mask. Masks live on the CPU, so
    selecting samples never synchronises with an accelerator.
    """
    index = mask.nonzero().squeeze(1)  # (m,) CPU
    if index.numel() == 0:
        return x
    if index.numel() == x.shape[0]:
        return fn(x, *[a.to(x.device) if isinstance(a, torch.Tensor) else a for a in args])
    index_dev = index.to(x.device)
    sub_args = [a[index].to(x.device) if isinstance(a, torch.Tensor) else a for a in args]
    return x.index_copy_(0, index_dev, fn(x.index_select(0, index_dev), *sub_args))


def apply_jitter(x: torch.Tensor, params: ViewParams, draws: JitterDraws) -> torch.Tensor:
    """Jitter float images (b, c, h, w) in [0, 1] with ``draws``, in each sample's op order.

    Ops of strength 0 are skipped (ColorJitter sets them to None). On 1-channel images
    saturation and hue are identities and are skipped.

    Returns:
        (b, c, h, w) jittered images (``x`` may be modified in place).
    """
    strengths = (params.brightness, params.contrast, params.saturation, params.hue)
    skip = {SATURATION, HUE} if x.shape[1] == 1 else set()
    for position in range(4):
        for op_id, op in enumerate(JITTER_OPS):
            if strengths[op_id] == 0 or op_id in skip:
                continue
            selected = draws.apply & (draws.order[:, position] == op_id)  # (b,)
            x = apply_to(x, selected, op, draws.factors[:, op_id])
    return x
