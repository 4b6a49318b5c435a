"""Shared fixtures. One local Ray instance serves every Ray test of the session (starting Ray
costs seconds; most tests stay Ray-free)."""

import os

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """A new 2-CPU local Ray instance with the dashboard on (Train V2 releases placement groups
    through the State API, which lives in the dashboard). ``address="local"``: never attach to
    a cluster that happens to run on the machine (a plain ``ray.init()`` would, and then
    refuses ``num_cpus``)."""
    import ray

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.pop("RAY_ADDRESS", None)  # likewise: the tests own their instance
    ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False,
             configure_logging=False)  # fmt: skip
    yield ray
    ray.shutdown()
