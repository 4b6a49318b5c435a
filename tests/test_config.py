"""Config loading is strict and fails before any cluster work, naming the key and the allowed
values; every shipped config validates."""

from pathlib import Path

import pytest
import yaml

from pipelines.config import ConfigError, ExperimentConfig, config_from_dict, flatten, load_config, to_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))

# (override, expected message fragment)
BAD = [
    ("unknown_top=1", "unknown key unknown_top; allowed keys: name, method"),
    ("train.epochz=3", "unknown key train.epochz"),
    ("train.epochs=three", "train.epochs: expected int"),
    ("train.epochs=0", "train.epochs: must be >= 1"),
    ("train.base_lr=-0.1", "train.base_lr: must be > 0"),
    ("train.optimizer=adam", "train.optimizer: 'adam' is not allowed; allowed values: lars, sgd, adamw"),
    ("train.precision=fp16", "train.precision: 'fp16' is not allowed; allowed values: fp32, bf16"),
    ("train.warmup_epochs=5", "train.warmup_epochs: must be in [0, train.epochs)"),
    (
        "train.on_non_finite=skip",
        "train.on_non_finite: 'skip' is not allowed; allowed values: stop, rollback",
    ),
    ("train.rollback_lr_factor=1.5", "train.rollback_lr_factor: must be in (0, 1), got 1.5"),
    ("train.max_rollbacks=-1", "train.max_rollbacks: must be >= 0, got -1"),
    ("train.inject_nan_at_step=-3", "train.inject_nan_at_step: must be >= 0 or null, got -3"),
    ("method.name=simclrr", "method.name: 'simclrr' is not allowed; allowed values: barlow_twins"),
    (
        "method.params.temprature=0.1",
        "method.params.temprature: 'temprature' is not allowed; allowed values: hidden_dim",
    ),
    ("method.params.temperature=-0.5", "method.params.temperature: must be > 0"),
    (
        "backbone.name=vit",
        "backbone.name: 'vit' is not allowed; allowed values: r2plus1d_18, r3d_18, resnet18",
    ),
    (
        "backbone.name=r3d_18",
        "backbone.name: method 'simclr' trains on images; allowed backbones: resnet18, resnet50, tiny_cnn",
    ),
    ("data.source=video_folder", "data.source: method 'simclr' needs an image source, not 'video_folder'"),
    (
        "data.source=csv",
        "data.source: 'csv' is not allowed; allowed values: fashion_mnist, image_folder, parquet",
    ),
    ("data.channels=2", "data.channels: 2 is not allowed; allowed values: 1, 3"),
    ("data.path=/nonexistent/fmnist", "data.path: /nonexistent/fmnist does not exist"),
    ("data.max_bad_fraction=1.5", "data.max_bad_fraction: must be in [0, 1]"),
    ("augment.recipe=autoaugment", "augment.recipe: 'autoaugment' is not allowed; allowed values: byol"),
    ("augment.params.size=64", "crop size 64 is larger than data.image_size 28"),
    ("scaling.num_workers=0", "scaling.num_workers: must be >= 1"),
    ("train.global_batch_size=255", None),  # valid with 1 worker
    ("eval.knn_temperature=0", "eval.knn_temperature: must be > 0"),
    (
        "tracking.tracking_uri=https://bob:secret@mlflow.example.com",
        "tracking.tracking_uri: holds credentials",
    ),
    ("tracking.tracking_uri=sqlite:////tmp/a@b/mlflow.db", None),  # an @ in a path is not a credential
    ("train.weight_decay_end=-0.1", "train.weight_decay_end: must be >= 0"),
    ("train.weight_decay_end=0.4", None),
]


VIDEO_BAD = [
    (
        "backbone.name=resnet18",
        "backbone.name: method 'cvrl' trains on clips; allowed backbones: r2plus1d_18, r3d_18, tiny_cnn3d",
    ),
    ("data.source=fashion_mnist", "data.source: method 'cvrl' needs data.source 'video_folder'"),
    ("data.path=/nonexistent/videos", "data.path: /nonexistent/videos does not exist"),
    ("video.frames=0", "video.frames: must be >= 1, got 0"),
    ("video.stride=0", "video.stride: must be >= 1, got 0"),
    ("video.distance_power=-1", "video.distance_power: must be >= 0 (0: uniform), got -1.0"),
    ("video.pairs_per_video=0", "video.pairs_per_video: must be >= 1"),
    ("video.decode_size=16", "video.decode_size: must be >= data.image_size (32) or null, got 16"),
    ("video.holdout_fraction=1.0", "video.holdout_fraction: must be in [0, 1)"),
    ("video.frame=8", "unknown key video.frame; allowed keys: frames, stride"),
    ("augment.recipe=simclr", "augment.recipe: 'simclr' is not allowed; allowed values: cvrl"),
    ("augment.params.strenght=0.5", "augment.params: "),
    ("augment.params.strength=9", "augment.params: strength must be in [0, 2.5], got 9"),
    ("augment.params.size=64", "augment.params: clip size 64 is larger than data.image_size 32"),
]


@pytest.mark.parametrize("override,message", VIDEO_BAD)
def test_bad_video_config__fails_naming_the_key_and_allowed_values(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(ROOT / "configs" / "cvrl_smoke.yaml", [override])
    assert message in str(info.value)


@pytest.mark.parametrize("override,message", BAD)
def test_bad_config__fails_naming_the_key_and_allowed_values(override, message):
    if message is None:
        load_config(ROOT / "configs" / "smoke.yaml", [override])
        return
    with pytest.raises(ConfigError) as info:
        load_config(ROOT / "configs" / "smoke.yaml", [override])
    assert message in str(info.value)


def test_moco_queue__must_be_a_multiple_of_the_global_batch():
    with pytest.raises(
        ConfigError,
        match="method.params.queue_size: must be a positive multiple of train.global_batch_size \\(256\\)",
    ):
        load_config(ROOT / "configs" / "moco_fmnist.yaml", ["method.params.queue_size=1000"])


def test_batch__must_split_evenly_over_workers():
    with pytest.raises(
        ConfigError, match="train.global_batch_size: must be a multiple of scaling.num_workers \\(3\\)"
    ):
        load_config(ROOT / "configs" / "smoke.yaml", ["scaling.num_workers=3"])


def test_multicrop_recipe__needs_a_multicrop_method():
    with pytest.raises(ConfigError, match="multi-crop needs swav or dino"):
        load_config(ROOT / "configs" / "swav_fmnist.yaml", ["method.name=simclr", "method.params={}"])


def test_override__parses_yaml_values_and_nested_paths():
    config = load_config(
        ROOT / "configs" / "smoke.yaml", ["train.base_lr=0.5", "method.params.temperature=0.3"]
    )
    assert config.train.base_lr == 0.5 and config.method.params["temperature"] == 0.3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config__validates_and_round_trips_through_a_plain_dict(path):
    config = load_config(path)
    assert isinstance(config, ExperimentConfig)
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(to_dict(config)))) == config


def test_flatten__gives_dotted_paths():
    flat = flatten(to_dict(load_config(ROOT / "configs" / "smoke.yaml")))
    assert flat["train.epochs"] == 2 and flat["method.name"] == "simclr"


def test_config_whose_model_cannot_build__fails_before_any_ray_work(monkeypatch):
    from pipelines import run
    from pipelines.train.trainer import check_model_builds

    check_model_builds(
        load_config(ROOT / "configs" / "smoke.yaml")
    )  # a good config builds on the meta device
    bad = load_config(
        ROOT / "configs" / "smoke.yaml", ["method.params.hidden_dim=-1"]
    )  # valid type, no model

    def no_cluster():
        raise AssertionError("connected to Ray before the model was checked")

    monkeypatch.setattr(run, "connect", no_cluster)
    with pytest.raises(
        ConfigError, match=r"method / backbone: simclr on tiny_cnn does not build.*negative dimension"
    ):
        run.pretrain(bad, Path("/nonexistent/run"))


def test_exponent_without_a_dot__reads_as_a_number_in_files_and_overrides(tmp_path):
    path = tmp_path / "lr.yaml"
    path.write_text((ROOT / "configs" / "smoke.yaml").read_text().replace("base_lr: 0.06", "base_lr: 6e-2"))
    assert load_config(path).train.base_lr == 0.06  # PyYAML alone reads "6e-2" as a string
    config = load_config(
        ROOT / "configs" / "smoke.yaml", ["train.base_lr=3E-4", "method.params.temperature=1e-1"]
    )
    assert (config.train.base_lr, config.method.params["temperature"]) == (3e-4, 0.1)
    assert (
        load_config(ROOT / "configs" / "smoke.yaml", ["name=1e5x"]).name == "1e5x"
    )  # not a number: a string


def test_base__child_keys_win_and_method_params_are_replaced_whole(tmp_path):
    (tmp_path / "parent.yaml").write_text(
        "name: parent\nmethod: {name: simclr, params: {temperature: 0.3, hidden_dim: 64}}\n"
        "train: {epochs: 7, base_lr: 0.1}\ndata: {limit: 100}\n"
    )
    (tmp_path / "child.yaml").write_text(
        "base: parent.yaml\nname: child\n"
        "method: {name: byol, params: {base_momentum: 0.9}}\ntrain: {epochs: 2}\n"
    )
    config = load_config(tmp_path / "child.yaml")
    assert config.name == "child"
    assert (config.train.epochs, config.train.base_lr, config.data.limit) == (2, 0.1, 100)  # merged
    assert config.method.name == "byol" and config.method.params == {"base_momentum": 0.9}  # not merged


def test_base__a_cycle_and_a_missing_base_fail_naming_the_files(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"base: .*a\.yaml includes itself"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(
        FileNotFoundError, match=r"nowhere\.yaml not found \(shipped configs in .*smoke\.yaml"
    ):
        load_config(tmp_path / "c.yaml")


def test_base__shipped_configs_resolve_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    by_name, by_checkout_path = load_config("smoke.yaml"), load_config(ROOT / "configs" / "smoke.yaml")
    assert by_name == by_checkout_path == load_config("configs/smoke.yaml")
    (tmp_path / "mine.yaml").write_text(
        "base: smoke.yaml\ntrain: {epochs: 5}\n"
    )  # a user's file on a shipped base
    assert load_config("mine.yaml").train.epochs == 5
    assert load_config("mine.yaml").data.limit == by_name.data.limit == 512


def test_default_config__resolves_to_the_readme_job():
    config = load_config(ROOT / "configs" / "default.yaml")
    assert (config.method.name, config.data.source, config.data.limit, config.train.epochs) == (
        "simclr",
        "fashion_mnist",
        10_000,
        3,
    )
    assert config.method.params == {"hidden_dim": 512, "projection_dim": 128, "temperature": 0.2}


@pytest.mark.parametrize(
    "config,overrides,world,expected",
    [
        ("moco_fmnist", ["scaling.use_gpu=true"], 2, True),  # auto: a flagged method on 2 GPUs
        ("moco_v3_fmnist", ["scaling.use_gpu=true"], 2, True),
        ("moco_fmnist", ["scaling.use_gpu=true"], 1, False),  # one worker: nothing to sync
        ("moco_fmnist", [], 2, False),  # CPU workers: PyTorch's SyncBN needs GPUs
        ("supcon_fmnist", ["scaling.use_gpu=true"], 2, False),  # not flagged
        ("supcon_fmnist", ["scaling.use_gpu=true", "train.sync_batchnorm=true"], 2, True),  # explicit
        ("moco_fmnist", ["scaling.use_gpu=true", "train.sync_batchnorm=false"], 2, False),
    ],
)
def test_sync_batchnorm__null_is_auto_and_true_or_false_are_respected(config, overrides, world, expected):
    from pipelines.train.worker import use_sync_batchnorm

    loaded = load_config(ROOT / "configs" / f"{config}.yaml", ["scaling.num_workers=2", *overrides])
    assert use_sync_batchnorm(loaded, world) is expected


def test_sync_batchnorm__true_on_several_cpu_workers_fails_validation():
    with pytest.raises(ConfigError, match="train.sync_batchnorm: PyTorch's SyncBatchNorm runs on GPUs only"):
        load_config(ROOT / "configs" / "smoke.yaml", ["scaling.num_workers=2", "train.sync_batchnorm=true"])


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["data.limit=1000", "method.params.bank_size=999"],
            "method.params.bank_size: must be >= the number",
        ),
        (
            ["data.source=image_folder", "data.path=/tmp"],
            "data.cache: method 'instdisc' needs each image's index",
        ),
        (["method.params.temperature=0"], "method.params.temperature: must be > 0"),
    ],
)
def test_instdisc_config__checks_what_the_memory_bank_needs(overrides, message):
    load_config(
        ROOT / "configs" / "instdisc_fmnist.yaml", ["data.limit=1000", "method.params.bank_size=1000"]
    )
    with pytest.raises(ConfigError, match=message):
        load_config(ROOT / "configs" / "instdisc_fmnist.yaml", overrides)


def test_method_choices__mining_and_variant_fail_naming_the_allowed_values():
    with pytest.raises(
        ConfigError, match="method.params.mining: 'easy' is not allowed; allowed values: hard"
    ):
        load_config(ROOT / "configs" / "triplet_fmnist.yaml", ["method.params.mining=easy"])
    with pytest.raises(
        ConfigError, match="method.params.variant: 'mid' is not allowed; allowed values: out, in"
    ):
        load_config(ROOT / "configs" / "supcon_fmnist.yaml", ["method.params.variant=mid"])
