"""`ray start --head` on loopback, `ray job submit --working-dir . -- python pipelines/pretrain.py
configs/<smoke>.yaml` for the image and the video (CVRL) smoke jobs: each job SUCCEEDS and
MLflow holds a finished run with params, history and the encoder; then the cluster is stopped
(tests/local_cluster.py)."""

import pytest
from mlflow.tracking import MlflowClient

from tests.local_cluster import LocalCluster


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(head_cpus=2) as started:
        yield started


@pytest.mark.parametrize("config,epoch_steps", [("smoke", 8), ("cvrl_smoke", 4)])
def test_ray_job_submit__runs_the_smoke_job_and_tracks_it(cluster, tmp_path, config, epoch_steps):
    job = cluster.submit(
        ["python", "pipelines/pretrain.py", f"configs/{config}.yaml"], {"SSL_PIPELINE_HOME": str(tmp_path)}
    )
    assert job.returncode == 0 and "succeeded" in job.stdout, job.stdout[-3000:] + job.stderr[-3000:]
    assert "TrainingReport(" not in job.stdout and "execution finished in" not in job.stdout  # Ray's noise
    assert f"epoch 2/2 | step {2 * epoch_steps}/{2 * epoch_steps}" in job.stdout  # our progress line
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "ssl-pretrain"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["name"] == config
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "eval/knn_top1")]
    assert steps == [epoch_steps, 2 * epoch_steps]  # 2 epochs, an eval point after each
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 2
    assert "encoder.pt" in {a.path for a in client.list_artifacts(run.info.run_id)}
