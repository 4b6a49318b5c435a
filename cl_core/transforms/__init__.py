"""View recipes of SSL methods: frozen parameters, a batched fast path and a torchvision reference.

recipe = build_recipe("simclr", size=32, blur_prob=0.0)
views = make_views(uint8_images, recipe, torch.Generator().manual_seed(0))  # float [0, 1]
crops = make_views(uint8_images, recipe, generator, colour=False)           # uint8, colour later
"""

from cl_core.transforms.batched import (
    colour_stage,
    geometric_stage,
    make_views,
    normalize,
    normalize_clips,
    sample_crop_boxes,
)
from cl_core.transforms.clips import ClipRecipe, augment_clip_pair, augment_clips
from cl_core.transforms.params import ViewParams, ViewRecipe
from cl_core.transforms.recipes import RECIPES, build_recipe, byol, moco_v2, multicrop, none, simclr

__all__ = [
    "RECIPES",
    "ClipRecipe",
    "ViewParams",
    "ViewRecipe",
    "augment_clip_pair",
    "augment_clips",
    "build_recipe",
    "byol",
    "colour_stage",
    "geometric_stage",
    "make_views",
    "moco_v2",
    "multicrop",
    "none",
    "normalize",
    "normalize_clips",
    "reference_views",
    "sample_crop_boxes",
    "simclr",
]


def __getattr__(name: str):
    """``reference_views`` (torchvision's transforms) is imported on first use: importing
    torchvision costs a process 1.5 s, which the training and data workers never need."""
    if name == "reference_views":
        from cl_core.transforms.reference import reference_views

        return reference_views
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
