"""``build_datasets(config)``: the corpus read, the per-epoch augmentation and the kNN monitor's sets."""

from pipelines.config import ExperimentConfig
from pipelines.data.corpus import eval_sets, read_corpus
from pipelines.data.datasets import Datasets
from pipelines.data.images import augmented_rows
from pipelines.data.stream import build_streamed
from pipelines.data.video import build_video_datasets


def build_datasets(config: ExperimentConfig) -> Datasets:
    """The training stream and the kNN monitor's sets of ``config.data``: an image folder streamed
    every epoch (``data.cache: none``), else decoded once (materialised) and augmented every epoch.

    Raises:
        ValueError: more than ``data.max_bad_fraction`` of the corpus is bad (names examples).
        FileNotFoundError: a missing corpus (for Fashion-MNIST: how to install it).
    """
    if config.data.source == "video_folder":  # CVRL clip pairs
        return build_video_datasets(config)
    streamed = config.data.source == "tar_shards" or config.data.source == "image_folder"
    if streamed and config.data.cache == "none":  # read anew in a fresh order every epoch
        return build_streamed(config)
    corpus = read_corpus(config)
    train = augmented_rows(corpus, config)
    eval_train, eval_test = eval_sets(corpus, config)
    return Datasets(train, eval_train, eval_test, corpus.report, corpus.num_train_rows)
