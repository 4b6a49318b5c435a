"""Shared fixtures. One local Ray instance serves every Ray test of the session (starting Ray
costs seconds; most tests stay Ray-free)."""

import os
import socket

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The tests' S3-compatible server (moto, started on demand by the ``s3`` fixture) listens here. The
# variables are set before Ray starts, so the Data tasks and Train workers see the same endpoint.
S3_ENDPOINT = f"http://127.0.0.1:{_free_port()}"
S3_ENV = {
    "AWS_ENDPOINT_URL": S3_ENDPOINT,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def ray_local():
    """A new 2-CPU local Ray instance with the dashboard on (Train V2 releases placement groups
    through the State API, which lives in the dashboard). ``address="local"``: never attach to
    a cluster that happens to run on the machine (a plain ``ray.init()`` would, and then
    refuses ``num_cpus``)."""
    import ray

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.pop("RAY_ADDRESS", None)  # likewise: the tests own their instance
    os.environ.update(S3_ENV)  # only ever the loopback server of the ``s3`` fixture
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        log_to_driver=False,
        configure_logging=False,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3(ray_local):
    """A real S3-compatible server (moto's) on 127.0.0.1 with an empty bucket; yields a function
    that makes a fresh ``s3://bucket/<prefix>`` URI."""
    import itertools

    import boto3
    from moto.server import ThreadedMotoServer

    host, port = S3_ENDPOINT.removeprefix("http://").split(":")
    server = ThreadedMotoServer(ip_address=host, port=int(port), verbose=False)
    server.start()
    boto3.client("s3", endpoint_url=S3_ENDPOINT).create_bucket(Bucket="ssl-tests")
    counter = itertools.count()
    yield lambda name: f"s3://ssl-tests/{name}-{next(counter)}"
    server.stop()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server (``mlflow server``, sqlite backend, proxied artifacts) on a
    free port of 127.0.0.1 for the session (~25 s to start on 2 busy cores); killed at the end."""
    from tests.mlflow_server import MlflowServer

    server = MlflowServer(tmp_path_factory.mktemp("mlflow_server")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def smoke_run(ray_local, mlflow_server, tmp_path_factory):
    """One finished ``configs/smoke.yaml`` run (2 epochs, 8 steps each) on the shared Ray, tracked
    in the session's MLflow server (its encoder registered as ``SMOKE_MODEL``); tests that only
    read a finished run share it (a Train run costs ~40 s on 2 cores). Returns (config, run_dir,
    tracking_uri, run_id, metrics)."""
    import json
    from pathlib import Path

    from pipelines import run
    from pipelines.config import load_config
    from tests.mlflow_server import SMOKE_MODEL

    root = tmp_path_factory.mktemp("smoke_run")
    smoke = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"
    overrides = [f"tracking.tracking_uri={mlflow_server.uri}", f"tracking.register_as={SMOKE_MODEL}"]
    config = load_config(smoke, [*overrides, f"checkpoint.output_dir={root / 'runs'}"])
    uri = config.tracking.tracking_uri
    run_dir = root / "runs" / "smoke-e2e"
    metrics = run.pretrain(config, run_dir)
    run_id = json.loads((run_dir / run.RUN_INFO).read_text())["run_id"]
    return config, run_dir, uri, run_id, metrics


RAY_FIXTURES = {"ray_local", "smoke_run", "s3"}
RAY_MODULES = {
    "test_job_submit",
    "test_cluster_multinode",
}  # start Ray clusters of their own (tests/local_cluster.py)


def pytest_collection_modifyitems(items):
    """Mark every test that starts or uses Ray ``ray``, so ``pytest -m "not ray"`` is the fast lane
    of Ray-free tests (a few minutes on 2 cores) and the full suite stays ``pytest``."""
    for item in items:
        if (
            RAY_FIXTURES & set(getattr(item, "fixturenames", ()))
            or item.module.__name__.split(".")[-1] in RAY_MODULES
        ):
            item.add_marker(pytest.mark.ray)
