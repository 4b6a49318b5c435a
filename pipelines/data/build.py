"""``build_datasets(config)``: the training stream and the kNN monitor's sets of any source."""

from pipelines.config import ExperimentConfig
from pipelines.data.datasets import Datasets
from pipelines.data.images import build_cached
from pipelines.data.stream import build_streamed
from pipelines.data.video import build_video_datasets

STREAMED = ("image_folder", "tar_shards")  # read anew every epoch unless data.cache is "memory"


def build_datasets(config: ExperimentConfig) -> Datasets:
    """Image folders and tar shards streamed every epoch (``data.cache: none``); Fashion-MNIST,
    Parquet and cached folders decoded once; video as CVRL clip pairs. Every image source reads
    its rows in a fresh order each epoch, keyed by (``train.seed``, epoch).

    Raises:
        ValueError: more than ``data.max_bad_fraction`` of the corpus is bad (names examples).
        FileNotFoundError: a missing corpus (for Fashion-MNIST: how to install it).
    """
    if config.data.source == "video_folder":  # CVRL clip pairs
        return build_video_datasets(config)
    if config.data.source in STREAMED and config.data.cache == "none":
        return build_streamed(config)
    return build_cached(config)
