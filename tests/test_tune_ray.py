"""A Tune sweep of Train runs on the local 2-CPU Ray: ASHA stops a trial early, MLflow holds a
parent run and one child run per trial with the right status, the best config is ready to run,
placement groups are released, and a restored sweep re-runs nothing that finished."""

import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from pipelines.config import load_config
from pipelines.run import pretrain
from pipelines.sweep.driver import run_sweep

ROOT = Path(__file__).resolve().parents[1]
SMOKE_SPACE = ROOT / "tune_spaces" / "smoke.yaml"
EPOCHS = 3  # tune_spaces/smoke.yaml


def sweep_overrides(tmp_path: Path) -> list[str]:
    return [
        f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"checkpoint.output_dir={tmp_path / 'runs'}",
    ]


def mlflow_runs(uri: str) -> list:
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, max_results=100)


def live_train_resources(ray, wait_s: float = 60.0) -> tuple[list[str], list[str]]:
    """This job's placement groups not removed and Train actors alive, after up to ``wait_s``
    (the job filter: another process's ``ray.init(address="auto")`` may attach to this instance)."""
    from ray.util.state import list_actors

    job = ray.get_runtime_context().get_job_id()
    deadline = time.monotonic() + wait_s
    while True:
        table = ray.util.placement_group_table()
        groups = [pg for pg, info in table.items() if info["state"] != "REMOVED" and pg.endswith(job)]
        actors = [
            a.class_name
            for a in list_actors(
                address=ray.get_runtime_context().gcs_address,
                filters=[("state", "=", "ALIVE"), ("job_id", "=", job)],
            )
            if a.class_name in ("TrainController", "RayTrainWorker")
        ]
        if (not groups and not actors) or time.monotonic() > deadline:
            return groups, actors
        time.sleep(1.0)


def test_sweep__asha_stops_weak_trials_and_mlflow_nests_one_child_run_per_trial(ray_local, tmp_path):
    started = time.monotonic()
    summary = run_sweep(SMOKE_SPACE, sweep_overrides(tmp_path))
    print(f"sweep of 4 trials: {time.monotonic() - started:.0f} s")
    rows, uri, parent = summary["rows"], summary["tracking_uri"], summary["parent_run_id"]
    assert len(rows) == 4 and summary["num_errors"] == 0
    assert all(r["status"] in ("FINISHED", "KILLED") for r in rows), rows
    stopped = [r for r in rows if r["status"] == "KILLED"]
    assert stopped and all(r["epochs"] < EPOCHS for r in stopped), rows
    assert all(r["epochs"] == EPOCHS for r in rows if r["status"] == "FINISHED"), rows

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
        knn = [m.value for m in client.get_metric_history(child.info.run_id, "eval/knn_top1")]
        # The full history of what Tune judged, equal to Tune's; a stopped trial's workers may
        # have logged the epoch in flight before the stop reached them.
        assert len(row["history"]) == row["epochs"] and knn[: row["epochs"]] == row["history"], (row, knn)
        if row["status"] == "FINISHED":
            assert len(knn) == EPOCHS
        else:
            assert child.data.tags["tune.stopped_after_epoch"] == str(row["epochs"])
    assert {"best_config.yaml", "summary.md"} <= {a.path for a in client.list_artifacts(parent)}

    best = load_config(summary["best_config"])  # loads and validates
    assert best.train.base_lr == summary["best"]["sampled"]["train.base_lr"]
    assert live_train_resources(ray_local) == ([], [])

    # A restored finished sweep re-runs nothing: same trials and results, no new MLflow runs.
    again = run_sweep(None, [], resume=summary["sweep_dir"])
    assert [(r["trial"], r["final"], r["epochs"]) for r in again["rows"]] == [
        (r["trial"], r["final"], r["epochs"]) for r in rows
    ]
    assert len(mlflow_runs(uri)) == 5

    # The best config runs as a plain pretraining job (1 epoch here).
    config = load_config(summary["best_config"], ["train.epochs=1"])
    metrics = pretrain(config, tmp_path / "runs" / "best-1-epoch")
    assert metrics["train/epoch"] == 1 and 0.0 < metrics["eval/knn_top1"] <= 1.0


def test_sweep__goes_on_after_a_failed_trial_and_a_restore_reruns_only_that_trial(ray_local, tmp_path):
    space = tmp_path / "one_bad_trial.yaml"  # hidden_dim -1 passes validation, fails building the model
    space.write_text(
        f"base_config: {ROOT / 'configs' / 'smoke.yaml'}\n"
        "overrides: [train.epochs=1, checkpoint.max_failures=0]\n"
        "scheduler: {max_t: 1, grace_period: 1, reduction_factor: 2}\n"
        "max_concurrent_trials: 1\n"
        "space:\n  method.params.hidden_dim: {grid: [64, -1]}\n"
    )
    summary = run_sweep(space, sweep_overrides(tmp_path))
    rows, uri = summary["rows"], summary["tracking_uri"]
    assert [r["status"] for r in rows] == ["FINISHED", "FAILED"] and summary["num_errors"] == 1
    assert summary["best"]["trial"] == rows[0]["trial"]
    assert len(mlflow_runs(uri)) == 3

    again = run_sweep(None, [], resume=summary["sweep_dir"])  # the errored trial runs (and fails) again
    assert [(r["trial"], r["final"], r["status"]) for r in again["rows"]] == [
        (r["trial"], r["final"], r["status"]) for r in rows
    ]
    assert len(mlflow_runs(uri)) == 3  # the same child runs, reopened, none added
    finished = next(r for r in mlflow_runs(uri) if r.data.tags.get("trial") == rows[0]["trial"])
    assert len(MlflowClient(uri).get_metric_history(finished.info.run_id, "eval/knn_top1")) == 1
