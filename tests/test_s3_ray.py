"""Object storage for real, against an S3-compatible server on 127.0.0.1 (moto): tar shards made
by the sharding tool and read from ``s3://``, a pretraining run whose checkpoints and encoder go
to ``s3://`` and that resumes from there, a Tune sweep whose state lives there."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from cl_core.datasets import load_fashion_mnist
from pipelines import storage
from pipelines.config import load_config, load_yaml
from pipelines.data.build import build_datasets
from pipelines.data.epochs import set_epoch
from pipelines.evaluation import downstream
from pipelines.run import RUN_INFO, pretrain
from pipelines.shard import write_shards
from pipelines.sweep.driver import run_sweep
from pipelines.train.checkpoints import ENCODER_FILE

PER_CLASS = 40
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shard_uri(s3, tmp_path_factory):
    """400 Fashion-MNIST PNGs in class folders, sharded to S3 by ``python -m pipelines.shard``."""
    root = tmp_path_factory.mktemp("fmnist_png")
    images, labels = load_fashion_mnist("train", limit=2000)
    for c in range(10):
        (root / f"class_{c}").mkdir()
        for i, pixels in enumerate(images[labels == c][:PER_CLASS]):
            Image.fromarray(pixels).save(root / f"class_{c}" / f"{i:03d}.png")
    uri = s3("shards")
    index = write_shards(str(root), uri, shard_size=64)
    assert index["total"] == 10 * PER_CLASS and len(index["shards"]) == 7
    return uri


def _config(shard_uri: str, **values):
    base = {
        "data": {"source": "tar_shards", "path": shard_uri, "holdout_fraction": 0.1},
        "eval": {"train_size": 100, "test_size": 40, "knn_k": 10},
        "train": {"global_batch_size": 32, "epochs": 2},
        "method": {"params": {"hidden_dim": 64, "projection_dim": 32}},
    }
    for key, value in values.items():
        base[key] = base.get(key, {}) | value
    return load_config(values=base)


def test_tar_shards_on_s3__every_sample_once_per_epoch_in_a_new_order(shard_uri):
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    try:
        datasets = build_datasets(_config(shard_uri))
        epochs = []
        for epoch in (0, 1, 0):
            set_epoch(datasets.clock, epoch)
            epochs.append(np.concatenate([b["label"] for b in datasets.train.iter_batches(batch_size=None)]))
    finally:
        context.execution_options.preserve_order = False
    assert sorted(epochs[0]) == sorted(epochs[1]) and np.array_equal(epochs[0], epochs[2])
    assert (epochs[0] != epochs[1]).mean() > 0.5
    assert 0.8 * 10 * PER_CLASS < len(epochs[0]) < 10 * PER_CLASS  # held-out samples stay out
    assert abs(datasets.num_train_rows - len(epochs[0])) <= 0.05 * len(epochs[0])  # the index's estimate
    bank = np.concatenate([b["label"] for b in datasets.eval_train.iter_batches(batch_size=None)])
    assert len(bank) == 100 and len(np.unique(bank)) == 10


def test_pretrain__reads_shards_from_s3_checkpoints_there_and_resumes(shard_uri, s3, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = s3("runs")
    config = _config(shard_uri, tracking={"tracking_uri": uri}, checkpoint={"output_dir": runs})
    run_dir = storage.join(runs, "tar-s3")
    first = pretrain(config, run_dir, stop_after_epochs=1)
    assert first["train/epoch"] == 1
    info = json.loads(storage.read_text(storage.join(run_dir, RUN_INFO)))
    listed = [p.removeprefix(run_dir + "/") for p, _ in storage.list_files(run_dir)]
    assert "config.yaml" in listed and ENCODER_FILE in listed
    assert any(p.startswith("checkpoint_") and p.endswith("state.pt") for p in listed), listed  # Ray Train's

    metrics = pretrain(config, run_dir, resume=True)  # from the checkpoint on S3
    assert metrics["train/epoch"] == 2
    state = torch.load(io.BytesIO(storage.read_bytes(storage.join(run_dir, ENCODER_FILE))), weights_only=True)
    assert any(k.endswith("weight") for k in state)
    client = MlflowClient(uri)
    steps = [m.step for m in client.get_metric_history(info["run_id"], "train/loss")]
    assert len(steps) == len(set(steps)) == 2  # one point per epoch, none repeated by the resume
    assert client.get_run(info["run_id"]).info.status == "FINISHED"
    source = downstream.resolve_source(run_dir, None, [], None)  # evaluate.py on the S3 run directory
    assert source.run_id == info["run_id"] and all(
        torch.equal(state[k], source.encoder_state[k]) for k in state
    )


def test_sweep__on_s3_keeps_its_state_trial_runs_and_best_config_there(s3, tmp_path):
    out = s3("sweeps")
    overrides = [f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", f"checkpoint.output_dir={out}"]
    summary = run_sweep(ROOT / "tune_spaces" / "smoke.yaml", overrides, smoke=True)  # 1 trial, 2 epochs
    sweep_dir = summary["sweep_dir"]
    assert storage.is_uri(sweep_dir) and sweep_dir.startswith(out + "/sweep-smoke-")
    listed = [p.removeprefix(sweep_dir + "/") for p, _ in storage.list_files(sweep_dir)]
    for name in ("sweep.json", "summary.md", "best_config.yaml"):
        assert name in listed, listed
    trial = summary["best"]["trial"]
    assert f"runs/{trial}/{ENCODER_FILE}" in listed and f"runs/{trial}/config.yaml" in listed
    best = load_config(values=load_yaml(storage.read_text(summary["best_config"])))  # ready to run
    assert best.checkpoint.output_dir == out and summary["num_errors"] == 0
    again = run_sweep(None, [], resume=sweep_dir)  # --resume s3://...: nothing left to run
    assert again["best"]["trial"] == trial and again["rows"][0]["epochs"] == summary["rows"][0]["epochs"]
