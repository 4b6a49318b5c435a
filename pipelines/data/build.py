"""``build_datasets(config)``: the training stream and the kNN monitor's sets of any source."""

import logging

import ray

from pipelines.config import ExperimentConfig
from pipelines.data.datasets import Datasets
from pipelines.data.disk_cache import build_disk_cached
from pipelines.data.images import build_cached
from pipelines.data.stream import build_streamed, folder_listing
from pipelines.data.video import build_video_datasets

STREAMED = ("image_folder", "tar_shards")  # read anew every epoch unless data.cache is "memory"
AUTO_CACHE_SHARE = 0.3  # data.cache auto: decode once when the decoded images fit this share of the store
LOG = logging.getLogger(__name__)


def auto_cache(config: ExperimentConfig) -> str:
    """``data.cache: auto`` resolved for an image folder: "memory" when its decoded training squares
    (files x channels x image_size^2 bytes, counted from the listing) fit ``AUTO_CACHE_SHARE`` of
    the cluster's object store, else "none" (streamed). Says which and why."""
    files = folder_listing(config)[1].num_rows
    need = files * config.data.channels * config.data.image_size**2
    store = ray.cluster_resources().get("object_store_memory", 0.0)  # Ray: the whole cluster's store
    choice = "memory" if need <= AUTO_CACHE_SHARE * store else "none"
    decided = "decoded once (memory)" if choice == "memory" else "streamed (none)"
    share = 100 * need / max(store, 1.0)
    LOG.warning(
        "data.cache auto: %d files decode to %.1f GB, %.0f%% of the object store -> %s",
        files,
        need / 1e9,
        share,
        decided,
    )
    return choice


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
    cache = config.data.cache
    if cache == "auto":
        cache = auto_cache(config)
    if config.data.source in STREAMED and cache == "none":
        return build_streamed(config)
    if cache == "disk":
        return build_disk_cached(config)
    return build_cached(config)
