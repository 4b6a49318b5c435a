"""The two stages that make views from uint8 images: ``augment_batch`` on the CPU tier (uint8 in,
uint8 views out, what crosses the object store) and ``device_views`` on the training device
(float, normalised; the colour stage there when ``colour_on_device``).

    views = augment_batch({"image": images, "label": labels}, recipe, colour_on_device, seed)
    for batch in shard.iter_torch_batches(batch_size=b, device=device):      # a Train worker
        views, labels = device_views(batch, recipe, colour_on_device, mean, std, generator)
"""

import warnings

import numpy as np
import torch

from cl_core.transforms.batched import colour_stage, cpu_chunk_rows, make_views, normalize
from cl_core.transforms.crops import flip_where, resized_crops, sample_crop_boxes
from cl_core.transforms.recipes import ViewRecipe


def augment_batch(
    batch: dict[str, np.ndarray], recipe: ViewRecipe, colour_on_device: bool, seed: int
) -> dict[str, np.ndarray]:
    """All views of a batch, deterministic given ``seed``.

    Args:
        batch: ``image`` (n, c, s, s) uint8, ``label`` (n,) int, optionally ``index`` (n,) int
            (passed through).
        recipe: the views to make.
        colour_on_device: True: geometric stage only (the colour stage runs in ``device_views``).
            False: both stages, the float views quantised back to uint8 (error <= 0.5 / 255), in
            chunks of ``colour_chunk_rows`` images.
        seed: seed of every random draw.

    Returns:
        ``view_i`` (n, c, size_i, size_i) uint8 per view, ``label`` (n,) int64 (and ``index``).
    """
    with warnings.catch_warnings():  # Ray Data's batches are read-only views; make_views never writes them
        warnings.simplefilter("ignore", UserWarning)
        images = torch.from_numpy(np.ascontiguousarray(batch["image"], dtype=np.uint8))  # (n, c, s, s)
    n, c = images.shape[:2]
    generator = torch.Generator().manual_seed(seed)
    if n == 0:
        views = [images.new_zeros((0, c, s, s)) for s in recipe.sizes]
    elif colour_on_device:
        views = make_views(images, recipe, generator, colour=False)
    else:  # in chunks of rows, each quantised into the uint8 views as it is made
        views, rows = [images.new_empty((n, c, s, s)) for s in recipe.sizes], colour_chunk_rows(recipe, c)
        for start in range(0, n, rows):
            for dest, view in zip(views, make_views(images[start : start + rows], recipe, generator)):
                dest[start : start + rows] = view.mul_(255.0).round_().clamp_(0, 255)
    out = {f"view_{i}": v.numpy() for i, v in enumerate(views)}
    if "index" in batch:  # each row's index in the training set (InstDisc's memory bank)
        out["index"] = np.asarray(batch["index"], dtype=np.int64)
    return out | {"label": np.asarray(batch["label"], dtype=np.int64)}


def augment_images(
    images: list[np.ndarray], labels: np.ndarray, recipe: ViewRecipe, colour_on_device: bool, seed: int
) -> dict[str, np.ndarray]:
    """All views of images of any sizes, deterministic given ``seed``: per view, a random resized
    crop of each whole image (``sample_crop_boxes`` on each image's own height and width, drawn
    for all images at once; bilinear with antialiasing: torchvision's ``RandomResizedCrop``) and
    the flip; then, unless ``colour_on_device``, the colour stage in chunks, quantised to uint8.

    Args:
        images: n (c, h_i, w_i) uint8 images (``decode_shrunk``'s output).
        labels: (n,) int labels.
        recipe: the views to make.
        colour_on_device: as ``augment_batch``.
        seed: seed of every random draw.

    Returns:
        ``view_i`` (n, c, size_i, size_i) uint8 per view, ``label`` (n,) int64.
    """
    generator = torch.Generator().manual_seed(seed)
    n, c = len(images), (images[0].shape[0] if images else 1)
    tensors = [torch.from_numpy(pixels)[None] for pixels in images]  # (1, c, h_i, w_i) each
    heights = torch.tensor([t.shape[2] for t in tensors], dtype=torch.long)
    widths = torch.tensor([t.shape[3] for t in tensors], dtype=torch.long)
    views = []
    for params in recipe.views:
        view = torch.empty((n, c, params.size, params.size), dtype=torch.uint8)
        if n:
            boxes = sample_crop_boxes(n, heights, widths, params, generator)  # (n, 4)
            for i, (image, box) in enumerate(zip(tensors, boxes)):
                view[i] = resized_crops(image, box[None], params.size)[0]
        flip_where(view, torch.rand(n, generator=generator) < params.flip_prob)
        views.append(view)
    if not colour_on_device and n:
        rows = colour_chunk_rows(recipe, c)
        for view, params in zip(views, recipe.views):
            for start in range(0, n, rows):
                chunk = colour_stage(view[start : start + rows], params, generator)
                view[start : start + rows] = chunk.mul_(255.0).round_().clamp_(0, 255)
    out = {f"view_{i}": v.numpy() for i, v in enumerate(views)}
    return out | {"label": np.asarray(labels, dtype=np.int64)}


def colour_chunk_rows(recipe: ViewRecipe, channels: int) -> int:
    """Images per ``make_views`` call in ``augment_batch`` when the colour stage runs on the CPU:
    ``cpu_chunk_rows`` of the recipe's largest view (13 at 224 px RGB, 682 at 32 px), so the
    colour stage's float temporaries stay small and are reused instead of mapped and faulted in
    by each op. Each chunk draws its own parameters in turn from the call's generator.
    """
    return cpu_chunk_rows(channels, max(recipe.sizes))


def device_views(
    batch: dict[str, torch.Tensor],
    recipe: ViewRecipe,
    colour_on_device: bool,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    generator: torch.Generator,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Float, normalised views of a training batch on its device.

    Args:
        batch: ``view_i`` (b, c, s_i, s_i) uint8 and ``label`` (b,) int64, on the training
            device (``iter_torch_batches(device=...)``).
        recipe: the recipe the views were made with.
        colour_on_device: run each view's ``colour_stage`` here (the crops are geometric only).
        mean: per-channel mean on the [0, 1] scale.
        std: per-channel std.
        generator: CPU generator for the colour parameters.

    Returns:
        One (b, c, s_i, s_i) float32 tensor per view, and the (b,) labels.
    """
    views = []
    for i, params in enumerate(recipe.views):
        view = batch[f"view_{i}"]  # (b, c, s_i, s_i) uint8
        x = colour_stage(view, params, generator) if colour_on_device else view.float().div_(255.0)
        views.append(normalize(x, mean, std))
    return views, batch["label"]
