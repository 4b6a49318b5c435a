"""`ray start --head` on loopback, `ray job submit --working-dir . -- python pipelines/pretrain.py
configs/smoke.yaml`: the job SUCCEEDS and MLflow holds a finished run with params, history and
the encoder. The cluster gets its own temp dir, so cleanup stops only its processes, and its own
dashboard-agent port (the default, 52365, is taken when the tests' local instance is up)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_cluster(temp_dir: Path) -> None:
    """Kill every process of the cluster started with ``--temp-dir temp_dir`` (``ray stop``
    would also stop the other Ray instance of this test session)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(temp_dir).encode() in cmdline.read_bytes():
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue  # the process ended meanwhile


def test_ray_job_submit__runs_the_smoke_job_and_tracks_it(tmp_path):
    temp_dir = Path("/tmp") / f"ray-job-test-{os.getpid()}"  # short: Ray's socket paths have a length limit
    dashboard = free_port()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", RAY_AUTH_MODE="token")
    ray = str(Path(sys.executable).parent / "ray")
    subprocess.run([ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={free_port()}", "--num-cpus=2",
                    "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={free_port()}",
                    "--disable-usage-stats", f"--temp-dir={temp_dir}"],
                   check=True, env=env, cwd=ROOT, capture_output=True, timeout=120)  # fmt: skip
    try:
        runtime_env = f'{{"env_vars": {{"SSL_PIPELINE_HOME": "{tmp_path}"}}}}'
        for _ in range(30):  # the head's job agent registers a few seconds after `ray start`
            job = subprocess.run([ray, "job", "submit", "--address", f"http://127.0.0.1:{dashboard}", "--working-dir",
                                  ".", "--runtime-env-json", runtime_env, "--", "python", "pipelines/pretrain.py",
                                  "configs/smoke.yaml"], env=env, cwd=ROOT, capture_output=True, text=True,
                                 timeout=600)  # fmt: skip
            if "No available agent" not in job.stderr:
                break
            time.sleep(2)
        assert job.returncode == 0 and "succeeded" in job.stdout, job.stdout[-3000:] + job.stderr[-3000:]
    finally:
        stop_cluster(temp_dir)
        time.sleep(1)
        shutil.rmtree(temp_dir, ignore_errors=True)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "ssl-pretrain"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["name"] == "smoke"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "eval/knn_top1")] == [8, 16]
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) >= 2
    assert "encoder.pt" in {a.path for a in client.list_artifacts(run.info.run_id)}
