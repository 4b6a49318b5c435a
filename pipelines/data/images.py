"""The per-epoch image augmentation on Ray Data: calls and tasks sized to the decoded blocks.

Randomness: every augmentation call seeds a ``torch.Generator`` from (``train.seed``, the key of
its first row, fresh OS entropy per task), so epochs and batches draw different views and
samples of a batch draw their own parameters.
``augment_batch`` is deterministic given its seed; the pipeline is not bit-reproducible (fresh
entropy; Ray Data's batch boundaries are not fixed).
"""

import logging
import secrets
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import ray.data
import torch
from ray.data.block import BlockAccessor

from cl_core.datasets.decode import held_out
from cl_core.transforms import ViewRecipe
from cl_core.transforms.stages import augment_batch
from pipelines.config import ExperimentConfig, recipe_from_config
from pipelines.data.corpus import Corpus
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


def _train_rows(
    table: pa.Table,
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


def _call_batches(table: pa.Table, call_rows: int) -> Iterator[dict[str, np.ndarray]]:
    """``table``'s rows ``call_rows`` at a time as NumPy columns (at least one, maybe empty
    batch); views into the table where a call lies within one of its chunks, else a copy."""
    table = table.select(["image", "label", "key", "error"])
    for start in range(0, max(1, table.num_rows), call_rows):
        yield BlockAccessor.for_block(table.slice(start, call_rows)).to_batch_format("numpy")


def augmented_rows(
    corpus: Corpus, config: ExperimentConfig, rows: int | None = None, fn: Callable = _train_rows
) -> ray.data.Dataset:
    """``corpus``'s training rows augmented anew each epoch, ``rows`` images per task (default
    ``corpus_rows_per_task``; ``bench/augment.py`` compares it with one call per task), by
    ``fn`` (``_train_rows``; the bench wraps it to time the calls).

    Each call's views leave the task as a block of their own: the dataset's
    ``target_max_block_size`` is set to ``call_block_bytes`` (the context is shared with the
    corpus' other datasets; the value depends only on ``config``).
    """
    recipe, per_call = recipe_from_config(config), call_rows(config)
    kwargs = {
        "recipe": recipe,
        "colour_on_device": config.augment.colour_on_device,
        "train_seed": config.train.seed,
        "holdout": corpus.holdout,
        "call_rows": per_call,
    }
    rows = corpus_rows_per_task(corpus, config) if rows is None else rows
    train = corpus.train.map_batches(
        fn, fn_kwargs=kwargs, batch_size=rows, batch_format="pyarrow", **corpus.tasks
    )
    train.context.target_max_block_size = call_block_bytes(recipe, config.data.channels, per_call)
    return train


def call_block_bytes(recipe: ViewRecipe, channels: int, call_rows: int) -> int:
    """Ray Data's ``target_max_block_size`` for the augmentation: 4/5 of one call's views.

    Ray Data buffers a task's output until it exceeds the target, then concatenates the buffered
    batches into one block (a copy) and slices blocks of 1.5x the target or more. Between 2/3 and
    one call's views, every call (also one with up to a fifth of its rows dropped) is a block of
    its own: no concatenation, no slicing.
    """
    view_bytes = sum(channels * size * size for size in recipe.sizes)
    return max(1, call_rows * view_bytes * 4 // 5)


def corpus_rows_per_task(corpus: Corpus, config: ExperimentConfig) -> int:
    """``rows_per_task`` for all of ``corpus``'s rows and its concurrent augmentation tasks."""
    return rows_per_task(config, corpus.report.total, corpus.tasks["compute"].size)
