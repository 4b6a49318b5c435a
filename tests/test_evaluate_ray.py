"""pipelines/evaluate.py on a local Ray: from an MLflow run id and from a run directory, final/*
metrics in the same run, and kNN / linear numbers equal to an in-process recomputation on the
same images (the Ray Data extraction keeps rows and features aligned)."""

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from cl_core import build_backbone
from cl_core.datasets import load_fashion_mnist
from cl_core.evaluation import FineTuneSettings, extract_features, knn_top1, linear_probe
from cl_core.transforms import normalize
from pipelines import evaluate
from pipelines.config import normalization
from pipelines.evaluation import downstream

ROOT = Path(__file__).resolve().parents[1]
TRAIN, TEST = 1000, 300


def in_process_features(run_dir: Path, config) -> tuple[torch.Tensor, ...]:
    encoder = build_backbone(config.backbone.name, config.data.channels, config.backbone.small_images)
    encoder.load_state_dict(torch.load(run_dir / "encoder.pt", weights_only=True))
    mean, std = normalization(config)
    out = []
    for split, n in (("train", TRAIN), ("test", TEST)):
        images, labels = load_fashion_mnist(split, limit=n)
        x = torch.from_numpy(images).unsqueeze(1)  # (n, 1, 28, 28) uint8
        out += [
            extract_features(encoder, x, transform=lambda b: normalize(b.float() / 255.0, mean, std)),
            torch.from_numpy(labels),
        ]
    return tuple(out)


def test_evaluate__from_a_run_id_logs_final_metrics_that_match_an_in_process_recomputation(smoke_run):
    config, run_dir, uri, run_id, _ = smoke_run  # shared with test_pipeline_ray: evaluation only adds final/*

    protocol = downstream.Protocol(
        train_size=TRAIN,
        test_size=TEST,
        fractions=(0.05,),
        workers=2,
        finetune=FineTuneSettings(epochs=1, min_steps=10),
    )
    results = downstream.evaluate(downstream.resolve_source(run_id, uri, [], None), protocol)
    assert set(results) == {"final/knn_top1", "final/linear_top1", "final/finetune_5pct_top1"}
    assert all(0.0 < v <= 1.0 for v in results.values())

    client = MlflowClient(uri)
    logged = client.get_run(run_id).data.metrics
    assert {k: logged[k] for k in results} == pytest.approx(results)
    [knn_point] = client.get_metric_history(run_id, "final/knn_top1")
    assert knn_point.step == 16  # the run's last step (2 epochs x 512 images / batch 64)
    assert "evaluation.json" in {a.path for a in client.list_artifacts(run_id)}

    train_f, train_y, test_f, test_y = in_process_features(run_dir, config)
    assert results["final/knn_top1"] == pytest.approx(
        knn_top1(train_f, train_y, test_f, test_y, config.eval.knn_k, config.eval.knn_temperature, 10),
        abs=1 / TEST,
    )
    assert results["final/linear_top1"] == pytest.approx(
        linear_probe(train_f, train_y, test_f, test_y, 10).top1, abs=2 / TEST
    )

    # The same encoder from its run directory through the CLI, no fine-tuning: the same numbers.
    again = evaluate.cli(
        [str(run_dir), "--train-size", str(TRAIN), "--test-size", str(TEST), "--fractions", "--workers", "1"]
    )
    assert again == {k: results[k] for k in ("final/knn_top1", "final/linear_top1")}


def test_resolve_source__names_what_it_could_not_find(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a path, nor a run id"):
        downstream.resolve_source("0123456789abcdef", f"sqlite:///{tmp_path / 'mlflow.db'}", [], None)
    (tmp_path / "loose").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.yaml"):
        downstream.resolve_source(str(tmp_path / "loose"), None, [], None)
    with pytest.raises(ValueError, match="--reference"):
        downstream.resolve_source(str(ROOT / "configs" / "smoke.yaml"), None, [], "imagenet")
