"""Decoded-once image corpora (Fashion-MNIST, Parquet, ``data.cache: memory`` folders) on Ray Data:
the decoded training images live in the object store as one array, and every epoch each task
gathers its rows at the positions of the epoch's permutation (keyed by (``train.seed``, epoch), as
the streamed path) and augments them in calls of ``call_rows``.

    datasets = build_cached(config)   # train: view_i (c, s_i, s_i) uint8, label, index; kNN sets

Randomness: every augmentation call seeds a ``torch.Generator`` from (``train.seed``, epoch and
call, fresh OS entropy per task), so epochs and batches draw different views and samples of a
batch draw their own parameters. ``augment_batch`` is deterministic given its seed; the views are
not bit-reproducible (fresh entropy), the order of the rows is.
"""

import logging
import secrets
from collections.abc import Callable, Iterator

import numpy as np
import ray
import ray.data
import torch

from cl_core.datasets.decode import held_out
from cl_core.datasets.permutation import epoch_key, permute
from cl_core.transforms import ViewRecipe
from cl_core.transforms.stages import augment_batch
from pipelines.config import ExperimentConfig, recipe_from_config
from pipelines.data import readers
from pipelines.data.corpus import Corpus, eval_sets, read_corpus
from pipelines.data.datasets import Datasets
from pipelines.data.epochs import current_epoch, start_clock
from pipelines.data.malloc import keep_freed_memory
from pipelines.data.readers import block_rows

LOG = logging.getLogger(__name__)
TASKS_PER_SLOT = 4  # augmentation tasks per epoch per concurrent task slot: load balance vs per-task cost
CALL_INPUT_BYTES = 2**25  # decoded input of one augmentation call (fewer rows for small images)
MAX_TASK_INPUT_BYTES = 2**28  # of one augmentation task: 8 calls of 32 MB


def call_rows(config: ExperimentConfig) -> int:
    """Rows per augmentation call: ``augment.batch_rows``, else about 32 MB of uint8 input,
    64 to 4096 rows (>= ~100 ms of work per call), aligned with the decoded corpus' blocks.

    Aligned: the nearest multiple of the source's ``block_rows`` or, below one block, the largest
    divisor of a block within the 32 MB, so that a call reads one block in place (a call across
    blocks copies its input) and no remainder calls are left.
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


def _image_bytes(config: ExperimentConfig) -> int:
    return config.data.channels * config.data.image_size**2


def rows_per_task(config: ExperimentConfig, num_rows: int, slots: int) -> int:
    """Rows per augmentation task (one ``map_batches`` batch): a whole number of calls of
    ``call_rows``, about ``TASKS_PER_SLOT`` tasks per epoch for each of the ``slots`` concurrent
    tasks, at most ``MAX_TASK_INPUT_BYTES`` of input, at least one call.

    Why: a slot pays ~20-30 ms of Ray scheduling between tasks, so fewer, larger tasks pay; a
    task's calls read its blocks in place and leave as blocks of their own, so size costs no
    copies; the cap bounds the work a failed task redoes. A task below one decoded block divides
    it.
    """
    call = call_rows(config)
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


def call_block_bytes(recipe: ViewRecipe, channels: int, call_rows: int) -> int:
    """Ray Data's ``target_max_block_size`` for the augmentation: 4/5 of one call's views.

    Ray Data buffers a task's output until it exceeds the target, then concatenates the buffered
    batches into one block (a copy) and slices blocks of 1.5x the target or more. Between 2/3 and
    one call's views, every call (also one with up to a fifth of its rows dropped) is a block of
    its own: no concatenation, no slicing.
    """
    view_bytes = sum(channels * size * size for size in recipe.sizes)
    return max(1, call_rows * view_bytes * 4 // 5)


def cached_calls(
    images: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
    call: int,
    recipe: ViewRecipe,
    on_device: bool,
    seed: int,
) -> Iterator[dict[str, np.ndarray]]:
    """The views of ``images[rows]`` in that order (a copy: the gather), ``call`` rows per
    ``augment_batch`` call, each call one block.

    Args:
        images: (n, c, s, s) uint8 decoded corpus (read-only is fine).
        labels: (n,) int64.
        rows: this task's row indices (the epoch's permutation at its positions).
        call: rows per call.
        recipe: the views to make.
        on_device: ``augment.colour_on_device``.
        seed: mixed with each call's index into its generator's seed.
    """
    keep_freed_memory()  # views come from the heap, not page-faulted in anew by every call
    for start in range(0, len(rows), call):
        picked = rows[start : start + call]  # in the permutation's order: a call is a block, and
        batch = {"image": images[picked], "label": labels[picked], "index": picked}  # blocks make batches
        yield augment_batch(batch, recipe, on_device, batch_seed(seed, start, 0))


_MAPPED: dict[str, np.ndarray] = {}  # per worker process: disk caches, mapped once


def _array(spec) -> np.ndarray:
    """An object-store array (zero-copy on the node), or ``(path, rows)``: the first ``rows`` rows of
    an ``.npy`` file mapped read-only (``data.cache: disk``)."""
    if isinstance(spec, ray.ObjectRef):
        return ray.get(spec)  # Ray: zero-copy from the node's object store
    path, rows = spec
    if path not in _MAPPED:
        _MAPPED[path] = np.load(path, mmap_mode="r")
    return _MAPPED[path][:rows]


def _cached_task(
    batch: dict[str, np.ndarray], arrays: tuple, per_task: int, call: int, clock: str, options: dict
) -> Iterator[dict[str, np.ndarray]]:
    """The map_batches UDF of one task (its one row: the task's index)."""
    torch.set_num_threads(1)  # measured: OpenMP threads of concurrent tasks made make_views ~40x slower
    images, labels = (_array(spec) for spec in arrays)
    task, epoch, seed = int(batch["id"][0]), current_epoch(clock), options["train_seed"]
    n = len(labels)
    positions = np.arange(task * per_task, min(n, (task + 1) * per_task))
    rows = permute(positions, n, epoch_key(seed, epoch))
    call_seed = batch_seed(seed, epoch_key(epoch, task), secrets.randbits(64))  # fresh views per epoch
    yield from cached_calls(images, labels, rows, call, options["recipe"], options["on_device"], call_seed)


def cached_rows(
    images: np.ndarray | tuple[str, int],
    labels: np.ndarray,
    config: ExperimentConfig,
    clock: str,
    tasks: dict[str, object],
    rows: int | None = None,
    fn: Callable = _cached_task,
) -> ray.data.Dataset:
    """The training stream over decoded ``images`` (an array, put in the object store, or a disk
    cache's ``(path, rows)``): ``rows`` per task (default ``rows_per_task``;
    ``bench/augment.py`` compares it with one call per task), a fresh order every epoch, made by
    ``fn`` (``_cached_task``; the bench wraps it to time the calls).

    Each call's views leave the task as a block of their own: the dataset's
    ``target_max_block_size`` is ``call_block_bytes`` (the context is shared with the corpus'
    other datasets; the value depends only on ``config``).
    """
    recipe, call, n = recipe_from_config(config), call_rows(config), len(labels)
    per_task = rows_per_task(config, n, tasks["compute"].size) if rows is None else rows
    options = {
        "recipe": recipe,
        "on_device": config.augment.colour_on_device,
        "train_seed": config.train.seed,
    }
    stored = images if isinstance(images, tuple) else ray.put(images)  # Ray: one copy, read by every task
    arrays = (stored, ray.put(labels))
    kwargs = {"arrays": arrays, "per_task": per_task, "call": call, "clock": clock, "options": options}
    num_tasks = max(1, -(-n // per_task))
    index = readers.task_index(num_tasks)  # one row (one block) per task
    train = index.map_batches(fn, fn_kwargs=kwargs, batch_size=1, **tasks)
    train.context.target_max_block_size = call_block_bytes(recipe, config.data.channels, call)
    return train


def training_arrays(corpus: Corpus) -> tuple[np.ndarray, np.ndarray]:
    """The good, not held-out rows of a decoded corpus as (images (n, c, s, s), labels (n,))."""
    images, labels = [], []
    for batch in corpus.train.iter_batches(batch_size=None, batch_format="numpy"):
        keep = (batch["error"] == "") & ~held_out(batch["key"], corpus.holdout)
        images.append(batch["image"][keep])
        labels.append(batch["label"][keep].astype(np.int64))
    return np.concatenate(images), np.concatenate(labels)


def build_cached(config: ExperimentConfig) -> Datasets:
    """Read, decode and resize once, check bad files, build the kNN sets, then the per-epoch stream.

    Raises:
        ValueError: more than ``data.max_bad_fraction`` of the corpus is bad (names examples).
        FileNotFoundError: a missing corpus (for Fashion-MNIST: how to install it).
    """
    corpus = read_corpus(config)
    eval_train, eval_test = eval_sets(corpus, config)
    images, labels = training_arrays(corpus)
    clock, handle = start_clock()
    train = cached_rows(images, labels, config, clock, corpus.tasks)
    return Datasets(train, eval_train, eval_test, corpus.report, len(labels), clock, handle)
