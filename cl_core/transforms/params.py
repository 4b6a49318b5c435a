"""Parameters of one augmented view and of a whole view recipe (frozen, validated data).

The defaults are torchvision's ``RandomResizedCrop`` / ``ColorJitter`` defaults and the
SimCLR/MoCo v2 colour distortion (arXiv 2002.05709 appendix A; MoCo v2 arXiv 2003.04297,
official ``main_moco.py --aug-plus``). The recipe builders in ``recipes.py`` set each method's
numbers and cite them.
"""

from dataclasses import dataclass


def _check_prob(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _check_range(name: str, pair: tuple[float, float], low: float, high: float, low_open: bool) -> None:
    """Require ``low (<|<=) pair[0] <= pair[1] <= high``."""
    if len(pair) != 2:
        raise ValueError(f"{name} must be a pair (low, high), got {pair}")
    lo, hi = pair
    bracket = "(" if low_open else "["
    ok_low = lo > low if low_open else lo >= low
    if not (ok_low and lo <= hi <= high):
        raise ValueError(f"{name} must satisfy {bracket}{low}, {high}] with low <= high, got {pair}")


@dataclass(frozen=True)
class ViewParams:
    """How one view is made: random resized crop, flip, then the colour distortion.

    Order of operations (SimCLR appendix A, BYOL table 6, DINO ``DataAugmentationDINO``):
    crop -> horizontal flip -> colour jitter (random op order) -> grayscale -> blur -> solarize.

    Attributes:
        size: output side in pixels (square views).
        min_scale: smallest crop area as a fraction of the image (torchvision default 0.08).
        max_scale: largest crop area fraction (torchvision default 1.0).
        ratio: (low, high) crop aspect ratio w/h, sampled log-uniformly (torchvision (3/4, 4/3)).
        flip_prob: probability of a horizontal flip.
        jitter_prob: probability of applying the colour jitter (SimCLR: 0.8).
        brightness: jitter strength; factor ~ U[max(0, 1 - b), 1 + b] (MoCo v2: 0.4).
        contrast: factor ~ U[max(0, 1 - c), 1 + c] (MoCo v2: 0.4).
        saturation: factor ~ U[max(0, 1 - s), 1 + s] (MoCo v2: 0.4).
        hue: hue shift ~ U[-hue, hue] in turns, at most 0.5 (MoCo v2: 0.1).
        grayscale_prob: probability of converting to grayscale (SimCLR: 0.2).
        blur_prob: probability of a Gaussian blur (0 here; SimCLR ImageNet: 0.5).
        blur_sigma: (low, high) blur sigma in pixels, sampled uniformly (SimCLR: (0.1, 2.0)).
        solarize_prob: probability of solarisation (BYOL second view: 0.2).
        solarize_threshold: pixels >= threshold (uint8 scale) are inverted (BYOL/PIL: 128).
    """

    size: int
    min_scale: float = 0.08
    max_scale: float = 1.0
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_prob: float = 0.2
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_prob: float = 0.0
    solarize_threshold: int = 128

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"size must be an integer >= 1, got {self.size!r}")
        _check_range("(min_scale, max_scale)", (self.min_scale, self.max_scale), 0.0, 1.0, low_open=True)
        _check_range("ratio", tuple(self.ratio), 0.0, float("inf"), low_open=True)
        for name in ("flip_prob", "jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob"):
            _check_prob(name, getattr(self, name))
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0.0:
                raise ValueError(f"{name} must be in [0, inf), got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")
        _check_range("blur_sigma", tuple(self.blur_sigma), 0.0, float("inf"), low_open=True)
        if not 0 <= self.solarize_threshold <= 256:
            raise ValueError(f"solarize_threshold must be in [0, 256], got {self.solarize_threshold}")


@dataclass(frozen=True)
class ViewRecipe:
    """The views made from each image.

    Attributes:
        views: one ``ViewParams`` per view, global crops first.
        num_global: ``views[:num_global]`` are global crops (2 for two-view methods; the
            teacher in DINO and the codes in SwAV use only these).
    """

    views: tuple[ViewParams, ...]
    num_global: int

    def __post_init__(self) -> None:
        if not isinstance(self.views, tuple):
            raise ValueError(f"views must be a tuple of ViewParams, got {type(self.views).__name__}")
        if len(self.views) < 1:
            raise ValueError("views must hold at least one ViewParams, got none")
        if not all(isinstance(v, ViewParams) for v in self.views):
            raise ValueError("views must hold ViewParams only")
        if not 1 <= self.num_global <= len(self.views):
            raise ValueError(f"num_global must be in [1, {len(self.views)}], got {self.num_global}")

    @property
    def sizes(self) -> tuple[int, ...]:
        """Output side of every view, in order."""
        return tuple(v.size for v in self.views)
