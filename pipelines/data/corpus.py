"""A corpus decoded once: every image decoded and resized, materialised, bad files accounted for.

Decoded rows keep a bad file as an all-zero image with its reason in ``error``; every later step
skips such rows. One pass over the small columns gives the report. Labelled folders and Parquet
hold out the rows with ``held_out(key)`` for the kNN monitor's test set (Fashion-MNIST: t10k).
"""

import logging
from dataclasses import dataclass

import numpy as np
import ray.data

from cl_core.datasets.decode import decode_batch, held_out
from pipelines.config import DataConfig, ExperimentConfig
from pipelines.data import readers
from pipelines.data.readers import block_rows
from pipelines.data.report import MAX_EXAMPLES, CorpusReport, check_corpus

LOG = logging.getLogger(__name__)
DECODE_BATCH_ROWS = 64  # where the files decide the blocks (Parquet): bounds a decode call's memory


@dataclass(frozen=True)
class Corpus:
    """A decoded corpus (materialised: decoded once, reused every epoch).

    Attributes:
        train: rows of ``decode_batch``: ``image`` (c, s, s) uint8, ``label``, ``key``,
            ``error`` ("" when fine), ``bad_path``.
        test: Fashion-MNIST's decoded t10k rows, None for other sources.
        report: bad-file accounting of ``train``.
        labelled: every good row has a label >= 0.
        holdout: fraction of ``train``'s keys held out (0 when unlabelled or ``test`` exists).
        num_train_rows: good rows not held out.
        num_held_out: good rows held out.
        tasks: ``map_batches`` resources of every step on this corpus (``task_resources``).
        keys: the good rows' keys (fingerprints of files and Parquet rows, indices of arrays).
    """

    train: ray.data.Dataset
    test: ray.data.Dataset | None
    report: CorpusReport
    labelled: bool
    holdout: float
    num_train_rows: int
    num_held_out: int
    tasks: dict[str, object]
    keys: np.ndarray  # (n,) int64 keys of the good rows


def task_resources(config: ExperimentConfig) -> dict[str, object]:
    """``num_cpus=augment.cpus_per_task`` (fractional: the tasks fit beside the Train workers) and
    at most as many concurrent tasks as the cluster has CPUs beyond the Train workers' (>= 1).
    With ``placement.data_resource``: one unit of it per task (tasks run only on the data tier)
    and as many concurrent tasks as the data tier's nodes have CPUs.

    Capped because uncapped fractional CPUs let more tasks than cores run, and worker processes
    beyond Ray's soft limit are killed when idle and re-spawned (importing torch) every epoch.
    """
    role = config.placement.data_resource
    if role is not None:
        nodes = [
            n["Resources"] for n in ray.nodes() if n["Alive"] and role in n["Resources"]
        ]  # Ray: the data tier
        spare, extra = int(sum(r.get("CPU", 0.0) for r in nodes)), {"resources": {role: 1}}
    else:
        cpus = ray.cluster_resources().get("CPU", 1.0)  # Ray: needs the cluster (Ray Data started it)
        spare, extra = int(cpus - config.scaling.num_workers * config.scaling.cpus_per_worker), {}
    return {
        "num_cpus": config.augment.cpus_per_task,
        "compute": ray.data.TaskPoolStrategy(max(1, spare)),
    } | extra


def decode_rows(raw: ray.data.Dataset, data: DataConfig, tasks: dict[str, object]) -> ray.data.Dataset:
    """Decoded and materialised; one decode call per raw block where the reader sets the blocks,
    so that each decoded block is one contiguous chunk (batches of it are views, not copies)."""
    kwargs = {"size": data.image_size, "channels": data.channels}
    rows = block_rows(data.source) or DECODE_BATCH_ROWS
    return raw.map_batches(decode_batch, fn_kwargs=kwargs, batch_size=rows, **tasks).materialize()


def census(decoded: ray.data.Dataset) -> tuple[CorpusReport, np.ndarray, bool]:
    """One pass over the small columns: the report, the good rows' keys, whether all are labelled."""
    report, keys, labelled = CorpusReport(total=0, bad=0), [], True
    for batch in decoded.select_columns(["key", "label", "error", "bad_path"]).iter_batches(batch_size=None):
        good = batch["error"] == ""
        report.total += len(good)
        report.bad += int((~good).sum())
        room = MAX_EXAMPLES - len(report.bad_examples)
        paths, reasons = batch["bad_path"][~good][:room], batch["error"][~good][:room]
        report.bad_examples += [(str(path), str(reason)) for path, reason in zip(paths, reasons)]
        keys.append(batch["key"][good])
        labelled = labelled and bool((batch["label"][good] >= 0).all())
    good_keys = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    return report, good_keys, labelled and len(good_keys) > 0


def read_corpus(config: ExperimentConfig) -> Corpus:
    """Read ``config.data``'s source, decode and resize every image once, account for bad files."""
    data, raw_test = config.data, None
    if data.source == "fashion_mnist":
        raw, raw_test = readers.fashion_mnist(data, config.eval.test_size)
    elif data.source == "image_folder":
        raw = readers.image_folder(data)
    elif data.source == "parquet":
        raw = readers.parquet(data, config.augment.cpus_per_task, config.placement.data_resource)
    else:
        raise ValueError(
            f"data.source {data.source!r} is only streamed (pipelines.data.stream), not decoded whole"
        )
    tasks = task_resources(config)  # after a reader: Ray Data has started Ray by now
    test = None if raw_test is None else decode_rows(raw_test, data, tasks)
    train = decode_rows(raw, data, tasks)
    report, keys, labelled = census(train)
    check_corpus(report, data.max_bad_fraction, data.path or data.source)
    holdout = data.holdout_fraction if labelled and test is None else 0.0
    n_held = int(held_out(keys, holdout).sum())
    return Corpus(train, test, report, labelled, holdout, len(keys) - n_held, n_held, tasks, keys)


def _eval_rows(
    batch: dict[str, np.ndarray], want_held_out: bool, holdout: float, max_key: int | None
) -> dict[str, np.ndarray]:
    """The good rows of one side of the held-out split with keys <= ``max_key``: ``image``
    (n, c, s, s), ``label`` (n,)."""
    keep = (batch["error"] == "") & (held_out(batch["key"], holdout) == want_held_out)
    if max_key is not None:
        keep &= batch["key"] <= max_key
    return {"image": batch["image"][keep], "label": batch["label"][keep].astype(np.int64)}


def smallest_keys_bound(keys: np.ndarray, size: int) -> int | None:
    """The ``size``-th smallest of ``keys`` (None when there are no more than ``size``): rows up to
    it are a fixed subset, uniformly random where keys are fingerprints (files, Parquet rows)
    and the first rows where keys are row indices (Fashion-MNIST)."""
    return None if len(keys) <= size else int(np.partition(keys, size - 1)[size - 1])


def eval_set(
    decoded: ray.data.Dataset, want_held_out: bool, holdout: float, size: int, tasks: dict, max_key=None
):
    kwargs = {"want_held_out": want_held_out, "holdout": holdout, "max_key": max_key}
    return decoded.map_batches(_eval_rows, fn_kwargs=kwargs, **tasks).limit(size).materialize()


def eval_sets(corpus: Corpus, config: ExperimentConfig) -> tuple[ray.data.Dataset | None, ...]:
    """The kNN monitor's (memory bank, queries), un-augmented and materialised, or (None, None).

    Memory bank: the ``eval.train_size`` training rows of smallest key; queries: as many
    held-out rows likewise (Fashion-MNIST: the first of t10k); a class-sorted folder gives every
    class to both. None without labels or when no row fell in the held-out split.
    """
    tasks = corpus.tasks
    if not corpus.labelled or (corpus.test is None and corpus.num_held_out == 0):
        if corpus.labelled:
            LOG.warning("no image fell in the held-out split (data.holdout_fraction): no kNN monitor")
        return None, None
    split = held_out(corpus.keys, corpus.holdout)
    bank_key = smallest_keys_bound(corpus.keys[~split], config.eval.train_size)
    bank = eval_set(corpus.train, False, corpus.holdout, config.eval.train_size, tasks, bank_key)
    if corpus.test is not None:
        return bank, eval_set(corpus.test, False, 0.0, config.eval.test_size, tasks)
    query_key = smallest_keys_bound(corpus.keys[split], config.eval.test_size)
    return bank, eval_set(corpus.train, True, corpus.holdout, config.eval.test_size, tasks, query_key)
