"""An image folder on a local Ray, streamed and decoded once: a class-sorted folder gives batches
with the class mix of iid sampling, every epoch in a new order, the same order again for the same
epoch (resume)."""

import numpy as np
import pytest
import ray
from PIL import Image

from cl_core.datasets import load_fashion_mnist
from pipelines.config import load_config
from pipelines.data.build import build_datasets
from pipelines.data.epochs import set_epoch

PER_CLASS, CLASSES, BATCH = 256, 10, 256


@pytest.fixture(scope="module")
def sorted_folder(tmp_path_factory):
    """Fashion-MNIST PNGs as users lay out a labelled corpus: ``root/<class>/<n>.png``, read in
    sorted path order (class by class)."""
    root = tmp_path_factory.mktemp("sorted")
    images, labels = load_fashion_mnist("train", limit=6000)
    for c in range(CLASSES):
        (root / f"class_{c:02d}").mkdir()
        for i, pixels in enumerate(images[labels == c][:PER_CLASS]):
            Image.fromarray(pixels).save(root / f"class_{c:02d}" / f"{i:04d}.png")
    return root


def _labels(datasets, epoch: int) -> np.ndarray:
    set_epoch(datasets.clock, epoch)  # what each Train worker does before it iterates
    return np.concatenate([b["label"] for b in datasets.train.iter_batches(batch_size=None)])


def _iid_majority_shares(label_counts: np.ndarray, size: int, trials: int = 4000) -> np.ndarray:
    """Majority-class share of ``trials`` batches of ``size`` drawn without replacement."""
    rng, pool = np.random.default_rng(0), np.repeat(np.arange(len(label_counts)), label_counts)
    return np.array([np.bincount(rng.choice(pool, size, replace=False)).max() / size for _ in range(trials)])


@pytest.mark.parametrize("cache", ["none", "memory", "disk"])  # streamed; decoded once to the store, to disk
def test_sorted_folder__batches_mix_classes_as_iid_and_epochs_reorder(
    ray_local, sorted_folder, cache, tmp_path
):
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # compare orders, not task completion times
    try:
        config = load_config(
            values={
                "data": {
                    "source": "image_folder",
                    "path": str(sorted_folder),
                    "holdout_fraction": 0.1,
                    "cache": cache,
                    "cache_dir": str(tmp_path / "cache"),
                },
                "eval": {"train_size": 200, "test_size": 100},
            }
        )
        datasets = build_datasets(config)
        first, first_again, second = _labels(datasets, 0), _labels(datasets, 0), _labels(datasets, 1)
    finally:
        context.execution_options.preserve_order = False
    n = datasets.num_train_rows
    assert 0.85 * PER_CLASS * CLASSES < n < PER_CLASS * CLASSES and len(first) == n  # held-out files stay out
    assert sorted(first) == sorted(second)  # every training file once per epoch
    assert np.array_equal(first, first_again)  # same (seed, epoch): the same order (a resume)
    assert (first != second).mean() > 0.8  # a new order each epoch

    iid = _iid_majority_shares(np.bincount(first), BATCH)
    for labels in (first, second):
        shares = [np.bincount(labels[i : i + BATCH]).max() / BATCH for i in range(0, n - BATCH + 1, BATCH)]
        assert max(shares) <= np.quantile(iid, 0.999), shares  # sorted order: a share of ~1.0
        assert abs(np.mean(shares) - iid.mean()) < 4 * iid.std() / np.sqrt(len(shares)) + 0.01, shares
    assert np.bincount(np.concatenate([b["label"] for b in datasets.eval_train.iter_batches()])).size == 10


def test_disk_cache__a_second_run_reuses_the_files_and_reads_the_same_order(
    ray_local, sorted_folder, tmp_path, caplog
):
    data = {"source": "image_folder", "path": str(sorted_folder), "cache": "disk", "cache_dir": str(tmp_path)}
    config = load_config(values={"data": data, "eval": {"train_size": 100, "test_size": 50}})
    first = build_datasets(config)
    (folder,) = tmp_path.iterdir()
    written = (folder / "meta.json").stat().st_mtime_ns
    assert (folder / "train.npy").stat().st_size > first.num_train_rows * 28 * 28  # decoded squares
    with caplog.at_level("WARNING", logger="pipelines.data.disk_cache"):
        second = build_datasets(config)
    assert "reusing" in caplog.text and (folder / "meta.json").stat().st_mtime_ns == written
    assert second.num_train_rows == first.num_train_rows and second.report.total == PER_CLASS * CLASSES
    assert sorted(_labels(first, 3)) == sorted(_labels(second, 3))
