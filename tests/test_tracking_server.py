"""Against a real MLflow tracking server (the session's ``mlflow server`` subprocess): a logging
process killed while the server is down (hung, then dead) loses and repeats no point once a
restarted logger has replayed its pending file and the server is back (same port, same backend
store)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from pipelines.tracking.metric_logger import MetricLogger
from pipelines.tracking.mlflow_run import start_run

CHECKPOINT_EVERY = 50  # the child "checkpoints" (persists its queue) every 50 steps, as a worker does
STEPS = 200

# A training loop's rank 0: logs every step, persists before each checkpoint, prints its progress.
CHILD = """
import json, sys, threading, time
from pipelines.tracking.metric_logger import MetricLogger
uri, run_id, spool = sys.argv[1:4]
logger = MetricLogger(uri, run_id, spool, queue_size=16, retry_s=0.5)
callers, send = set(), logger.client.log_batch
def log_batch(*args, **kwargs):  # which threads reach the network
    callers.add(threading.current_thread().name)
    return send(*args, **kwargs)
logger.client.log_batch = log_batch
logger.start()
for step in range(1, 100_000):
    logger.log({"train/step_loss": 1.0 / step, "train/lr": 0.1}, step)
    if step % %(every)d == 0:
        logger.persist()
    on_main = threading.main_thread().name in callers
    print(json.dumps({"step": step, "main_thread_sent": on_main}), flush=True)
    time.sleep(0.02)
""".replace("%(every)d", str(CHECKPOINT_EVERY))


def follow(process: subprocess.Popen, last: dict) -> None:
    for line in process.stdout:
        last.update(json.loads(line))


def wait_for_step(last: dict, step: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while last.get("step", 0) < step:
        assert time.monotonic() < deadline, f"the child did not reach step {step}"
        time.sleep(0.02)


@pytest.mark.slow
def test_metric_logger__a_hung_then_dead_server_and_a_killed_logger_lose_and_repeat_no_point(
    mlflow_server, tmp_path
):
    uri = mlflow_server.uri
    run_id = start_run(uri, "outage", "outage", {}, {})
    spool = tmp_path / "mlflow-pending.jsonl"
    # A request to the hung server stays in flight until the child is killed.
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, uri, run_id, str(spool)], stdout=subprocess.PIPE, text=True, env=env
    )
    last: dict = {}
    threading.Thread(target=follow, args=(child, last), daemon=True).start()
    try:
        wait_for_step(last, 60)
        os.killpg(mlflow_server.process.pid, signal.SIGSTOP)  # hung: requests wait, the queue fills
        wait_for_step(last, 140)
        child.kill()  # SIGKILL while the server is down: its queue and the request in flight are lost
        child.wait()
        mlflow_server.stop()  # then dead for a while
    finally:
        if mlflow_server.process is not None:
            mlflow_server.stop()
        mlflow_server.start()
    killed_at = last["step"]
    assert last["main_thread_sent"] is False, "the training thread itself sent to the server"
    assert spool.read_text(), "nothing was kept while the server was down"

    # The restarted worker resumes from the last checkpoint: it replays the pending file, then
    # recomputes (and logs) the steps after the checkpoint; those already kept are skipped.
    checkpoint = killed_at // CHECKPOINT_EVERY * CHECKPOINT_EVERY
    resumed = MetricLogger(uri, run_id, spool).start()
    for step in range(checkpoint + 1, STEPS + 1):
        resumed.log({"train/step_loss": 1.0 / step, "train/lr": 0.1}, step)
    assert resumed.close() == 0

    client = MlflowClient(uri)
    for key in ("train/step_loss", "train/lr"):
        steps = sorted(m.step for m in client.get_metric_history(run_id, key))
        assert steps == list(range(1, STEPS + 1)), (key, killed_at, checkpoint)
    losses = {m.step: m.value for m in client.get_metric_history(run_id, "train/step_loss")}
    assert all(losses[s] == pytest.approx(1.0 / s) for s in losses)
