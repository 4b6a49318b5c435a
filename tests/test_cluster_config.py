"""cluster.yaml passes Ray's cluster-launcher schema, pins the image to the project's Ray
version and tags each node role with the custom resource the pipeline's placement keys name."""

import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.commands import prepare_config
from ray.autoscaler._private.util import validate_config

ROOT = Path(__file__).resolve().parents[1]


def load() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml__validates_against_rays_cluster_config_schema():
    validate_config(prepare_config(load()))  # raises jsonschema.ValidationError / ValueError


def test_cluster_yaml__a_misspelt_field_fails_the_same_validation():
    config = load()
    config["available_node_types"]["data_cpu"]["min_worker"] = 1  # typo of min_workers
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        validate_config(prepare_config(config))


def test_cluster_yaml__image_is_pinned_to_the_ray_version_of_pyproject():
    pinned = re.search(r'"ray\[[^\]]*\]==([0-9.]+)\.\*"', (ROOT / "pyproject.toml").read_text()).group(1)
    image = load()["docker"]["image"]
    assert image.startswith(f"rayproject/ray:{pinned}.") and not image.endswith(":latest")


def test_cluster_yaml__roles_carry_the_resources_the_placement_config_uses():
    types = load()["available_node_types"]
    assert "driver" in types["head"]["resources"] and types["head"]["resources"]["CPU"] <= 1
    assert "data" in types["data_cpu"]["resources"] and "train" in types["train_gpu"]["resources"]
    assert types["data_cpu"]["max_workers"] >= types["data_cpu"]["min_workers"] >= 1
