"""Streamed image folders: every epoch reads the files in a fresh order, decodes and augments them
on the CPU tier; nothing of the corpus is kept but its listing (paths, keys, labels).

    rows = streamed_rows(listing, config, clock, tasks)   # a lazy Dataset of view_i, label

One task = ``files_per_task`` consecutive positions of the epoch's permutation of the training
files (``cl_core.datasets.permutation.permute`` keyed by (``train.seed``, epoch); the epoch from
``pipelines.data.epochs``). Each file is decoded with its shorter side at most ``decode_side``
(JPEG draft mode first) and every view is a random resized crop of the whole image
(``augment_images``). Memory is the blocks in flight, whatever the corpus' size; time to the
first step is one task's files.
"""

import logging
import math
import secrets
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray
import ray.data
import torch

from cl_core.datasets.decode import BadImageError, decode_shrunk, fingerprint, held_out
from cl_core.datasets.permutation import epoch_key, permute
from cl_core.transforms import ViewRecipe
from cl_core.transforms.stages import augment_images
from pipelines.config import ExperimentConfig, recipe_from_config
from pipelines.data import readers
from pipelines.data.corpus import census, decode_rows, eval_set, task_resources
from pipelines.data.datasets import Datasets
from pipelines.data.epochs import current_epoch, start_clock
from pipelines.data.images import batch_seed
from pipelines.data.malloc import keep_freed_memory
from pipelines.data.readers import block_rows, list_image_folder
from pipelines.data.report import CorpusReport, check_corpus

LOG = logging.getLogger(__name__)
MAX_FILES_PER_TASK = 256  # ~2-4 s of decoding + cropping at 224 px: Ray's per-task cost stays small
TASKS_PER_SLOT = 4  # at least this many tasks per concurrent task slot and epoch (small corpora)
_LISTINGS: dict[str, pa.Table] = {}  # per worker process: the listing, fetched once


def decode_side(config: ExperimentConfig, recipe: ViewRecipe) -> int:
    """The shorter side files are decoded to: enough that the smallest crop of every view keeps
    its output resolution (``size / sqrt(min_scale)``), at most ``data.max_side`` (default twice
    ``data.image_size``), at least ``data.image_size``."""
    need = max(math.ceil(p.size / math.sqrt(p.min_scale)) for p in recipe.views)
    cap = config.data.max_side or 2 * config.data.image_size
    return max(config.data.image_size, min(need, cap))


def files_per_task(num_files: int, slots: int) -> int:
    """Files per read task: ``MAX_FILES_PER_TASK``, fewer so a small corpus still gives
    ``TASKS_PER_SLOT`` tasks to each of ``slots`` concurrent task slots."""
    return max(1, min(MAX_FILES_PER_TASK, math.ceil(num_files / (TASKS_PER_SLOT * max(1, slots)))))


def _listing(ref: ray.ObjectRef) -> pa.Table:
    key = ref.hex()
    if key not in _LISTINGS:
        _LISTINGS.clear()  # one run's listing per process at a time
        _LISTINGS[key] = ray.get(ref)
    return _LISTINGS[key]


def epoch_files(listing: pa.Table, task: int, per_task: int, seed: int, epoch: int) -> pa.Table:
    """Rows of ``listing`` at positions ``[task * per_task, (task + 1) * per_task)`` of the epoch's
    permutation."""
    n = listing.num_rows
    positions = np.arange(task * per_task, min(n, (task + 1) * per_task))
    return listing.take(pa.array(permute(positions, n, epoch_key(seed, epoch))))


def _decode_all(paths: list[str], channels: int, side: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Decoded images and a (n,) bool mask of the good ones; bad files are logged and skipped."""
    images, good = [], np.zeros(len(paths), dtype=bool)
    for i, path in enumerate(paths):
        try:
            images.append(decode_shrunk(Path(path).read_bytes(), channels, side))
            good[i] = True
        except (BadImageError, OSError) as exc:
            LOG.warning("skipped %s: %s", path, exc)
    return images, good


def _epoch_task(
    batch: dict[str, np.ndarray],
    listing: ray.ObjectRef,
    per_task: int,
    clock: str,
    recipe: ViewRecipe,
    colour_on_device: bool,
    train_seed: int,
    channels: int,
    side: int,
) -> dict[str, np.ndarray]:
    """The map_batches UDF of one read task (one row: the task's index): its files of this epoch's
    order, decoded and augmented."""
    torch.set_num_threads(1)  # concurrent tasks: OpenMP threads would oversubscribe the cores
    keep_freed_memory()
    task, epoch = int(batch["id"][0]), current_epoch(clock)
    rows = epoch_files(_listing(listing), task, per_task, train_seed, epoch)
    images, good = _decode_all(rows.column("path").to_pylist(), channels, side)
    labels = rows.column("label").to_numpy()[good]
    seed = batch_seed(train_seed, epoch_key(epoch, task), secrets.randbits(64))  # fresh views per epoch
    return augment_images(images, labels, recipe, colour_on_device, seed)


def streamed_rows(
    listing: pa.Table, config: ExperimentConfig, clock: str, tasks: dict[str, object]
) -> ray.data.Dataset:
    """The training stream over ``listing``'s files (``path``, ``label``): view rows in a fresh
    file order every epoch, decoded and augmented by ``tasks``-sized Data tasks."""
    recipe, n = recipe_from_config(config), listing.num_rows
    per_task = files_per_task(n, tasks["compute"].size)
    num_tasks = math.ceil(n / per_task)
    kwargs = {
        "listing": ray.put(listing),  # Ray: one copy in the object store, read by every task
        "per_task": per_task,
        "clock": clock,
        "recipe": recipe,
        "colour_on_device": config.augment.colour_on_device,
        "train_seed": config.train.seed,
        "channels": config.data.channels,
        "side": decode_side(config, recipe),
    }
    index = ray.data.range(num_tasks, override_num_blocks=num_tasks)
    return index.map_batches(_epoch_task, fn_kwargs=kwargs, batch_size=1, **tasks)


def _subset(listing: pa.Table, size: int, seed: int) -> pa.Table:
    """``size`` rows of ``listing`` drawn without replacement, the same for every run with ``seed``
    (a fixed permutation: a class-sorted folder still gives every class)."""
    n = listing.num_rows
    if n == 0:
        return listing
    return listing.take(pa.array(permute(np.arange(min(size, n)), n, epoch_key(seed, -1))))


def build_streamed(config: ExperimentConfig) -> Datasets:
    """An image folder streamed every epoch; the kNN monitor's bank and queries are random subsets
    (decoded once, ``eval.train_size`` training files and ``eval.test_size`` held-out ones), and
    their decoding is the up-front check of bad files (a sample of the corpus).

    Raises:
        ValueError: more than ``data.max_bad_fraction`` of the sampled files are bad.
    """
    data = config.data
    found = list_image_folder(data.path, labels=data.folder_labels)
    paths, labels = found.paths[: data.limit], found.labels[: data.limit]
    root = Path(data.path).resolve()
    keys = np.array([fingerprint(str(Path(p).relative_to(root))) for p in paths], dtype=np.int64)
    labelled = bool(len(labels)) and bool((labels >= 0).all())
    held = held_out(keys, data.holdout_fraction if labelled else 0.0)
    listing = pa.table({"path": paths, "key": keys, "label": labels})
    train, test = listing.filter(pa.array(~held)), listing.filter(pa.array(held))
    tasks = task_resources(config)
    LOG.info(
        "%s: %d files (%d held out), streamed in a fresh order every epoch", root, len(paths), int(held.sum())
    )
    seed = config.train.seed
    bank_rows, query_rows = (
        _subset(train, config.eval.train_size, seed),
        _subset(test, config.eval.test_size, seed),
    )
    sample = pa.concat_tables([bank_rows, query_rows])
    decoded = decode_rows(readers.from_columns(sample.to_pydict(), block_rows("image_folder")), data, tasks)
    sampled, _, _ = census(decoded)
    report = CorpusReport(total=len(paths), bad=0, bad_examples=sampled.bad_examples)
    check_corpus(sampled, data.max_bad_fraction, f"a sample of {data.path}")
    eval_train = eval_test = None
    if labelled and test.num_rows:
        eval_train = eval_set(decoded, False, data.holdout_fraction, config.eval.train_size, tasks)
        eval_test = eval_set(decoded, True, data.holdout_fraction, config.eval.test_size, tasks)
    clock, handle = start_clock()
    rows = streamed_rows(train.select(["path", "label"]), config, clock, tasks)
    return Datasets(rows, eval_train, eval_test, report, train.num_rows, clock, handle)
