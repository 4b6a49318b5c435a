"""Small, dependency-free dataset readers used by tests and the single-process trainer."""

from cl_core.datasets.fashion_mnist import FASHION_MNIST_DIR, load_fashion_mnist
from cl_core.datasets.idx import read_idx
from cl_core.datasets.sample_videos import sample_videos_dir

__all__ = ["FASHION_MNIST_DIR", "load_fashion_mnist", "read_idx", "sample_videos_dir"]
