"""Connecting to Ray, checking the cluster can place a run, keeping Ray's logs quiet. Ray touch points
are labelled."""

import copy
import logging
import os
import tempfile
import warnings
from pathlib import Path

import ray
import yaml
from ray.util.annotations import RayDeprecationWarning

from pipelines.config import ConfigError, ExperimentConfig

LOG = logging.getLogger(__name__)
LOCAL_INSTANCE = "a new local Ray instance"  # what connect() returns after starting one


def connect(num_cpus: int | None = None) -> str:
    """Join the running cluster (``RAY_ADDRESS``, ``ray job submit``, or a local ``ray start``)
    or start a local Ray instance. Returns a description for the log."""
    # WARNING for every process of the job (driver, Data tasks, Train workers and controller):
    # Ray's per-dataset and per-report INFO lines would bury the epoch progress line.
    quiet = {
        "logging_level": logging.WARNING,
        "log_to_driver": True,
        "logging_config": ray.LoggingConfig(encoding="TEXT", log_level="WARNING"),
    }
    if ray.is_initialized():
        return "the Ray instance already initialised in this process"
    # A running cluster's processes were not started from this environment: the job's runtime
    # env quiets Ray Data in the job's actors and tasks ("Dataset ... execution finished" lines),
    # unless the user set its logging (then set on the cluster or in the job's env vars).
    job_env = None if _ray_data_logging_set() else {"env_vars": {"RAY_DATA_LOG_LEVEL": "WARNING"}}
    quiet_local_instance()
    try:
        ray.init(address="auto", runtime_env=job_env, **quiet)  # Ray: an existing cluster
        return f"the running Ray cluster at {ray.get_runtime_context().gcs_address}"
    except ConnectionError:
        pass
    # Ray: a local instance; the dashboard stays on (Train V2 frees placement groups through it).
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", **quiet)
    return LOCAL_INSTANCE


def _ray_data_logging_set() -> bool:
    """The user chose Ray Data's logging (a config file or a level): we leave it as set."""
    return "RAY_DATA_LOGGING_CONFIG" in os.environ or "RAY_DATA_LOG_LEVEL" in os.environ


def quiet_local_instance() -> None:
    """The environment a local instance's processes inherit (set before ``ray.init`` starts it):
    Ray Data's console log from WARNING up (its file log as by default) without the one-off
    "Progress bars disabled" line, and no deprecation warnings of Ray's internal calls. Set
    ``RAY_DATA_LOGGING_CONFIG`` or ``PYTHONWARNINGS`` yourself to keep them."""
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    if _ray_data_logging_set():
        return
    try:
        from ray.data._internal.logging import DEFAULT_CONFIG
    except ImportError:  # another Ray version: its default logging
        return
    config = copy.deepcopy(DEFAULT_CONFIG)
    config["handlers"]["console"]["level"] = "WARNING"  # per-dataset "execution finished" lines
    config["loggers"]["ray.data._internal.progress"] = {"level": "ERROR"}
    path = Path(tempfile.gettempdir()) / f"ssl-pipeline-ray-data-logging-{os.getuid()}.yaml"
    path.write_text(yaml.safe_dump(config))
    os.environ["RAY_DATA_LOGGING_CONFIG"] = str(path)


def check_capacity(config: ExperimentConfig, fixed: bool) -> None:
    """Fail before any Ray work when the Train workers can never all be placed, or when they
    leave no CPU for a Ray Data task on a cluster without a data tier (``placement.data_resource``
    unset: the tasks share the workers' nodes, and a stream that cannot start hangs the run).

    Args:
        config: the experiment.
        fixed: the cluster cannot grow (a local instance started by ``connect``); on a running
            cluster an autoscaler may add nodes, so a shortfall is only a warning there.

    Raises:
        ConfigError: naming ``scaling.*`` / ``placement.*`` and what the cluster has.
    """
    have = ray.cluster_resources()  # Ray: the cluster's total resources now
    s, role = config.scaling, config.placement.train_resource
    data_cpu = 0.0 if config.placement.data_resource else config.augment.cpus_per_task
    need = {
        "CPU": s.num_workers * s.cpus_per_worker + data_cpu,
        **({"GPU": float(s.num_workers)} if s.use_gpu else {}),
        **({role: float(s.num_workers)} if role else {}),
    }
    short = {k: (v, have.get(k, 0.0)) for k, v in need.items() if have.get(k, 0.0) < v}
    if not short:
        return
    key = (
        "placement.train_resource"
        if role in short
        else "scaling.use_gpu"
        if "GPU" in short
        else "scaling.num_workers"
    )
    detail = ", ".join(f"{k}: needs {v:g}, the cluster has {h:g}" for k, (v, h) in short.items())
    data_short = data_cpu > 0 and "CPU" in short
    data = f" and a Ray Data task x {data_cpu:g} CPU (augment.cpus_per_task)" if data_short else ""
    message = (
        f"{key}: {s.num_workers} Train workers x {s.cpus_per_worker:g} CPU{' + 1 GPU' if s.use_gpu else ''}"
        f"{data} do not fit ({detail}); lower scaling.num_workers / scaling.cpus_per_worker"
        f"{' / augment.cpus_per_task' if data_short else ''} or add nodes"
    )
    if fixed:
        raise ConfigError(message)
    LOG.warning("%s (waiting for the autoscaler, if the cluster has one)", message)


def quiet_ray() -> None:
    """Keep Ray's per-dataset, per-report INFO lines and progress bars out of the user's way
    (the epoch progress line says what matters). Called in the driver and in each worker."""
    from ray.data import DataContext

    for name in ("ray.data", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "Progress bars disabled"
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines (store set-up, system metrics)
    try:  # Train V2 names this logger by its file path, outside "ray.train": its INFO lines print
        # every ray.train.report() call's whole TrainingReport(...)
        from ray.train.v2._internal.execution import context as train_context

        logging.getLogger(train_context.__file__).setLevel(logging.WARNING)
    except ImportError:  # another Ray version: its noise, not an error
        pass
    warnings.filterwarnings("ignore", category=RayDeprecationWarning)  # Ray's own internal uses
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
