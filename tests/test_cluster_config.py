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


def test_cluster_yaml__every_node_starts_ray_with_token_auth_and_the_mlflow_credentials():
    config = load()
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        (start,) = [c for c in config[key] if "ray start" in c]
        before = start[: start.index("ray start")]
        for variable in (
            "RAY_AUTH_MODE=token",
            "MLFLOW_TRACKING_URI=",
            "MLFLOW_TRACKING_USERNAME=",
            "MLFLOW_TRACKING_PASSWORD=",
        ):
            assert variable in before, (key, variable)
    mounts = config["file_mounts"]
    assert mounts["~/.ray/auth_token"] == "~/.ray/auth_token"  # the head's token on every node


def test_cluster_yaml__mlflow_server_is_behind_basic_auth_and_the_project_is_installed_from_its_copy():
    config = load()
    (server,) = [c for c in config["head_start_ray_commands"] if "mlflow server" in c and "nohup" in c]
    assert "--app-name basic-auth" in server and "MLFLOW_AUTH_ADMIN_PASSWORD=" in server
    assert config["file_mounts"]["~/ssl-pipeline"] == "."
    installs = [c for c in config["setup_commands"] if "pip install" in c]
    assert installs == ["pip install -q ~/ssl-pipeline"]  # no placeholder repository
    assert not any("git+" in c for c in config["setup_commands"] + config["head_setup_commands"])
