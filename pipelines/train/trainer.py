"""Assemble a Ray Train run from a config: datasets, scaling, storage, failure handling."""

from pathlib import Path

import ray.train
import torch
from ray.train.torch import TorchTrainer

from pipelines.config import ConfigError, ExperimentConfig, to_dict
from pipelines.data.datasets import Datasets
from pipelines.home import staging_dir
from pipelines.tracking.metric_logger import PENDING_FILE
from pipelines.train.worker import build_model, train_loop_per_worker


def check_model_builds(config: ExperimentConfig) -> None:
    """Builds the method on the meta device (no memory, milliseconds), so a config whose values
    pass validation but cannot make a model (a negative width, a head that does not fit the
    backbone) fails here, before any Train worker starts."""
    try:
        with torch.device("meta"):
            build_model(config, config.scaling.num_workers)
    except Exception as error:  # noqa: BLE001 - any construction error is the config's
        raise ConfigError(
            f"method / backbone: {config.method.name} on {config.backbone.name} does not build from this "
            "config: "
            f"{type(error).__name__}: {error}"
        ) from error


def build_trainer(
    config: ExperimentConfig,
    datasets: Datasets,
    run_dir: Path | str,
    run_id: str,
    tracking_uri: str,
    stop_after_epochs: int | None = None,
    callbacks: list | None = None,
) -> TorchTrainer:
    """A ``TorchTrainer`` whose run lives in ``run_dir`` (storage = its parent, name = its
    name), so fitting it again with the same ``run_dir`` resumes from the last checkpoint."""
    loop_config = {
        "config": to_dict(config),
        "run_id": run_id,
        "tracking_uri": tracking_uri,
        "num_train_rows": datasets.num_train_rows,
        "clock": datasets.clock,
        "stop_after_epochs": stop_after_epochs,
        "spool": str(staging_dir(run_dir) / PENDING_FILE),  # metric points kept while MLflow does not answer
    }
    named = {"train": datasets.train}
    if datasets.eval_train is not None and datasets.eval_test is not None:
        named.update(eval_train=datasets.eval_train, eval_test=datasets.eval_test)
    scaling, role = config.scaling, config.placement.train_resource
    resources = {
        "CPU": scaling.cpus_per_worker,
        **({"GPU": 1} if scaling.use_gpu else {}),
        **({role: 1} if role else {}),
    }
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=scaling.num_workers,
            use_gpu=scaling.use_gpu,
            resources_per_worker=resources,  # placement.train_resource: train-tier nodes only
        ),
        run_config=ray.train.RunConfig(
            name=str(run_dir).rstrip("/").rsplit("/", 1)[-1],
            storage_path=str(run_dir).rstrip("/").rsplit("/", 1)[0],  # a path or an s3:// URI
            failure_config=ray.train.FailureConfig(max_failures=config.checkpoint.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=config.checkpoint.keep),
            callbacks=callbacks or [],
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),  # no per-report INFO lines
        ),
        datasets=named,
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
    )
