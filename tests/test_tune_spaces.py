"""Sweep spaces validate before any trial starts (Ray-free): every shipped space is valid, and a
bad path or value fails naming the path."""

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from pipelines.config import ConfigError, load_config
from pipelines.sweep.space import (
    SweepSpace,
    allowed_paths,
    domain_values,
    format_override,
    load_space,
    trial_overrides,
    validate_space,
)

ROOT = Path(__file__).resolve().parents[1]
SPACES = sorted((ROOT / "tune_spaces").glob("*.yaml"))
REQUIRED = {"simclr_temperature_aug", "moco_queue", "ema_momentum_lr", "cross_method", "smoke"}


def smoke_with(space: dict) -> SweepSpace:
    return replace(load_space(ROOT / "tune_spaces" / "smoke.yaml"), space=space)


def test_tune_spaces__ship_every_required_sweep():
    assert REQUIRED <= {p.stem for p in SPACES}


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_each_space__validates_against_its_base_config(path):
    space = load_space(path)
    base = validate_space(space)
    assert space.metric == "eval/knn_top1" and space.mode == "max"
    assert space.base_config.is_file() and base.eval.every_epochs == 1


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_each_space__every_path_it_varies_exists_in_the_config(path):
    allowed = set(allowed_paths())
    for label, spec in load_space(path).space.items():
        ((kind, args),) = spec.items()
        paths = {p for option in args for p in option} if kind.endswith("_set") else {label}
        for p in paths:
            assert p in allowed or p.startswith(("method.params.", "augment.params.")), p


def test_cross_method__gives_each_method_a_valid_config_of_its_own():
    space = load_space(ROOT / "tune_spaces" / "cross_method.yaml")
    (options,) = space.space["method"].values()
    methods = []
    for option in options:
        config = load_config(space.base_config, trial_overrides(space.space, {"method": option}))
        methods.append(config.method.name)
    assert len(set(methods)) == len(methods) >= 4
    assert (
        load_config(space.base_config, trial_overrides(space.space, {"method": options[3]})).augment.recipe
        == "multicrop"
    )


def test_unknown_path__fails_naming_it_and_nearby_keys():
    with pytest.raises(ConfigError, match=r"train\.base_rate.*nearby allowed keys: .*train\.base_lr"):
        validate_space(smoke_with({"train.base_rate": {"choice": [0.1, 0.2]}}))


def test_unknown_method_param__fails_naming_the_path_and_allowed_params():
    with pytest.raises(ConfigError, match=r"method\.params\.temprature.*allowed values: .*temperature"):
        validate_space(smoke_with({"method.params.temprature": {"choice": [0.1]}}))


def test_queue_size_not_a_multiple_of_the_batch__fails_naming_the_path():
    moco = load_space(ROOT / "tune_spaces" / "moco_queue.yaml")
    bad = replace(moco, space={"method.params.queue_size": {"grid": [1024, 1000]}})
    with pytest.raises(ConfigError, match=r"method\.params\.queue_size: must be a positive multiple.*1000"):
        validate_space(bad)


@pytest.mark.parametrize("domain", [{"choice": [0.2, 0.0]}, {"uniform": [-0.1, 0.5]}, {"grid": [-1.0]}])
def test_temperature_not_positive__fails_naming_the_path(domain):
    with pytest.raises(ConfigError, match=r"method\.params\.temperature: must be > 0"):
        validate_space(smoke_with({"method.params.temperature": domain}))


def test_continuous_range__is_checked_at_both_ends():
    assert domain_values("x", {"uniform": [0.1, 0.9]}) == [0.1, 0.9]
    assert domain_values("x", {"randint": [1, 5]}) == [1, 4]
    with pytest.raises(ConfigError, match=r"augment\.params.*strength"):  # upper end 3.0 > 2.5
        validate_space(smoke_with({"augment.params.strength": {"uniform": [0.5, 3.0]}}))


def test_bad_domain__fails_naming_the_entry():
    with pytest.raises(ConfigError, match=r"space\.train\.base_lr: unknown domain 'normal'"):
        validate_space(smoke_with({"train.base_lr": {"normal": [0.1, 0.2]}}))
    with pytest.raises(ConfigError, match=r"space\.train\.base_lr\.loguniform: .*low > 0"):
        validate_space(smoke_with({"train.base_lr": {"loguniform": [0.0, 0.2]}}))


def test_bad_scheduler__fails_naming_the_setting():
    space = load_space(ROOT / "tune_spaces" / "smoke.yaml")
    with pytest.raises(ConfigError, match=r"scheduler\.max_t: must be <= train\.epochs"):
        validate_space(replace(space, scheduler=replace(space.scheduler, max_t=99)))


def test_loss_as_the_sweep_metric__is_refused_naming_the_key():
    space = load_space(ROOT / "tune_spaces" / "smoke.yaml")
    with pytest.raises(
        ConfigError, match=r"metric: 'train/loss' is not allowed: sweeps optimise an evaluation"
    ):
        validate_space(replace(space, metric="train/loss", mode="min"))


def test_unknown_space_key__fails_listing_the_allowed_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"base_config": "configs/smoke.yaml", "space": {}, "metrics": "x"}))
    with pytest.raises(ConfigError, match=r"unknown key 'metrics'; allowed keys: .*metric"):
        load_space(path)


def test_overrides__round_trip_through_yaml_including_small_floats():
    assert format_override("train.weight_decay", 1e-5) == "train.weight_decay=1.0e-05"
    values = {"train": {}}
    from pipelines.config import apply_override

    apply_override(values, format_override("train.weight_decay", 1e-5))
    assert values["train"]["weight_decay"] == 1e-5


def test_set_option__expands_to_one_override_per_path():
    space = {"m": {"choice_set": [{"method.name": "byol", "train.base_lr": 1.0}]}}
    assert trial_overrides(space, {"m": {"method.name": "byol", "train.base_lr": 1.0}}) == [
        "method.name=byol",
        "train.base_lr=1.0",
    ]


def test_smoke_test__runs_one_trial_with_every_grid_at_its_first_option():
    from pipelines.sweep.driver import prepare
    from pipelines.sweep.space import trial_count

    full, _ = prepare(ROOT / "tune_spaces" / "smoke.yaml", [], smoke=False)
    assert trial_count(full) == 4  # grid of 4 learning rates x 1 sample
    space, base = prepare(ROOT / "tune_spaces" / "smoke.yaml", [], smoke=True)
    assert trial_count(space) == 1 and base.train.epochs == 2
    assert space.space["train.base_lr"] == {"grid": [0.3]}
    assert space.space["method.params.temperature"] == full.space["method.params.temperature"]
    cross, _ = prepare(ROOT / "tune_spaces" / "cross_method.yaml", [], smoke=True)
    (options,) = [dom["grid_set"] for dom in cross.space.values() if "grid_set" in dom]
    assert len(options) == 1 and options[0]["method.name"] == "simclr" and trial_count(cross) == 1
