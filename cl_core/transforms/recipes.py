"""Each SSL method's view recipe, as data, with the numbers traced to the paper or official code.

All builders return a ``ViewRecipe``; ``build_recipe(name, **kwargs)`` looks them up by name.
Crops are always bilinear; DINO's official code resizes with bicubic interpolation
(``main_dino.py``, ``DataAugmentationDINO``), a departure we accept for one resampling path.
"""

from collections.abc import Callable, Sequence

from cl_core.transforms.params import ViewParams, ViewRecipe

#: SimCLR's blur sigma range, reused by BYOL, MoCo v2, SwAV and DINO (arXiv 2002.05709 app. A).
BLUR_SIGMA = (0.1, 2.0)


def _pair(name: str, value: Sequence[float]) -> tuple[float, float]:
    """A (low, high) pair as a tuple (YAML gives lists)."""
    if len(value) != 2:
        raise ValueError(f"{name} must be a pair (low, high), got {value}")
    return (float(value[0]), float(value[1]))


def simclr(
    size: int = 224, strength: float = 1.0, min_scale: float = 0.08, blur_prob: float = 0.5
) -> ViewRecipe:
    """SimCLR's two identical views (arXiv 2002.05709, appendix A).

    Crop of area U(0.08, 1) and ratio (3/4, 4/3), flip, colour jitter (0.8s, 0.8s, 0.8s, 0.2s)
    with p 0.8, grayscale p 0.2, Gaussian blur p 0.5 with sigma U(0.1, 2.0) and a kernel of 10%
    of the side. The CIFAR-10 experiments used no blur (appendix B.9): pass ``blur_prob=0``.

    Args:
        size: output side.
        strength: colour distortion strength s in [0, 2.5] (hue 0.2s must stay <= 0.5).
        min_scale: smallest crop area fraction.
        blur_prob: probability of the Gaussian blur.
    """
    if not 0.0 <= strength <= 2.5:
        raise ValueError(f"strength must be in [0, 2.5], got {strength}")
    view = ViewParams(
        size=size,
        min_scale=min_scale,
        jitter_prob=0.8,
        brightness=0.8 * strength,
        contrast=0.8 * strength,
        saturation=0.8 * strength,
        hue=0.2 * strength,
        grayscale_prob=0.2,
        blur_prob=blur_prob,
        blur_sigma=BLUR_SIGMA,
    )
    return ViewRecipe(views=(view, view), num_global=2)


def byol(size: int = 224, min_scale: float = 0.08) -> ViewRecipe:
    """BYOL's two asymmetric views (arXiv 2006.07733, table 6).

    Jitter p 0.8 with brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1 in random order;
    grayscale p 0.2; blur p 1.0 / 0.1; solarisation p 0.0 / 0.2 (threshold 0.5, i.e. 128).
    """
    common = dict(
        size=size,
        min_scale=min_scale,
        jitter_prob=0.8,
        brightness=0.4,
        contrast=0.4,
        saturation=0.2,
        hue=0.1,
        grayscale_prob=0.2,
        blur_sigma=BLUR_SIGMA,
    )
    first = ViewParams(**common, blur_prob=1.0, solarize_prob=0.0)
    second = ViewParams(**common, blur_prob=0.1, solarize_prob=0.2)
    return ViewRecipe(views=(first, second), num_global=2)


def moco_v2(size: int = 224, min_scale: float = 0.2) -> ViewRecipe:
    """MoCo v2's two identical views (arXiv 2003.04297; official ``main_moco.py --aug-plus``).

    ``RandomResizedCrop(224, scale=(0.2, 1.))``, jitter (0.4, 0.4, 0.4, 0.1) p 0.8,
    grayscale p 0.2, blur sigma U(0.1, 2.0) p 0.5, flip.
    """
    view = ViewParams(
        size=size,
        min_scale=min_scale,
        jitter_prob=0.8,
        brightness=0.4,
        contrast=0.4,
        saturation=0.4,
        hue=0.1,
        grayscale_prob=0.2,
        blur_prob=0.5,
        blur_sigma=BLUR_SIGMA,
    )
    return ViewRecipe(views=(view, view), num_global=2)


#: Multi-crop defaults per method: (num_local, global_scale, local_scale).
#: DINO: official ``main_dino.py`` argparse defaults (--local_crops_number 8,
#: --global_crops_scale 0.4 1., --local_crops_scale 0.05 0.4).
#: SwAV: official README / ``main_swav.py`` 2x224 + 6x96 run (--nmb_crops 2 6,
#: --min_scale_crops 0.14 0.05, --max_scale_crops 1. 0.14).
MULTICROP_DEFAULTS: dict[str, tuple[int, tuple[float, float], tuple[float, float]]] = {
    "dino": (8, (0.4, 1.0), (0.05, 0.4)),
    "swav": (6, (0.14, 1.0), (0.05, 0.14)),
}


def _dino_views(size: int, scale: tuple[float, float], kind: str) -> ViewParams:
    """DINO's ``DataAugmentationDINO``: jitter (0.4, 0.4, 0.2, 0.1) p 0.8, gray 0.2, then
    global 1: blur 1.0; global 2: blur 0.1 + solarize 0.2; local: blur 0.5."""
    blur, solarize = {"global1": (1.0, 0.0), "global2": (0.1, 0.2), "local": (0.5, 0.0)}[kind]
    return ViewParams(
        size=size,
        min_scale=scale[0],
        max_scale=scale[1],
        jitter_prob=0.8,
        brightness=0.4,
        contrast=0.4,
        saturation=0.2,
        hue=0.1,
        grayscale_prob=0.2,
        blur_prob=blur,
        blur_sigma=BLUR_SIGMA,
        solarize_prob=solarize,
    )


def _swav_views(size: int, scale: tuple[float, float]) -> ViewParams:
    """SwAV's ``MultiCropDataset``: ``get_color_distortion(s=1.0)`` i.e. jitter (0.8, 0.8, 0.8, 0.2)
    p 0.8 and gray 0.2, then ``PILRandomGaussianBlur`` p 0.5 sigma U(0.1, 2), on every crop."""
    return ViewParams(
        size=size,
        min_scale=scale[0],
        max_scale=scale[1],
        jitter_prob=0.8,
        brightness=0.8,
        contrast=0.8,
        saturation=0.8,
        hue=0.2,
        grayscale_prob=0.2,
        blur_prob=0.5,
        blur_sigma=BLUR_SIGMA,
    )


def multicrop(
    global_size: int = 224,
    local_size: int = 96,
    num_global: int = 2,
    num_local: int | None = None,
    global_scale: Sequence[float] | None = None,
    local_scale: Sequence[float] | None = None,
    method: str = "dino",
) -> ViewRecipe:
    """Multi-crop views (SwAV arXiv 2006.09882 section 3.2; DINO arXiv 2104.14294 section 3.1).

    ``None`` takes the method's official default from ``MULTICROP_DEFAULTS``. For DINO, global
    crop i uses DINO's global view ``i % 2`` recipe (the official code has exactly two).

    Args:
        global_size: side of the global crops.
        local_size: side of the local crops.
        num_global: number of global crops (>= 1).
        num_local: number of local crops (>= 0).
        global_scale: (min, max) area fraction of the global crops.
        local_scale: (min, max) area fraction of the local crops.
        method: "dino" or "swav": whose colour distortion and defaults to use.
    """
    if method not in MULTICROP_DEFAULTS:
        raise ValueError(f"method must be one of {sorted(MULTICROP_DEFAULTS)}, got {method!r}")
    default_local, default_global_scale, default_local_scale = MULTICROP_DEFAULTS[method]
    num_local = default_local if num_local is None else num_local
    g_scale = _pair("global_scale", default_global_scale if global_scale is None else global_scale)
    l_scale = _pair("local_scale", default_local_scale if local_scale is None else local_scale)
    if num_global < 1:
        raise ValueError(f"num_global must be >= 1, got {num_global}")
    if num_local < 0:
        raise ValueError(f"num_local must be >= 0, got {num_local}")
    if method == "dino":
        kinds = [("global1", "global2")[i % 2] for i in range(num_global)]
        globals_ = [_dino_views(global_size, g_scale, kind) for kind in kinds]
        local = _dino_views(local_size, l_scale, "local")
    else:
        globals_ = [_swav_views(global_size, g_scale)] * num_global
        local = _swav_views(local_size, l_scale)
    return ViewRecipe(views=(*globals_, *[local] * num_local), num_global=num_global)


def none(size: int = 224, num_views: int = 1) -> ViewRecipe:
    """No augmentation (evaluation): ``Resize(size)`` + ``CenterCrop(size)``, deterministic.

    Expressed as a crop of scale 1 and ratio 1: the sampler's fallback takes the largest centred
    square, which is then resized to ``size`` (torchvision ``RandomResizedCrop`` semantics).

    Args:
        size: output side.
        num_views: number of (identical) views.
    """
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    view = ViewParams(
        size=size,
        min_scale=1.0,
        max_scale=1.0,
        ratio=(1.0, 1.0),
        flip_prob=0.0,
        jitter_prob=0.0,
        grayscale_prob=0.0,
        blur_prob=0.0,
        solarize_prob=0.0,
    )
    return ViewRecipe(views=(view,) * num_views, num_global=num_views)


RECIPES: dict[str, Callable[..., ViewRecipe]] = {
    "simclr": simclr,
    "byol": byol,
    "moco_v2": moco_v2,
    "multicrop": multicrop,
    "none": none,
}


def build_recipe(name: str, **kwargs: object) -> ViewRecipe:
    """The recipe called ``name`` built with ``kwargs`` (the builder's keywords only).

    Raises:
        ValueError: unknown ``name`` (the message lists the allowed names).
        TypeError: a keyword the builder does not take.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; allowed: {', '.join(sorted(RECIPES))}")
    return RECIPES[name](**kwargs)
