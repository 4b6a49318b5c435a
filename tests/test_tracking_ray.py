"""The session's smoke run, tracked in a real MLflow server: the encoder is an MLflow model (loads
to the same embeddings as ``encoder.pt``, registered, evaluable from ``models:/``), and the run has
its dataset input, system metrics and git commit. A server outage plus a killed Train worker: the
run's metric history has every step exactly once."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import mlflow
import mlflow.pytorch
import numpy as np
import torch
from mlflow.tracking import MlflowClient

from cl_core import build_backbone
from cl_core.datasets.fashion_mnist import FASHION_MNIST_DIR, load_fashion_mnist
from cl_core.transforms import normalize
from pipelines.config import load_config, normalization
from pipelines.evaluation import downstream
from pipelines.run import RUN_INFO, pretrain
from pipelines.tracking.metric_logger import PENDING_FILE
from tests.mlflow_server import SMOKE_MODEL, MlflowServer

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"
STEPS_PER_EPOCH = 8  # 512 images / batch 64


def first_test_images(config, n: int = 8) -> torch.Tensor:
    """The first ``n`` Fashion-MNIST test images, normalised as the run trained ((n, 1, 28, 28))."""
    images, _ = load_fashion_mnist("test", FASHION_MNIST_DIR, limit=n)
    mean, std = normalization(config)
    return normalize(torch.from_numpy(np.asarray(images)).unsqueeze(1).float() / 255.0, mean, std)


def trained_encoder(config, run_dir: Path) -> torch.nn.Module:
    encoder = build_backbone(config.backbone.name, config.data.channels, config.backbone.small_images)
    encoder.load_state_dict(torch.load(run_dir / "encoder.pt", weights_only=True))
    return encoder.eval()


def test_smoke_run__the_mlflow_model_gives_the_embeddings_of_encoder_pt_and_is_registered(smoke_run):
    config, run_dir, uri, run_id, _ = smoke_run
    x = first_test_images(config)
    with torch.no_grad():
        expected = trained_encoder(config, run_dir)(x)  # (8, d)
    mlflow.set_tracking_uri(uri)
    try:
        model = mlflow.pytorch.load_model(f"runs:/{run_id}/encoder")
        registered = mlflow.pytorch.load_model(f"models:/{SMOKE_MODEL}/1")
        info = mlflow.models.get_model_info(f"runs:/{run_id}/encoder")
    finally:
        mlflow.set_tracking_uri(None)
    with torch.no_grad():
        assert torch.allclose(model(x), expected, atol=1e-5)
        assert torch.allclose(registered(x), expected, atol=1e-5)
    mean, std = normalization(config)
    prep = info.metadata["preprocessing"]
    assert (prep["mean"], prep["std"]) == (list(mean), list(std))
    assert (prep["image_size"], prep["channels"], prep["backbone"]) == (28, 1, config.backbone.name)
    assert info.signature is not None and info.saved_input_example_info is not None
    (version,) = MlflowClient(uri).search_model_versions(f"name = '{SMOKE_MODEL}'")
    assert version.run_id == run_id and version.version == "1"

    # evaluate.py's source: the registered version's weights and preprocessing, its run's config.
    source = downstream.resolve_source(f"models:/{SMOKE_MODEL}/1", uri, [], None)
    state = torch.load(run_dir / "encoder.pt", weights_only=True)
    assert source.run_id == run_id and source.config == config
    assert set(source.encoder_state) == set(state)
    assert all(torch.equal(source.encoder_state[k], state[k]) for k in state)
    assert source.normalization() == (tuple(mean), tuple(std))


def test_smoke_run__has_its_dataset_input_system_metrics_git_commit_and_training_experiment_kind(smoke_run):
    config, _, uri, run_id, _ = smoke_run
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert json.loads(dataset.source)["uri"] == str(FASHION_MNIST_DIR) and len(dataset.digest) == 16
    assert json.loads(dataset.profile)["num_rows"] == 512
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "train"
    assert any(k.startswith("system/cpu_utilization") for k in run.data.metrics), sorted(run.data.metrics)
    tags = run.data.tags
    head = os.popen(f"git -C {Path(__file__).resolve().parents[1]} rev-parse HEAD").read().strip()
    assert tags["mlflow.source.git.commit"] == head and tags["mlflow.user"]
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"]
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def outage_and_kill(server: MlflowServer, run_dir: Path, address: str, events: list[str]) -> None:
    """Once epoch 1 is in MLflow, stop the server; once rank 0 has kept epoch 2's loss in its
    pending file (the server is down), SIGKILL the Train worker; then start the server again on the
    same port and store."""
    from ray.util.state import list_actors

    deadline = time.monotonic() + 300
    while not (run_dir / RUN_INFO).is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    run_id = json.loads((run_dir / RUN_INFO).read_text())["run_id"]
    client = MlflowClient(server.uri)
    while time.monotonic() < deadline and not client.get_metric_history(run_id, "eval/knn_top1"):
        time.sleep(0.2)
    server.stop()
    events.append("server stopped")
    pending = run_dir / PENDING_FILE
    while time.monotonic() < deadline:
        lines = pending.read_text().splitlines() if pending.is_file() else []
        if any(json.loads(x)["key"] == "train/loss" and json.loads(x)["step"] == 16 for x in lines):
            break
        time.sleep(0.1)
    workers = list_actors(
        address=address, filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")]
    )
    if workers:
        os.kill(workers[0].pid, signal.SIGKILL)
        events.append("worker killed")
    server.start()
    events.append("server started")


def test_server_outage_and_a_killed_worker__every_step_is_logged_exactly_once(ray_local, tmp_path):
    server = MlflowServer(tmp_path / "server").start()
    try:
        config = load_config(
            SMOKE,
            ["train.epochs=3", f"tracking.tracking_uri={server.uri}", f"checkpoint.output_dir={tmp_path}"],
        )
        run_dir = tmp_path / "outage"
        events: list[str] = []
        address = ray_local.get_runtime_context().gcs_address
        chaos = threading.Thread(target=outage_and_kill, args=(server, run_dir, address, events))
        chaos.start()
        metrics = pretrain(config, run_dir)
        chaos.join()
        assert events == ["server stopped", "worker killed", "server started"]
        assert metrics["train/step"] == 3 * STEPS_PER_EPOCH
        client = MlflowClient(server.uri)
        run_id = json.loads((run_dir / RUN_INFO).read_text())["run_id"]
        assert client.get_run(run_id).info.status == "FINISHED"
        for key in ("train/loss", "train/lr", "eval/knn_top1", "train/epoch"):
            steps = sorted(m.step for m in client.get_metric_history(run_id, key))
            assert steps == [8, 16, 24], (key, steps)
        step_losses = sorted(m.step for m in client.get_metric_history(run_id, "train/step_loss"))
        assert step_losses == [10, 20], step_losses  # every 10th step, once
        assert not (run_dir / PENDING_FILE).read_text()  # everything replayed
    finally:
        if "chaos" in locals():
            chaos.join(330)  # a failed run: the thread may still be restarting the server
        server.stop()
