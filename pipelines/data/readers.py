"""Corpus readers: an image folder, Parquet with encoded images, Fashion-MNIST's IDX files.

Each returns a Ray Dataset of raw rows for ``decode.decode_batch``: ``label`` (int64, -1 when
unlabelled) plus ``path`` + ``key`` (folder files), ``bytes`` + ``path`` (Parquet; the key is
the bytes' fingerprint) or ``pixels`` + ``key`` (arrays). Nothing is decoded here.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray.data
from ray.data.extensions import ArrowTensorArray

from cl_core.datasets import FASHION_MNIST_DIR, load_fashion_mnist
from cl_core.datasets.decode import fingerprint
from pipelines.config import DataConfig

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
LISTING_THREADS = 16
#: Raw rows per block of the readers; decoding keeps the blocks (one decode call per block), so
#: the decoded corpus has blocks of these sizes too, each one contiguous Arrow chunk. File rows
#: cost ~1-5 ms each to decode, array rows ~10 us. 256 files: one 224 px augmentation call
#: (``pipelines.data.images.call_rows``) reads one decoded block in place.
FILE_ROWS_PER_BLOCK = 256
ARRAY_ROWS_PER_BLOCK = 4096
_ROWS_PER_BLOCK = {"image_folder": FILE_ROWS_PER_BLOCK, "fashion_mnist": ARRAY_ROWS_PER_BLOCK}


def block_rows(source: str) -> int | None:
    """Rows per decoded block of a ``data.source``; None where the files decide (Parquet)."""
    return _ROWS_PER_BLOCK.get(source)


@dataclass(frozen=True)
class ImageListing:
    """The images of a folder, sorted by path.

    Attributes:
        paths: absolute file paths.
        labels: (n,) int64 class of each file (index into ``classes``), -1 when unlabelled.
        classes: sorted first-level sub-folder names; empty when unlabelled.
    """

    paths: list[str]
    labels: np.ndarray
    classes: tuple[str, ...]


def _walk_images(folder: str) -> list[Path]:
    """Image files under ``folder``, recursively, symlinks followed, hidden entries skipped."""
    paths = []
    for where, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        paths += [
            Path(where, f) for f in files if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
        ]
    return paths


def list_image_folder(root: str | Path, labels: bool = True) -> ImageListing:
    """All images under ``root``, recursively (extensions case-insensitive, hidden entries skipped),
    the first-level sub-folders listed in parallel threads (network file systems answer each
    directory read with a round trip).

    Labels come from the first sub-folder level (``root/<class>/.../x.jpg``), classes sorted by
    name -> 0, 1, ...; if ``labels`` is False or any image lies directly in ``root``, all are -1.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no image under ``root``.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    top = [e for e in os.scandir(root) if not e.name.startswith(".")]
    paths = [Path(e.path) for e in top if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)]
    folders = [e.path for e in top if e.is_dir()]
    with ThreadPoolExecutor(max_workers=max(1, min(LISTING_THREADS, len(folders)))) as pool:
        for found in pool.map(_walk_images, folders):  # a first-level folder (class) per thread
            paths += found
    if not paths:
        raise ValueError(f"no images ({' '.join(IMAGE_EXTENSIONS)}, any case) found under {root}")
    paths.sort()
    parts = [p.relative_to(root).parts for p in paths]
    if not labels or any(len(part) < 2 for part in parts):
        return ImageListing([str(p) for p in paths], np.full(len(paths), -1, dtype=np.int64), ())
    classes = tuple(sorted({part[0] for part in parts}))
    index = {name: i for i, name in enumerate(classes)}
    labelled = np.array([index[part[0]] for part in parts], dtype=np.int64)
    return ImageListing([str(p) for p in paths], labelled, classes)


def task_index(num_tasks: int) -> ray.data.Dataset:
    """Rows ``id`` 0 .. num_tasks - 1, one block each: the input of per-epoch tasks that compute
    their own rows. Built from the driver's memory, so no read task: ``ray.data.range``'s read
    tasks ask for a whole CPU each, which a cluster with a Train worker on one of two CPUs and a
    Tune trial beside it never has free (a sweep waited for ever)."""
    return from_columns({"id": np.arange(max(1, num_tasks), dtype=np.int64)}, 1)


def from_columns(columns: dict[str, object], rows_per_block: int) -> ray.data.Dataset:
    """A Dataset of the given columns in blocks of ``rows_per_block`` rows (decode parallelism)."""
    table = pa.table(columns)
    starts = range(0, max(table.num_rows, 1), rows_per_block)
    return ray.data.from_arrow([table.slice(start, rows_per_block) for start in starts])


def image_folder(data: DataConfig) -> ray.data.Dataset:
    """Raw rows ``path``, ``key`` (fingerprint of the path below the root), ``label`` of a folder."""
    listing = list_image_folder(data.path, labels=data.folder_labels)
    paths, labels = listing.paths[: data.limit], listing.labels[: data.limit]
    root = Path(data.path).resolve()
    keys = np.array([fingerprint(str(Path(p).relative_to(root))) for p in paths], dtype=np.int64)
    return from_columns({"path": paths, "key": keys, "label": labels}, block_rows("image_folder"))


def parquet(data: DataConfig, num_cpus: float, role: str | None = None) -> ray.data.Dataset:
    """Raw rows ``bytes`` (``data.image_column``), ``path`` (the file) and ``label``
    (``data.label_column``, when the files have it; nulls and absence mean unlabelled).

    Args:
        data: the data config.
        num_cpus: CPUs per read task.
        role: custom resource of the nodes that may read (one unit per task); None: any node.
    """
    remote = {"resources": {role: 1}} if role else {}
    ds = ray.data.read_parquet(data.path, include_paths=True, num_cpus=num_cpus, ray_remote_args=remote)
    names = ds.schema().names
    if data.image_column not in names:
        raise ValueError(f"{data.path}: no column {data.image_column!r} (data.image_column) in {names}")
    has_labels = data.label_column is not None and data.label_column in names
    keep = [data.image_column, "path"] + ([data.label_column] if has_labels else [])
    ds = ds.select_columns(keep).rename_columns({data.image_column: "bytes"})
    if data.limit is not None:
        ds = ds.limit(data.limit)
    if has_labels and data.label_column != "label":
        ds = ds.rename_columns({data.label_column: "label"})
    return ds


def arrays(pixels: np.ndarray, labels: np.ndarray) -> ray.data.Dataset:
    """Raw rows ``pixels`` (h, w[, c]) uint8, ``key`` (the row index) and ``label`` from arrays."""
    keys = np.arange(len(pixels), dtype=np.int64)
    columns = {"pixels": ArrowTensorArray.from_numpy(pixels), "key": keys, "label": labels}
    return from_columns(columns, block_rows("fashion_mnist"))


def fashion_mnist(data: DataConfig, test_size: int) -> tuple[ray.data.Dataset, ray.data.Dataset]:
    """Fashion-MNIST train (first ``data.limit``) and t10k (first ``test_size``) raw rows.

    Raises:
        FileNotFoundError: the IDX files are missing; the message says how to install them.
    """
    root = data.path or FASHION_MNIST_DIR
    train = load_fashion_mnist("train", root, limit=data.limit)
    test = load_fashion_mnist("test", root, limit=test_size)
    return arrays(*train), arrays(*test)
