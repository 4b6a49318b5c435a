"""Streamed image corpora: every epoch reads the files (or tar shards) in a fresh order, decodes and
augments them on the CPU tier; nothing of the corpus is kept but its listing.

    datasets = build_streamed(config)   # train: lazy view_i, label rows; kNN sets decoded once

One read task = ``files_per_task`` consecutive positions of the epoch's permutation of the
training files, or one tar shard at its permuted position (its samples shuffled, held-out ones
dropped), keyed by (``train.seed``, epoch) (``cl_core.datasets.permutation``; the epoch comes
from ``pipelines.data.epochs``). Each image is decoded with its shorter side at most
``decode_side`` (JPEG draft mode first) and every view is a random resized crop of the whole
image (``augment_images``). Memory is the blocks in flight, whatever the corpus' size; time to
the first step is one task. Local paths and ``s3://`` (any pyarrow filesystem URI) alike.
"""

import logging
import math
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray
import ray.data
import torch

from cl_core.datasets.decode import BadImageError, decode_batch, decode_shrunk, fingerprint, held_out
from cl_core.datasets.permutation import epoch_key, permute
from cl_core.transforms import ViewRecipe
from cl_core.transforms.stages import augment_images
from pipelines import storage
from pipelines.config import ExperimentConfig, recipe_from_config
from pipelines.data import readers, shards
from pipelines.data.corpus import census, eval_set, task_resources
from pipelines.data.datasets import Datasets
from pipelines.data.epochs import current_epoch, start_clock
from pipelines.data.images import batch_seed
from pipelines.data.malloc import keep_freed_memory
from pipelines.data.readers import IMAGE_EXTENSIONS, list_image_folder
from pipelines.data.report import CorpusReport, check_corpus

LOG = logging.getLogger(__name__)
MAX_FILES_PER_TASK = 256  # ~2-4 s of decoding + cropping at 224 px: Ray's per-task cost stays small
TASKS_PER_SLOT = 4  # at least this many tasks per concurrent task slot and epoch (small corpora)
_LISTINGS: dict[str, pa.Table] = {}  # per worker process: the listing, fetched once


def decode_side(config: ExperimentConfig, recipe: ViewRecipe) -> int:
    """The shorter side images are decoded to: enough that the smallest crop of every view keeps
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


def fetch(path: str) -> bytes:
    """A file's bytes, local or on object storage."""
    return storage.read_bytes(path) if storage.is_uri(path) else Path(path).read_bytes()


def _decoded(named: list[tuple[str, bytes | None]], channels: int, side: int) -> tuple[list, np.ndarray]:
    """Decoded images of (name, bytes or None: fetch the name) and a bool mask of the good ones;
    bad ones are logged and skipped."""
    images, good = [], np.zeros(len(named), dtype=bool)
    for i, (name, data) in enumerate(named):
        try:
            images.append(decode_shrunk(fetch(name) if data is None else data, channels, side))
            good[i] = True
        except (BadImageError, OSError) as exc:
            LOG.warning("skipped %s: %s", name, exc)
    return images, good


def _shard_samples(uri: str, holdout: float, rng: np.random.Generator) -> list[tuple[str, bytes, int]]:
    """A shard's training samples (held-out keys dropped) in a random order."""
    samples = shards.read_samples(fetch(uri))
    keys = np.array([fingerprint(key) for key, _, _ in samples], dtype=np.int64)
    keep = np.flatnonzero(~held_out(keys, holdout))
    return [samples[i] for i in rng.permutation(keep)]


def _epoch_task(
    batch: dict[str, np.ndarray], listing: ray.ObjectRef, per_task: int, clock: str, kind: str, options: dict
) -> Iterator[dict[str, np.ndarray]]:
    """The map_batches UDF of one read task (its one row: the task's index): this epoch's files or
    shard, decoded and augmented, in blocks of at most ``MAX_FILES_PER_TASK`` images."""
    torch.set_num_threads(1)  # concurrent tasks: OpenMP threads would oversubscribe the cores
    keep_freed_memory()
    task, epoch, seed = int(batch["id"][0]), current_epoch(clock), options["train_seed"]
    table = epoch_files(_listing(listing), task, per_task, seed, epoch)
    if kind == "files":
        named = [(path, None) for path in table.column("path").to_pylist()]
        labels = table.column("label").to_numpy()
    else:  # one tar shard
        rng = np.random.default_rng(epoch_key(seed, epoch) ^ task)
        samples = _shard_samples(table.column("path")[0].as_py(), options["holdout"], rng)
        named, labels = [(key, data) for key, data, _ in samples], np.array([s[2] for s in samples], np.int64)
    for start in range(0, max(1, len(named)), MAX_FILES_PER_TASK):
        chunk = slice(start, start + MAX_FILES_PER_TASK)
        images, good = _decoded(named[chunk], options["channels"], options["side"])
        views_seed = batch_seed(seed, epoch_key(epoch, task) + start, secrets.randbits(64))  # fresh views
        yield augment_images(
            images, labels[chunk][good], options["recipe"], options["colour_on_device"], views_seed
        )


def streamed_rows(
    listing: pa.Table, config: ExperimentConfig, clock: str, tasks: dict[str, object], kind: str = "files"
) -> ray.data.Dataset:
    """The training stream over ``listing`` (``path``, ``label`` of files, or ``path`` of tar shards
    with ``kind="shards"``): view rows in a fresh order every epoch."""
    recipe, n = recipe_from_config(config), listing.num_rows
    per_task = files_per_task(n, tasks["compute"].size) if kind == "files" else 1
    options = {
        "recipe": recipe,
        "colour_on_device": config.augment.colour_on_device,
        "train_seed": config.train.seed,
        "channels": config.data.channels,
        "side": decode_side(config, recipe),
        "holdout": config.data.holdout_fraction,
    }
    kwargs = {
        "listing": ray.put(listing),
        "per_task": per_task,
        "clock": clock,
        "kind": kind,
        "options": options,
    }
    num_tasks = math.ceil(n / per_task)
    index = readers.task_index(num_tasks)  # one row (one block) per read task
    return index.map_batches(_epoch_task, fn_kwargs=kwargs, batch_size=1, **tasks)


def _decode_sample(batch: dict[str, np.ndarray], size: int, channels: int) -> dict[str, np.ndarray]:
    """``decode_batch`` of sample rows (``path``, ``key``, ``label``, maybe ``bytes``), fetching
    the bytes of local or remote files first."""
    if "bytes" not in batch:
        batch = batch | {"bytes": np.array([fetch(str(p)) for p in batch["path"]], dtype=object)}
    return decode_batch(batch, size, channels)


def _subset(listing: pa.Table, size: int, seed: int) -> pa.Table:
    """``size`` rows of ``listing`` drawn without replacement, the same for every run with ``seed``
    (a fixed permutation: a class-sorted folder still gives every class)."""
    n = listing.num_rows
    if n == 0:
        return listing
    return listing.take(pa.array(permute(np.arange(min(size, n)), n, epoch_key(seed, -1))))


def folder_listing(config: ExperimentConfig) -> tuple[pa.Table, pa.Table, pa.Table, bool]:
    """(listing, training files, held-out files, labelled) of an image folder, local or URI."""
    data = config.data
    if storage.is_uri(data.path):
        files = [p for p, _ in storage.list_tree(data.path) if p.lower().endswith(IMAGE_EXTENSIONS)]
        base = data.path.rstrip("/") + "/"
        rel = [p[len(base) :] for p in files]
        nested = data.folder_labels and bool(rel) and all("/" in r for r in rel)
        classes = sorted({r.split("/", 1)[0] for r in rel}) if nested else []
        labels = np.array([classes.index(r.split("/", 1)[0]) if nested else -1 for r in rel], np.int64)
        paths, keys = files, np.array([fingerprint(r) for r in rel], dtype=np.int64)
        if not paths:
            raise ValueError(f"no images ({' '.join(IMAGE_EXTENSIONS)}, any case) found under {data.path}")
    else:
        started = time.monotonic()
        found = list_image_folder(data.path, labels=data.folder_labels)
        LOG.warning("listed %s: %d images in %.1f s", data.path, len(found.paths), time.monotonic() - started)
        paths, labels = found.paths, found.labels
        root = Path(data.path).expanduser().resolve()
        keys = np.array([fingerprint(str(Path(p).relative_to(root))) for p in paths], dtype=np.int64)
    paths, labels, keys = paths[: data.limit], labels[: data.limit], keys[: data.limit]
    labelled = bool(len(labels)) and bool((labels >= 0).all())
    held = held_out(keys, data.holdout_fraction if labelled else 0.0)
    listing = pa.table({"path": paths, "key": keys, "label": labels})
    return listing, listing.filter(pa.array(~held)), listing.filter(pa.array(held)), labelled


def _shard_sample(config: ExperimentConfig, uris: list[str], sizes: tuple[int, int]) -> tuple[pa.Table, bool]:
    """Samples of the first shards in a fixed random order: up to ``sizes[0]`` training and
    ``sizes[1]`` held-out ones (``bytes``, ``path``, ``key``, ``label``), and whether labelled."""
    rows: dict[str, list] = {"bytes": [], "path": [], "key": [], "label": []}
    order, want = permute(np.arange(len(uris)), len(uris), epoch_key(config.train.seed, -1)), list(sizes)
    for i in order:
        for key, data, label in shards.read_samples(fetch(uris[i])):
            side = int(held_out(np.array([fingerprint(key)]), config.data.holdout_fraction)[0])
            if want[side] > 0:
                want[side] -= 1
                for name, value in zip(rows, (data, f"{uris[i]}#{key}", fingerprint(key), label)):
                    rows[name].append(value)
        if max(want) <= 0:
            break
    schema = pa.schema(
        [("bytes", pa.binary()), ("path", pa.string()), ("key", pa.int64()), ("label", pa.int64())]
    )
    table = pa.table(rows, schema=schema)
    return table, table.num_rows > 0 and bool((table.column("label").to_numpy() >= 0).all())


def build_streamed(config: ExperimentConfig) -> Datasets:
    """An image folder or tar shards streamed every epoch; the kNN monitor's bank and queries are
    random subsets (``eval.train_size`` training and ``eval.test_size`` held-out images, decoded
    once), and their decoding is the up-front check of bad files (a sample of the corpus).

    Raises:
        ValueError: more than ``data.max_bad_fraction`` of the sampled images are bad.
        FileNotFoundError: no folder, or no ``shards.json`` beside tar shards.
    """
    data, sizes, tasks = config.data, (config.eval.train_size, config.eval.test_size), task_resources(config)
    if data.source == "tar_shards":
        uris, counts, _ = shards.load_index(data.path)
        if data.limit is not None:  # whole shards, up to data.limit images
            keep = max(1, int(np.searchsorted(np.cumsum(counts), data.limit, side="right")))
            uris, counts = uris[:keep], counts[:keep]
        sample, labelled = _shard_sample(config, uris, sizes)
        total, kind = sum(counts), "shards"
        listing = pa.table({"path": uris, "label": np.full(len(uris), -1, np.int64)})
        num_train = round(total * (1 - (data.holdout_fraction if labelled else 0.0)))
    else:
        files, train, test, labelled = folder_listing(config)
        sample = pa.concat_tables(
            [_subset(train, sizes[0], config.train.seed), _subset(test, sizes[1], config.train.seed)]
        )
        total, kind, listing, num_train = (
            files.num_rows,
            "files",
            train.select(["path", "label"]),
            train.num_rows,
        )
    LOG.info(
        "%s: %d images in %d %s, streamed in a fresh order every epoch",
        data.path,
        total,
        listing.num_rows,
        kind,
    )
    raw = readers.from_columns(sample.to_pydict(), readers.block_rows("image_folder"))
    decoded = raw.map_batches(
        _decode_sample, fn_kwargs={"size": data.image_size, "channels": data.channels}, **tasks
    )
    decoded = decoded.materialize()
    sampled, _, _ = census(decoded)
    check_corpus(sampled, data.max_bad_fraction, f"a sample of {data.path}")
    # the corpus' size, and the bad files found so far (in the sample; tasks log the others)
    report = CorpusReport(total=total, bad=sampled.bad, bad_examples=sampled.bad_examples)
    eval_train = eval_test = None
    if labelled:
        eval_train = eval_set(decoded, False, data.holdout_fraction, sizes[0], tasks)
        eval_test = eval_set(decoded, True, data.holdout_fraction, sizes[1], tasks)
        eval_train, eval_test = (eval_train, eval_test) if eval_test.count() else (None, None)
    clock, handle = start_clock()
    rows = streamed_rows(listing, config, clock, tasks, kind)
    return Datasets(rows, eval_train, eval_test, report, num_train, clock, handle)
