"""A Tune sweep of Train runs on the local 2-CPU Ray: ASHA stops a trial early, MLflow holds a
parent run and one child run per trial with the right status, the best config is ready to run,
placement groups are released, and a restored sweep re-runs nothing that finished."""

import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from pipelines import pretrain
from pipelines.config import load_config
from pipelines.tune import main

ROOT = Path(__file__).resolve().parents[1]
SMOKE_SPACE = ROOT / "tune_spaces" / "smoke.yaml"


def sweep_overrides(tmp_path: Path) -> list[str]:
    return [f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", f"checkpoint.output_dir={tmp_path / 'runs'}"]


def mlflow_runs(uri: str) -> list:
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, max_results=100)


def live_placement_groups(ray, wait_s: float = 60.0) -> list[dict]:
    """Placement groups not yet removed, after giving Train's cleaner up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        alive = [pg for pg in ray.util.placement_group_table().values() if pg["state"] != "REMOVED"]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(1.0)


def test_sweep__asha_stops_weak_trials_and_mlflow_nests_one_child_run_per_trial(ray_local, tmp_path):
    started = time.monotonic()
    summary = main(SMOKE_SPACE, sweep_overrides(tmp_path))
    print(f"sweep of 4 trials: {time.monotonic() - started:.0f} s")
    rows, uri, parent = summary["rows"], summary["tracking_uri"], summary["parent_run_id"]
    assert len(rows) == 4 and summary["num_errors"] == 0
    assert all(r["status"] in ("FINISHED", "KILLED") for r in rows), rows
    stopped = [r for r in rows if r["status"] == "KILLED"]
    assert stopped and all(r["epochs"] < 4 for r in stopped), rows
    assert all(r["epochs"] == 4 for r in rows if r["status"] == "FINISHED"), rows

    runs = {r.info.run_id: r for r in mlflow_runs(uri)}
    children = [r for r in runs.values() if r.data.tags.get("mlflow.parentRunId") == parent]
    assert len(runs) == 5 and len(children) == 4
    assert runs[parent].info.status == "FINISHED"
    client = MlflowClient(uri)
    by_trial = {r.data.tags["trial"]: r for r in children}
    for row in rows:
        child = by_trial[row["trial"]]
        assert child.info.status == row["status"]
        assert float(child.data.params["train.base_lr"]) == row["sampled"]["train.base_lr"]
        knn = client.get_metric_history(child.info.run_id, "eval/knn_top1")
        assert len(knn) == row["epochs"]  # the full history, one point per epoch run
    assert {"best_config.yaml", "summary.md"} <= {a.path for a in client.list_artifacts(parent)}

    best = load_config(summary["best_config"])  # loads and validates
    assert best.train.base_lr == summary["best"]["sampled"]["train.base_lr"]
    assert live_placement_groups(ray_local) == []

    # A restored finished sweep re-runs nothing: same trials and results, no new MLflow runs.
    again = main(None, [], resume=summary["sweep_dir"])
    assert [(r["trial"], r["final"], r["epochs"]) for r in again["rows"]] == [
        (r["trial"], r["final"], r["epochs"]) for r in rows
    ]
    assert len(mlflow_runs(uri)) == 5

    # The best config runs as a plain pretraining job (1 epoch here).
    config = load_config(summary["best_config"], ["train.epochs=1"])
    metrics = pretrain.main(config, tmp_path / "runs" / "best-1-epoch")
    assert 0.0 < metrics["eval/knn_top1"] <= 1.0
