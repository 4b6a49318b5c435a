"""The main job end to end on a local Ray: MLflow run contents, resume without lost or repeated
steps (MoCo queue restored; a truncated latest checkpoint falls back to the previous one),
2 workers vs 1 worker."""

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from pipelines.config import load_config
from pipelines.run import RUN_INFO, pretrain
from pipelines.train.checkpoints import STATE_FILE, verified_load

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


def history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key))


def run_info(run_dir: Path) -> tuple[str, str]:
    import json

    info = json.loads((run_dir / RUN_INFO).read_text())
    return info["tracking_uri"], info["run_id"]


def smoke_config(tmp_path: Path, *overrides: str):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return load_config(
        SMOKE, [f"tracking.tracking_uri={uri}", f"checkpoint.output_dir={tmp_path / 'runs'}", *overrides]
    )


def test_pretrain__logs_a_finished_mlflow_run_with_history_and_encoder(smoke_run):
    _, run_dir, uri, run_id, metrics = smoke_run
    assert run_info(run_dir) == (uri, run_id)
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["method.name"] == "simclr" and run.data.tags["dataset"] == "fashion_mnist"
    steps_per_epoch = 512 // 64
    assert [s for s, _ in history(uri, run_id, "eval/knn_top1")] == [steps_per_epoch, 2 * steps_per_epoch]
    assert len(history(uri, run_id, "train/loss")) >= 2
    assert 0.0 < metrics["eval/knn_top1"] <= 1.0
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(run_id)}
    assert {"config.yaml", "encoder.pt", "curves.png"} <= artifacts
    encoder = torch.load(run_dir / "encoder.pt", weights_only=True)
    assert any(k.endswith("weight") for k in encoder)


def test_pretrain__resumed_run_continues_the_step_counter_and_the_moco_queue(ray_local, tmp_path):
    overrides = [
        "method.name=moco",
        "method.params={hidden_dim: 64, projection_dim: 32, queue_size: 1024}",
        "train.epochs=3",
    ]
    config = smoke_config(tmp_path, *overrides)
    run_dir = tmp_path / "runs" / "moco-resume"
    pretrain(config, run_dir, stop_after_epochs=1)
    uri, run_id = run_info(run_dir)
    assert [s for s, _ in history(uri, run_id, "train/epoch")] == [8]
    pretrain(config, run_dir, resume=True, stop_after_epochs=1)
    assert [s for s, _ in history(uri, run_id, "train/epoch")] == [8, 16]
    assert [v for _, v in history(uri, run_id, "train/epoch")] == [1.0, 2.0]
    second = sorted(p for p in run_dir.glob("checkpoint_*") if p.is_dir())[-1]
    state = verified_load(second / STATE_FILE)
    assert state["step"] == 16 and state["epoch"] == 2
    # 16 steps x 64 keys = 1024 pushes: the pointer is back at 0 only if epoch 1's queue was restored.
    assert int(state["model"]["queue.ptr"]) == 0

    # The latest checkpoint truncated (a crash mid-copy): the run resumes from epoch 1's, redoes
    # epoch 2 without logging its steps twice, and finishes.
    data = (second / STATE_FILE).read_bytes()
    (second / STATE_FILE).write_bytes(data[: len(data) // 2])
    pretrain(config, run_dir, resume=True)
    assert [s for s, _ in history(uri, run_id, "train/epoch")] == [8, 16, 24]
    assert [v for _, v in history(uri, run_id, "train/epoch")] == [1.0, 2.0, 3.0]
    final = sorted(p for p in run_dir.glob("checkpoint_*") if p.is_dir())[-1]
    state = verified_load(final / STATE_FILE)
    assert state["step"] == 24 and state["epoch"] == 3
    assert int(state["model"]["queue.ptr"]) == 512  # 24 x 64 pushes on top of epoch 1's restored queue
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["checkpoint.resumed_from_epoch"] == "1"
    assert second.name in run.data.tags["checkpoint.skipped_corrupt"]


def test_two_workers__match_one_worker_for_the_same_global_batch(ray_local, tmp_path):
    results = {}
    for workers in (1, 2):
        config = smoke_config(
            tmp_path, f"scaling.num_workers={workers}", "scaling.cpus_per_worker=0.5", "train.epochs=1"
        )
        results[workers] = pretrain(config, tmp_path / "runs" / f"workers-{workers}")
    assert results[2]["train/loss"] == pytest.approx(results[1]["train/loss"], rel=0.1)
    assert results[2]["eval/knn_top1"] == pytest.approx(results[1]["eval/knn_top1"], abs=0.08)
