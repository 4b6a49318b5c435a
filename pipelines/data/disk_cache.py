"""``data.cache: disk``: an image folder decoded once into ``.npy`` files, reused by later runs.

    <data.cache_dir>/<digest>/train.npy, heldout.npy   uint8 (n, c, s, s), the first rows valid
                              *_labels.npy, *_keys.npy, meta.json (counts, bad files; written last)

For corpora whose decoded squares do not fit the object store but whose decoding is the cost:
decoding streams through Ray Data tasks and the driver writes each decoded block into the files
(memory: the blocks in flight); the training tasks map the file read-only and gather their rows
at the epoch's permutation, as the in-memory cache does. The digest covers the folder, its file
count and first/last files, and the decode settings, so a changed corpus or size decodes anew.
The folder must be visible to every node that runs data tasks (a local disk: one node).
"""

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
from ray.data.extensions import ArrowTensorArray

from cl_core.datasets.decode import decode_batch, fingerprint, held_out
from pipelines.config import ExperimentConfig
from pipelines.data import readers
from pipelines.data.corpus import smallest_keys_bound, task_resources
from pipelines.data.datasets import Datasets
from pipelines.data.epochs import start_clock
from pipelines.data.images import cached_rows
from pipelines.data.report import MAX_EXAMPLES, CorpusReport, check_corpus
from pipelines.home import output_home

LOG = logging.getLogger(__name__)
SIDES = ("train", "heldout")


def cache_folder(config: ExperimentConfig, paths: list[str]) -> Path:
    """``<data.cache_dir or <output home>/data-cache>/<digest of the corpus and decode settings>``."""
    data = config.data
    root = Path(data.cache_dir).expanduser() if data.cache_dir else output_home() / "data-cache"
    corpus = [str(Path(data.path).resolve()), len(paths), paths[0], paths[-1]]
    what = corpus + [data.image_size, data.channels, data.folder_labels, data.holdout_fraction]
    return root / hashlib.sha1(json.dumps(what).encode()).hexdigest()[:16]


def _write(folder: Path, raw, config: ExperimentConfig, n: int, tasks: dict) -> None:
    """Decode ``raw`` (streamed) into the cache files; ``meta.json`` last, so a half-written cache
    is never used."""
    data, shape = config.data, (n, config.data.channels, config.data.image_size, config.data.image_size)
    folder.mkdir(parents=True, exist_ok=True)
    images = {
        side: np.lib.format.open_memmap(folder / f"{side}.npy", "w+", np.uint8, shape) for side in SIDES
    }
    labels, keys = {side: [] for side in SIDES}, {side: [] for side in SIDES}
    report, started = CorpusReport(total=0, bad=0), time.monotonic()
    kwargs = {"size": data.image_size, "channels": data.channels}
    decoded = raw.map_batches(decode_batch, fn_kwargs=kwargs, **tasks)  # Ray Data: streamed, not kept
    for batch in decoded.iter_batches(batch_size=None):
        good = batch["error"] == ""
        report.total, report.bad = report.total + len(good), report.bad + int((~good).sum())
        room = MAX_EXAMPLES - len(report.bad_examples)
        report.bad_examples += list(zip(batch["bad_path"][~good][:room], batch["error"][~good][:room]))
        held = held_out(batch["key"], data.holdout_fraction)
        for side, pick in zip(SIDES, (good & ~held, good & held)):
            start = sum(len(x) for x in labels[side])
            images[side][start : start + int(pick.sum())] = batch["image"][pick]
            labels[side].append(batch["label"][pick].astype(np.int64))
            keys[side].append(batch["key"][pick].astype(np.int64))
        LOG.info(
            "data.cache disk: %d/%d images decoded (%.0f s)", report.total, n, time.monotonic() - started
        )
    counts = {}
    for side in SIDES:
        images[side].flush()
        counts[side] = sum(len(x) for x in labels[side])
        np.save(
            folder / f"{side}_labels.npy",
            np.concatenate(labels[side]) if labels[side] else np.zeros(0, np.int64),
        )
        np.save(
            folder / f"{side}_keys.npy", np.concatenate(keys[side]) if keys[side] else np.zeros(0, np.int64)
        )
    examples = [[str(path), str(reason)] for path, reason in report.bad_examples]
    meta = {"counts": counts, "report": {"total": report.total, "bad": report.bad, "bad_examples": examples}}
    (folder / "meta.json").write_text(json.dumps(meta))


def _eval_set(folder: Path, side: str, count: int, size: int):
    """The ``size`` rows of smallest key of one side, as a materialised ``image``/``label`` dataset."""
    keys = np.load(folder / f"{side}_keys.npy")
    bound = smallest_keys_bound(keys, size)
    rows = np.flatnonzero(keys <= bound)[:size] if bound is not None else np.arange(len(keys))
    images = np.load(folder / f"{side}.npy", mmap_mode="r")[:count][rows]
    labels = np.load(folder / f"{side}_labels.npy")[rows]
    columns = {"image": ArrowTensorArray.from_numpy(np.ascontiguousarray(images)), "label": labels}
    return readers.from_columns(columns, readers.block_rows("image_folder")).materialize()


def build_disk_cached(config: ExperimentConfig) -> Datasets:
    """An image folder decoded once to disk (or found there from an earlier run), then gathered in
    a fresh order every epoch.

    Raises:
        ValueError: more than ``data.max_bad_fraction`` of the corpus is bad (names examples).
    """
    data = config.data
    listing = readers.list_image_folder(data.path, labels=data.folder_labels)
    paths, labels = listing.paths[: data.limit], listing.labels[: data.limit]
    folder, tasks = cache_folder(config, paths), task_resources(config)
    if (folder / "meta.json").is_file():
        LOG.warning("data.cache disk: reusing %s", folder)
    else:
        LOG.warning("data.cache disk: decoding %d images into %s", len(paths), folder)
        root = Path(data.path).resolve()
        keys = np.array([fingerprint(str(Path(p).relative_to(root))) for p in paths], dtype=np.int64)
        raw = readers.from_columns(
            {"path": paths, "key": keys, "label": labels}, readers.block_rows("image_folder")
        )
        _write(folder, raw, config, len(paths), tasks)
    meta = json.loads((folder / "meta.json").read_text())
    report = CorpusReport(
        meta["report"]["total"], meta["report"]["bad"], [tuple(x) for x in meta["report"]["bad_examples"]]
    )
    check_corpus(report, data.max_bad_fraction, data.path)
    counts = meta["counts"]
    labelled = counts["train"] > 0 and bool((np.load(folder / "train_labels.npy") >= 0).all())
    eval_train = eval_test = None
    if labelled and counts["heldout"]:
        eval_train = _eval_set(folder, "train", counts["train"], config.eval.train_size)
        eval_test = _eval_set(folder, "heldout", counts["heldout"], config.eval.test_size)
    clock, handle = start_clock()
    train_labels = np.load(folder / "train_labels.npy")
    train = cached_rows((str(folder / "train.npy"), counts["train"]), train_labels, config, clock, tasks)
    return Datasets(train, eval_train, eval_test, report, counts["train"], clock, handle)
