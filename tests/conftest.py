"""Shared fixtures. One local Ray instance serves every Ray test of the session (starting Ray
costs seconds; most tests stay Ray-free)."""

import os

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """A 2-CPU local Ray instance with the dashboard on (Train V2 releases placement groups
    through the State API, which lives in the dashboard)."""
    import ray

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    ray.init(num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False,
             configure_logging=False)  # fmt: skip
    yield ray
    ray.shutdown()
