"""`ray start --head` on loopback, `ray job submit --working-dir . -- python pipelines/pretrain.py
configs/smoke.yaml`: the job SUCCEEDS and MLflow holds a finished run with params, history and
the encoder; then the cluster is stopped (tests/local_cluster.py)."""

from mlflow.tracking import MlflowClient

from tests.local_cluster import LocalCluster


def test_ray_job_submit__runs_the_smoke_job_and_tracks_it(tmp_path):
    with LocalCluster(head_cpus=2) as cluster:
        job = cluster.submit(["python", "pipelines/pretrain.py", "configs/smoke.yaml"],
                             {"SSL_PIPELINE_HOME": str(tmp_path)})  # fmt: skip
        assert job.returncode == 0 and "succeeded" in job.stdout, job.stdout[-3000:] + job.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "ssl-pretrain"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["name"] == "smoke"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "eval/knn_top1")] == [8, 16]
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) >= 2
    assert "encoder.pt" in {a.path for a in client.list_artifacts(run.info.run_id)}
