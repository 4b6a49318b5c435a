"""More Train workers than the cluster can ever give fail before any Ray work, naming the key;
on a cluster that may grow (an autoscaler) the same shortfall is a warning."""

from pathlib import Path

import pytest

from pipelines.config import ConfigError, load_config
from pipelines.train.cluster import check_capacity

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["scaling.num_workers=3", "train.global_batch_size=63"],
            "scaling.num_workers: 3 Train workers x 1 CPU and a Ray Data task x 0.25 CPU "
            "(augment.cpus_per_task) do not fit (CPU: needs 3.25, the cluster has 2)",
        ),
        (  # the workers fit, but no Ray Data task could ever run beside them: the stream would hang
            ["scaling.num_workers=2"],
            "scaling.num_workers: 2 Train workers x 1 CPU and a Ray Data task x 0.25 CPU "
            "(augment.cpus_per_task) do not fit (CPU: needs 2.25, the cluster has 2)",
        ),
        (
            ["scaling.use_gpu=true"],
            "scaling.use_gpu: 1 Train workers x 1 CPU + 1 GPU do not fit (GPU: needs 1, the cluster has 0)",
        ),
        (
            ["placement.train_resource=train"],
            "placement.train_resource: 1 Train workers x 1 CPU do not fit (train: needs 1",
        ),
    ],
)
def test_check_capacity__a_fixed_cluster_that_cannot_fit_the_workers_is_a_config_error(
    ray_local, overrides, message
):
    config = load_config(SMOKE, overrides)
    with pytest.raises(ConfigError) as info:
        check_capacity(config, fixed=True)
    assert message in str(info.value)


def test_check_capacity__warns_on_a_cluster_that_may_grow_and_passes_when_it_fits(ray_local, caplog):
    check_capacity(load_config(SMOKE, ["scaling.num_workers=2", "scaling.cpus_per_worker=0.5"]), fixed=True)
    # with a data tier the Ray Data tasks run elsewhere: 2 x 1 CPU fit in 2
    check_capacity(load_config(SMOKE, ["scaling.num_workers=2", "placement.data_resource=data"]), fixed=True)
    check_capacity(load_config(SMOKE, ["scaling.num_workers=4"]), fixed=False)
    assert "scaling.num_workers: 4 Train workers" in caplog.text and "autoscaler" in caplog.text
