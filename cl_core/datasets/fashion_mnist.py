"""Fashion-MNIST (Xiao et al., arXiv 1708.07747) from its original IDX files."""

from pathlib import Path

import numpy as np

from cl_core.datasets.idx import read_idx

#: Where Debian's ``dataset-fashion-mnist`` package puts the files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}[.gz] not found in {root}. Install it with "
        "`apt-get update && apt-get install -y dataset-fashion-mnist` (files land in "
        f"{FASHION_MNIST_DIR}), or pass the folder holding the original IDX files."
    )


def load_fashion_mnist(
    split: str = "train", root: str | Path = FASHION_MNIST_DIR, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load a split as uint8 images (n, 28, 28) and int64 labels (n,).

    Args:
        split: "train" (60,000) or "test" (10,000).
        root: folder with the IDX files (gzipped or not).
        limit: keep only the first ``limit`` samples.
    """
    if split not in _FILES:
        raise ValueError(f"split must be one of {sorted(_FILES)}, got {split!r}")
    root = Path(root)
    image_stem, label_stem = _FILES[split]
    images = read_idx(_find(root, image_stem))
    labels = read_idx(_find(root, label_stem)).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{root}: {images.shape[0]} images but {labels.shape[0]} labels in split {split!r}")
    return images[:limit], labels[:limit]
