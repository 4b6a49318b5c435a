"""build_datasets on a local Ray: a JPEG folder with corrupt files, Fashion-MNIST, Parquet."""

import io
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from cl_core.datasets import load_fashion_mnist
from cl_core.datasets.decode import decode_image
from cl_core.transforms.stages import device_views
from pipelines.config import load_config, normalization, recipe_from_config
from pipelines.data import corpus as corpus_module
from pipelines.data import readers as readers_module
from pipelines.data.build import build_datasets
from pipelines.data.corpus import read_corpus
from pipelines.data.images import rows_per_task

MODES = [
    ("rgb.jpg", "RGB", "JPEG"),
    ("gray.jpg", "L", "JPEG"),
    ("cmyk.jpeg", "CMYK", "JPEG"),
    ("alpha.png", "RGBA", "PNG"),
    ("palette.PNG", "P", "PNG"),
    ("x.webp", "RGB", "WEBP"),
]
BAD = {"cat/empty.jpg": "empty", "dog/truncated.jpg": "truncated", "cat/random.jpg": "not an image"}


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def sample_images(n: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """(file name, bytes) of smooth images in rotating modes: RGB/gray/CMYK JPEG, RGBA/P PNG, WebP."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((int(rng.integers(40, 90)), int(rng.integers(40, 90))))
        name, mode, fmt = MODES[i % len(MODES)]
        out.append((f"{i:02d}_{name}", encode(image.convert(mode), fmt)))
    return out


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory) -> Path:
    """cat/ and dog/ with 12 readable images each, plus a zero-byte, a truncated and a random file."""
    root = tmp_path_factory.mktemp("folder")
    for label, name in enumerate(("cat", "dog")):
        (root / name).mkdir()
        for file, data in sample_images(12, seed=label):
            (root / name / file).write_bytes(data)
    (root / "cat/empty.jpg").write_bytes(b"")
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    full = encode(noise, "JPEG")
    (root / "dog/truncated.jpg").write_bytes(full[: len(full) // 2])
    (root / "cat/random.jpg").write_bytes(np.random.default_rng(0).bytes(3000))
    return root


def rows(ds) -> dict[str, np.ndarray]:
    """One full pass over a dataset, columns concatenated."""
    batches = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def folder_config(root: Path, **data):
    values = {
        "data": {"source": "image_folder", "path": str(root), "image_size": 32, "channels": 3, **data},
        "augment": {"params": {"size": 24}},
        "eval": {"train_size": 100, "test_size": 100},
    }
    return load_config(values=values)


def test_build_datasets__cached_image_folder_skips_reports_and_splits(ray_local, jpeg_folder, caplog):
    config = folder_config(jpeg_folder, max_bad_fraction=0.2, holdout_fraction=0.25, cache="memory")
    with caplog.at_level(logging.WARNING, logger="pipelines.data.report"):
        datasets = build_datasets(config)
    report = datasets.report
    assert (report.total, report.bad) == (27, 3)
    assert report.as_metrics() == {"data/bad_files": 3, "data/total_files": 27}
    reasons = {str(Path(path).relative_to(jpeg_folder)): reason for path, reason in report.bad_examples}
    assert sorted(reasons) == sorted(BAD) and all(BAD[k] in reasons[k].lower() for k in BAD)
    assert all(name in caplog.text for name in BAD) and "3 of 27" in caplog.text

    train, again = rows(datasets.train), rows(datasets.train)
    test_rows, bank = rows(datasets.eval_test), rows(datasets.eval_train)
    n = datasets.num_train_rows
    assert 0 < len(test_rows["label"]) < 24 and n + len(test_rows["label"]) == 24 and len(bank["label"]) == n
    for view in ("view_0", "view_1"):
        assert train[view].shape == (n, 3, 24, 24) and train[view].dtype == np.uint8
    assert train["label"].dtype == np.int64 and sorted(train["label"]) == sorted(bank["label"])
    assert np.bincount(np.concatenate([train["label"], test_rows["label"]])).tolist() == [12, 12]
    assert not {v.tobytes() for v in train["view_0"]} & {v.tobytes() for v in again["view_0"]}  # new views

    good = [p for p in sorted(jpeg_folder.rglob("*.*")) if str(p.relative_to(jpeg_folder)) not in BAD]
    decoded = {decode_image(p.read_bytes(), 32, 3).tobytes() for p in good}
    eval_images = np.concatenate([bank["image"], test_rows["image"]])
    assert eval_images.shape == (24, 3, 32, 32) and {x.tobytes() for x in eval_images} == decoded


def test_build_datasets__too_many_bad_files_raise_naming_examples(ray_local, jpeg_folder):
    with pytest.raises(ValueError, match=r"3 of 27 images .* > data.max_bad_fraction=0.1") as error:
        build_datasets(folder_config(jpeg_folder, max_bad_fraction=0.1, cache="memory"))
    assert all(name in str(error.value) for name in BAD)


def test_read_corpus__decoded_blocks_keep_the_readers_blocks_in_one_chunk(
    ray_local, jpeg_folder, monkeypatch
):
    """call_rows aligns augmentation calls with the readers' block sizes and the calls read the
    blocks in place: decoding must keep the blocks and make each one contiguous."""
    monkeypatch.setitem(readers_module._ROWS_PER_BLOCK, "image_folder", 8)  # 27 files: blocks of 8, 8, 8, 3
    monkeypatch.setattr(corpus_module, "DECODE_BATCH_ROWS", 4)  # Parquet's: not used for folders
    corpus = read_corpus(folder_config(jpeg_folder, max_bad_fraction=0.2, cache="memory"))
    blocks = list(corpus.train.iter_batches(batch_size=None, batch_format="pyarrow"))
    assert sorted(block.num_rows for block in blocks) == [3, 8, 8, 8]
    assert {block.column("image").num_chunks for block in blocks} == {1}


def test_build_datasets__fashion_mnist_counts_splits_and_device_views(ray_local):
    augment = {"colour_on_device": False, "batch_rows": 32}
    config = load_config(
        values={"data": {"limit": 600}, "augment": augment, "eval": {"train_size": 200, "test_size": 100}}
    )
    assert rows_per_task(config, 600, slots=1) == 128  # one slot: tasks of 4 augmentation calls
    datasets = build_datasets(config)
    assert (datasets.num_train_rows, datasets.report.total, datasets.report.bad) == (600, 600, 0)
    blocks = [len(b["label"]) for b in datasets.train.iter_batches(batch_size=None)]
    assert sorted(blocks) == [24] + [32] * 18  # each augmentation call's views are a block of their own
    train = rows(datasets.train)
    assert train["view_0"].shape == (600, 1, 28, 28) and train["view_1"].dtype == np.uint8
    images, labels = load_fashion_mnist("train", limit=600)
    assert np.bincount(train["label"], minlength=10).tolist() == np.bincount(labels, minlength=10).tolist()
    test_images, test_labels = load_fashion_mnist("test", limit=100)
    test_rows, bank = rows(datasets.eval_test), rows(datasets.eval_train)
    assert len(bank["label"]) == 200 and bank["image"].shape[1:] == (1, 28, 28)
    assert {x.tobytes() for x in test_rows["image"][:, 0]} == {x.tobytes() for x in test_images}
    assert sorted(test_rows["label"]) == sorted(test_labels)

    recipe, (mean, std) = recipe_from_config(config), normalization(config)
    batch = next(iter(datasets.train.iter_torch_batches(batch_size=32)))
    views, batch_labels = device_views(batch, recipe, False, mean, std, torch.Generator().manual_seed(0))
    assert [v.shape for v in views] == [(32, 1, 28, 28)] * 2 and views[0].dtype == torch.float32
    assert batch_labels.dtype == torch.int64 and views[0].min() < -0.5 and views[0].max() > 1.5


def test_build_datasets__unlabelled_parquet_with_multicrop_views(ray_local, tmp_path):
    images = sample_images(10) + [("junk", b"not an image")]
    pq.write_table(pa.table({"jpeg": [data for _, data in images]}), tmp_path / "part.parquet")
    config = load_config(
        values={
            "method": {"name": "dino"},
            "data": {
                "source": "parquet",
                "path": str(tmp_path),
                "image_column": "jpeg",
                "image_size": 32,
                "channels": 3,
                "max_bad_fraction": 0.1,
            },
            "augment": {"recipe": "multicrop", "params": {"num_local": 2}},
        }
    )
    datasets = build_datasets(config)
    assert (datasets.report.total, datasets.report.bad, datasets.num_train_rows) == (11, 1, 10)
    assert datasets.report.bad_examples[0][0].endswith("part.parquet")
    assert datasets.eval_train is None and datasets.eval_test is None
    train = rows(datasets.train)
    assert [train[f"view_{i}"].shape for i in range(4)] == [(10, 3, 32, 32)] * 2 + [(10, 3, 14, 14)] * 2
    assert train["label"].tolist() == [-1] * 10


def test_training_stream__runs_with_less_than_one_cpu_free(ray_local):
    """Once the datasets are built, a 1-CPU Train worker and a Tune trial (0.01 CPU) leave 0.99 of
    2 CPUs: the per-epoch tasks (0.25 CPU) must run in it. ``ray.data.range``'s 1-CPU read tasks
    never did (a sweep hung)."""
    from concurrent.futures import ThreadPoolExecutor

    @ray_local.remote(num_cpus=1.01)
    class Hold:
        def ready(self) -> bool:
            return True

    config = load_config(values={"data": {"limit": 300}, "eval": {"train_size": 50, "test_size": 50}})
    datasets = build_datasets(config)
    holder = Hold.remote()  # what the Train worker and the trial take once the datasets exist
    try:
        ray_local.get(holder.ready.remote())
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(lambda: rows(datasets.train))
            try:
                labels = future.result(timeout=120)["label"]
            finally:
                ray_local.kill(holder)  # unblocks a hung stream, so the thread can end
        assert len(labels) == 300
    finally:
        ray_local.kill(holder)
