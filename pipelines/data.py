"""Image corpora on Ray Data: decode + resize once, augment every epoch, finish views on the device.

    datasets = build_datasets(config)   # train rows: view_0 .. view_{k-1} uint8 (c, s_i, s_i), label
    for batch in shard.iter_torch_batches(batch_size=b, device=device):      # a Train worker
        views, labels = device_views(batch, recipe, colour_on_device, mean, std, generator)

Randomness: every augmentation call seeds a ``torch.Generator`` from (``train.seed``, the key of
its first row, fresh OS entropy per task), so epochs and batches draw different views and
samples of a batch draw their own parameters.
``augment_batch`` is deterministic given its seed; the pipeline is not bit-reproducible (fresh
entropy; Ray Data's batch boundaries are not fixed).
"""

import inspect
import logging
import secrets
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from cl_core.transforms import RECIPES, ClipRecipe, ViewRecipe, build_recipe, colour_stage, make_views, normalize
from cl_core.transforms.batched import cpu_chunk_rows
from pipelines.decode import CorpusReport, block_rows, held_out
from pipelines.malloc import keep_freed_memory

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

    from pipelines.config import ExperimentConfig
    from pipelines.corpus import Corpus

LOG = logging.getLogger(__name__)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)  # train split pixel statistics
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's "L" and colour_ops.to_grayscale
TASKS_PER_SLOT = 4  # augmentation tasks per epoch per concurrent task slot: load balance vs per-task cost
CALL_INPUT_BYTES = 2**25  # decoded input of one augmentation call (fewer rows for small images)
MAX_TASK_INPUT_BYTES = 2**28  # of one augmentation task: 8 calls of 32 MB


def recipe_from_config(config: "ExperimentConfig") -> ViewRecipe:
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


def clip_recipe_from_config(config: "ExperimentConfig") -> ClipRecipe:
    """``ClipRecipe(size=data.image_size, **augment.params)`` for video (augment.recipe ``cvrl``)."""
    return ClipRecipe(**({"size": config.data.image_size} | dict(config.augment.params)))


def normalization(config: "ExperimentConfig") -> tuple[tuple[float, ...], tuple[float, ...]]:
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


@dataclass
class Datasets:
    """What the trainer consumes.

    Attributes:
        train: rows ``view_0`` .. ``view_{k-1}`` uint8 (c, s_i, s_i) (geometric-only crops when
            ``augment.colour_on_device``, else fully augmented and quantised) and ``label``
            int64 (-1 unlabelled); new views every time it is iterated.
        eval_train: kNN memory bank rows ``image`` uint8 (c, s, s), ``label`` int64; or None.
        eval_test: kNN query rows, same columns; None when the corpus has no labels.
        report: bad-file accounting.
        num_train_rows: rows of ``train``.
    """

    train: "ray.data.Dataset"
    eval_train: "ray.data.Dataset | None"
    eval_test: "ray.data.Dataset | None"
    report: CorpusReport
    num_train_rows: int


def augment_batch(
    batch: dict[str, np.ndarray], recipe: ViewRecipe, colour_on_device: bool, seed: int
) -> dict[str, np.ndarray]:
    """All views of a batch, deterministic given ``seed``.

    Args:
        batch: ``image`` (n, c, s, s) uint8, ``label`` (n,) int.
        recipe: the views to make.
        colour_on_device: True: geometric stage only (the colour stage runs in ``device_views``).
            False: both stages, the float views quantised back to uint8 (error <= 0.5 / 255), in
            chunks of ``colour_chunk_rows`` images.
        seed: seed of every random draw.

    Returns:
        ``view_i`` (n, c, size_i, size_i) uint8 per view, ``label`` (n,) int64.
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
    return out | {"label": np.asarray(batch["label"], dtype=np.int64)}


def colour_chunk_rows(recipe: ViewRecipe, channels: int) -> int:
    """Images per ``make_views`` call in ``augment_batch`` when the colour stage runs on the CPU:
    ``cpu_chunk_rows`` of the recipe's largest view (13 at 224 px RGB, 682 at
    32 px).

    The colour stage's float temporaries of a whole 32 MB call (150 MB at 224 px) were mapped
    and faulted in anew by each op: 256 images at 224 px ran at 69 images/s with ~650,000 page
    faults per call, in chunks of 8-16 images at 106-109; 4096 at 32 px at 4,450 vs 6,900 in
    chunks of 256-512; the 224 px call's peak memory fell from ~940 to ~190 MB. Each chunk
    draws its own parameters in turn from the call's generator.
    """
    return cpu_chunk_rows(channels, max(recipe.sizes))


def task_rows(config: "ExperimentConfig") -> int:
    """Images per augmentation call: ``augment.batch_rows``, else about 32 MB of uint8 input,
    64 to 4096 rows (>= ~100 ms of work per call), aligned with the decoded corpus' blocks.

    Aligned: the nearest multiple of the source's ``block_rows`` or, when that is 0, the
    largest divisor of a block within the 32 MB (224 px RGB: 256 rows, one block). A call within
    one block reads it in place; one that straddles blocks is a copy of its input, and an
    unaligned call size leaves remainder calls: at 224 px, 222-row calls over 128-row blocks ran
    with ~85 ms per task outside the calls, 256-row calls ~40 ms (epochs 0.91x as long).
    """
    if config.augment.batch_rows is not None:
        return config.augment.batch_rows
    rows = int(min(4096, max(64, CALL_INPUT_BYTES // _image_bytes(config))))
    block = block_rows(config.data.source)
    if block is None:
        return rows
    if round(rows / block) >= 1:
        return block * round(rows / block)
    return block // next(k for k in range(-(-block // rows), block + 1) if block % k == 0)


def _image_bytes(config: "ExperimentConfig") -> int:
    return config.data.channels * config.data.image_size**2


def rows_per_task(config: "ExperimentConfig", num_rows: int, slots: int) -> int:
    """Images per augmentation task (one ``map_batches`` batch): a whole number of calls of
    ``task_rows``, about ``TASKS_PER_SLOT`` tasks per epoch for each of the ``slots`` concurrent
    tasks, at most ``MAX_TASK_INPUT_BYTES`` of input (8 calls of 32 MB; 6 of 256 rows at 224
    px), at least one call.

    One slot runs its tasks back to back with ~20-30 ms between one's end and the next one's
    start (Ray core and Ray Data's scheduling; measured on 2 cores), so fewer, larger tasks pay
    on every corpus: 60,000 Fashion-MNIST images on one slot, 5 tasks of 3 calls instead of 15,
    epochs 0.92-0.97x as long; 224 px, see ``bench/README.md``. A task's calls read its blocks
    in place and leave it as blocks of their own (``_train_rows``, ``call_block_bytes``), so a
    task's size costs neither copies nor first-batch latency; the cap bounds the work a failed
    task redoes. A task below one decoded block divides it. Corpora under ``TASKS_PER_SLOT``
    calls per slot (the default job's 10,000 images) keep one call per task.
    """
    call = task_rows(config)
    most = max(1, MAX_TASK_INPUT_BYTES // (_image_bytes(config) * call))
    calls = max(1, min(most, num_rows // (TASKS_PER_SLOT * max(1, slots) * call)))
    block = block_rows(config.data.source) if config.augment.batch_rows is None else None
    if block is not None and call < block:  # whole calls that divide a block: none straddles two
        calls = max(c for c in range(1, calls + 1) if (block // call) % c == 0)
    return call * calls


def batch_seed(train_seed: int, key: int, entropy: int) -> int:
    """A 64-bit generator seed mixing the run seed, a row key and entropy (NumPy SeedSequence)."""
    words = [train_seed & (2**64 - 1), key & (2**64 - 1), entropy & (2**64 - 1)]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0])


def _train_rows(
    table: "pa.Table",
    recipe: ViewRecipe,
    colour_on_device: bool,
    train_seed: int,
    holdout: float,
    call_rows: int,
) -> Iterator[dict[str, np.ndarray]]:
    """The per-epoch map_batches UDF of one task: ``augment_batch`` on ``call_rows`` rows of the
    task's input at a time (bounded memory), bad and held-out rows dropped, yielding each call's
    views; once for a task without a good row (an empty, typed block).

    ``table`` is the task's input as Arrow (``batch_format="pyarrow"``): its decoded blocks as
    chunks, not concatenated. A call within one block reads it in place; Ray Data's NumPy
    batches would copy a task's blocks into one array first.
    """
    torch.set_num_threads(1)  # measured: OpenMP threads of concurrent tasks made make_views ~40x slower
    keep_freed_memory()  # views come from the heap, not page-faulted in anew by every call
    entropy, yielded, empty = secrets.randbits(64), False, None  # fresh entropy: new views every epoch
    for batch in _call_batches(table, call_rows):
        keep = (batch["error"] == "") & ~held_out(batch["key"], holdout)
        rows = {name: batch[name] if keep.all() else batch[name][keep] for name in ("image", "label")}
        if not keep.any():
            empty = rows
            continue
        seed = batch_seed(train_seed, int(batch["key"][0]), entropy)
        yield augment_batch(rows, recipe, colour_on_device, seed)
        yielded = True
    if not yielded:  # a task without a good row: one empty block with the views' columns
        yield augment_batch(empty, recipe, colour_on_device, seed=0)


def _call_batches(table: "pa.Table", call_rows: int) -> Iterator[dict[str, np.ndarray]]:
    """``table``'s rows ``call_rows`` at a time as NumPy columns (at least one, maybe empty
    batch); views into the table where a call lies within one of its chunks, else a copy."""
    from ray.data.block import BlockAccessor  # Ray Data's tensor columns to NumPy

    table = table.select(["image", "label", "key", "error"])
    for start in range(0, max(1, table.num_rows), call_rows):
        yield BlockAccessor.for_block(table.slice(start, call_rows)).to_batch_format("numpy")


def augmented_rows(
    corpus: "Corpus", config: "ExperimentConfig", rows: int | None = None, fn: Callable = _train_rows
) -> "ray.data.Dataset":
    """``corpus``'s training rows augmented anew each epoch, ``rows`` images per task (default
    ``corpus_rows_per_task``; ``bench/augment.py`` compares it with one call per task), by
    ``fn`` (``_train_rows``; the bench wraps it to time the calls).

    Each call's views leave the task as a block of their own: the dataset's
    ``target_max_block_size`` is set to ``call_block_bytes`` (the context is shared with the
    corpus' other datasets; the value depends only on ``config``).
    """
    recipe, call_rows = recipe_from_config(config), task_rows(config)
    kwargs = {"recipe": recipe, "colour_on_device": config.augment.colour_on_device,
              "train_seed": config.train.seed, "holdout": corpus.holdout, "call_rows": call_rows}  # fmt: skip
    rows = corpus_rows_per_task(corpus, config) if rows is None else rows
    train = corpus.train.map_batches(fn, fn_kwargs=kwargs, batch_size=rows, batch_format="pyarrow",
                                     **corpus.tasks)  # fmt: skip
    train.context.target_max_block_size = call_block_bytes(recipe, config.data.channels, call_rows)
    return train


def call_block_bytes(recipe: ViewRecipe, channels: int, call_rows: int) -> int:
    """Ray Data's ``target_max_block_size`` for the augmentation: 4/5 of one call's views.

    Ray Data buffers a task's output until it exceeds the target, then concatenates the buffered
    batches into one block (a copy) and slices blocks of 1.5x the target or more. Below one
    call's views and above 2/3 of them, every call (also one with up to a fifth of its rows
    dropped) is a block of its own: no concatenation, no slicing. Measured (224 px, 2 views, 1-CPU
    Ray, paired with the plain loop): tasks of four 256-row calls with the default 128 MB target
    concatenated pairs of calls (154 MB blocks, ~20 ms each).
    """
    view_bytes = sum(channels * size * size for size in recipe.sizes)
    return max(1, call_rows * view_bytes * 4 // 5)


def corpus_rows_per_task(corpus: "Corpus", config: "ExperimentConfig") -> int:
    """``rows_per_task`` for all of ``corpus``'s rows and its concurrent augmentation tasks."""
    return rows_per_task(config, corpus.report.total, corpus.tasks["compute"].size)


def build_datasets(config: "ExperimentConfig") -> Datasets:
    """Read, decode and resize once (materialised), check bad files, then the per-epoch augmentation.

    Raises:
        ValueError: more than ``data.max_bad_fraction`` of the corpus is bad (names examples).
        FileNotFoundError: a missing corpus (for Fashion-MNIST: how to install it).
    """
    if config.data.source == "video_folder":
        from pipelines.video_data import build_video_datasets  # CVRL clip pairs

        return build_video_datasets(config)
    from pipelines.corpus import eval_sets, read_corpus  # Ray Data; here so validation stays Ray-free

    corpus = read_corpus(config)
    train = augmented_rows(corpus, config)
    eval_train, eval_test = eval_sets(corpus, config)
    return Datasets(train, eval_train, eval_test, corpus.report, corpus.num_train_rows)


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
