"""Small, dependency-free dataset readers used by tests and the single-process trainer."""

from cl_core.datasets.fashion_mnist import FASHION_MNIST_DIR, load_fashion_mnist
from cl_core.datasets.idx import read_idx

__all__ = ["FASHION_MNIST_DIR", "load_fashion_mnist", "read_idx"]
