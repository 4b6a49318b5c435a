"""What a config means for the data: the view recipe, the clip recipe, the normalisation."""

import inspect

from cl_core.transforms import RECIPES, ClipRecipe, ViewRecipe, build_recipe
from pipelines.config.schema import ExperimentConfig

FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)  # train split pixel statistics
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's "L" and colour_ops.to_grayscale


def recipe_from_config(config: ExperimentConfig) -> ViewRecipe:
    """``build_recipe(augment.recipe, **augment.params)`` with sizes defaulting to the image size.

    ``size`` defaults to ``data.image_size``; for ``multicrop`` ``global_size`` too, and
    ``local_size`` to ``round(image_size * 96 / 224)`` (DINO's 96 px locals at 224 px).
    Explicit params win.
    """
    size, name = config.data.image_size, config.augment.recipe
    defaults = {"size": size, "global_size": size, "local_size": round(size * 96 / 224)}
    accepted = inspect.signature(RECIPES[name]).parameters if name in RECIPES else {}
    params = {k: v for k, v in defaults.items() if k in accepted} | dict(config.augment.params)
    return build_recipe(name, **params)


def clip_recipe_from_config(config: ExperimentConfig) -> ClipRecipe:
    """``ClipRecipe(size=data.image_size, **augment.params)`` for video (augment.recipe ``cvrl``)."""
    return ClipRecipe(**({"size": config.data.image_size} | dict(config.augment.params)))


def normalization(config: ExperimentConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) on the [0, 1] scale: Fashion-MNIST's, else ImageNet's.

    ImageNet in gray (channels 1): the luma-weighted mean and std (the std assumes fully
    correlated channels).
    """
    channels = config.data.channels
    if config.data.source == "fashion_mnist":
        return FASHION_MNIST_MEAN * channels, FASHION_MNIST_STD * channels
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    gray = [sum(w * x for w, x in zip(LUMA, stat)) for stat in (IMAGENET_MEAN, IMAGENET_STD)]
    return (gray[0],), (gray[1],)
