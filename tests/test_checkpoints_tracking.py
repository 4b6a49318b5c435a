"""Checkpoint files round-trip, reject corruption and pickled objects; the MLflow logger never
duplicates a step on resume, never waits on the network, and keeps what the server does not take;
a tracking server that refuses the credentials stops a job before any Ray work."""

import http.server
import json
import pickle
import socket
import threading
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from pipelines.config import ConfigError, load_config
from pipelines.tracking.metric_logger import MetricLogger
from pipelines.tracking.mlflow_run import (
    TrackingStoreError,
    TrackingUnavailableError,
    end_run,
    fail_run,
    reachable_uri,
    redact,
    start_run,
    wait_until_answers,
)
from pipelines.train.checkpoints import (
    STATE_FILE,
    CorruptCheckpointError,
    atomic_save,
    export_encoder,
    load_newest_valid,
    verified_load,
)


class NotATensor:
    pass


def test_atomic_save__round_trips_tensors_and_plain_values(tmp_path):
    state = {"model": {"w": torch.arange(6.0).view(2, 3)}, "step": 7, "metrics": {"loss": 1.5}}
    path = atomic_save(state, tmp_path / "state.pt")
    loaded = verified_load(path)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["step"] == 7
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"


def test_verified_load__detects_a_truncated_file(tmp_path):
    path = atomic_save({"w": torch.randn(100)}, tmp_path / "state.pt")
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(CorruptCheckpointError, match="sha256"):
        verified_load(path)


def test_verified_load__refuses_arbitrary_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": NotATensor()}, path)
    with pytest.raises(CorruptCheckpointError, match="cannot be loaded"):
        verified_load(path)


def test_verified_load__missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CorruptCheckpointError, match="does not exist"):
        verified_load(tmp_path / "nope.pt")


def test_load_newest_valid__falls_back_to_the_previous_checkpoint_when_the_latest_is_corrupt(tmp_path):
    older, latest = tmp_path / "checkpoint_1", tmp_path / "checkpoint_2"
    atomic_save({"epoch": 1, "w": torch.ones(3)}, older / STATE_FILE)
    atomic_save({"epoch": 2, "w": torch.full((3,), 2.0)}, latest / STATE_FILE)
    state, used, skipped = load_newest_valid([latest, older])
    assert used == latest and state["epoch"] == 2 and skipped == []
    data = (latest / STATE_FILE).read_bytes()
    (latest / STATE_FILE).write_bytes(data[: len(data) // 2])  # a crash mid-copy
    state, used, skipped = load_newest_valid([latest, older])
    assert used == older and state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert len(skipped) == 1 and "does not match its sha256" in skipped[0]
    (older / STATE_FILE).unlink()
    with pytest.raises(CorruptCheckpointError, match="no usable checkpoint: .*checkpoint_2.*checkpoint_1"):
        load_newest_valid([latest, older])


def test_export_encoder__is_a_plain_state_dict_loadable_without_this_project(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    path = export_encoder(net, tmp_path)
    loaded = torch.load(path, weights_only=True)
    assert set(loaded) == set(net.state_dict()) and pickle.dumps(loaded)
    fresh = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    fresh.load_state_dict(loaded)
    assert torch.equal(fresh[0].weight, net[0].weight)


def test_metric_logger__skips_steps_already_logged_after_a_resume(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = start_run(uri, "exp", "run", {"a.b": 1, "c": None}, {"method": "simclr"})
    first = MetricLogger(uri, run_id).start()
    for step in (10, 20, 30):
        first.log({"train/loss": step / 10}, step)
    assert first.close() == 0
    resumed = MetricLogger(uri, run_id).start()  # a restarted worker resumes from the step-20 checkpoint
    for step in (30, 40):
        resumed.log({"train/loss": 99.0, "eval/knn_top1": 0.5}, step)
    assert resumed.close() == 0
    end_run(uri, run_id)
    history = sorted((m.step, m.value) for m in first.client.get_metric_history(run_id, "train/loss"))
    assert history == [(10, 1.0), (20, 2.0), (30, 3.0), (40, 99.0)]
    knn = sorted(m.step for m in first.client.get_metric_history(run_id, "eval/knn_top1"))
    assert knn == [30, 40]
    run = first.client.get_run(run_id)
    assert run.data.params == {"a.b": "1", "c": "None"} and run.info.status == "FINISHED"
    assert run.data.tags["method"] == "simclr" and run.data.tags["mlflow.user"]  # resolve_tags' too
    kind = first.client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"]
    assert kind == "custom_model_development"  # MLflow 3's UI: runs table, not GenAI traces


def test_start_run__logs_params_in_batches_of_100(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    calls = []
    original = MlflowClient.log_batch

    def counting(self, run_id, metrics=(), params=(), tags=(), **kwargs):
        calls.append(len(params))
        return original(self, run_id, metrics, params, tags, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", counting)
    run_id = start_run(uri, "exp", "run", {f"p{i:03d}": i for i in range(250)}, {})
    assert calls == [100, 100, 50]
    assert len(MlflowClient(uri).get_run(run_id).data.params) == 250


class FlakyClient:
    """An MlflowClient whose ``log_batch`` fails while ``down`` (a tracking server outage)."""

    def __init__(self, client) -> None:
        self.client, self.down = client, False

    def log_batch(self, *args, **kwargs):
        if self.down:
            raise ConnectionError("Connection refused")
        return self.client.log_batch(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_metric_logger__keeps_points_while_mlflow_is_down_and_uploads_them_when_it_is_back(tmp_path, caplog):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = start_run(uri, "exp", "run", {}, {})
    logger = MetricLogger(uri, run_id, spool=tmp_path / "pending.jsonl", retry_s=0.1)
    flaky = logger.client = FlakyClient(logger.client)
    logger.start()
    logger.log({"train/loss": 1.0}, 10)
    assert logger.flush() == 0
    flaky.down = True
    logger.log({"train/loss": 2.0}, 20)  # no exception: training goes on
    logger.log({"train/loss": 3.0, "eval/knn_top1": 0.5}, 30)
    assert logger.flush(timeout=5) == 3
    assert [m.step for m in flaky.get_metric_history(run_id, "train/loss")] == [10]
    spooled = [json.loads(line) for line in (tmp_path / "pending.jsonl").read_text().splitlines()]
    assert [(p["key"], p["step"], p["value"]) for p in spooled] == [
        ("train/loss", 20, 2.0),
        ("train/loss", 30, 3.0),
        ("eval/knn_top1", 30, 0.5),
    ]
    assert sum("is unreachable" in r.message and "pending.jsonl" in r.message for r in caplog.records) == 1
    flaky.down = False
    logger.log({"train/loss": 4.0}, 40)
    assert logger.close() == 0
    history = sorted((m.step, m.value) for m in flaky.get_metric_history(run_id, "train/loss"))
    assert history == [(10, 1.0), (20, 2.0), (30, 3.0), (40, 4.0)]  # in order, none lost or doubled
    assert [m.step for m in flaky.get_metric_history(run_id, "eval/knn_top1")] == [30]
    assert any("answers again: uploaded" in r.message for r in caplog.records)
    assert (tmp_path / "pending.jsonl").read_text() == ""


class SlowClient(FlakyClient):
    """An MlflowClient whose ``log_batch`` hangs until ``release`` is set (a server that accepted
    the connection and does not answer)."""

    def __init__(self, client) -> None:
        super().__init__(client)
        self.release = threading.Event()
        self.callers: set[threading.Thread] = set()  # threads that reached the network

    def log_batch(self, *args, **kwargs):
        self.callers.add(threading.current_thread())
        self.release.wait()
        return self.client.log_batch(*args, **kwargs)


def test_metric_logger__never_waits_on_a_hung_server_and_spills_a_full_queue_to_the_pending_file(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = start_run(uri, "exp", "run", {}, {})
    logger = MetricLogger(uri, run_id, spool=tmp_path / "pending.jsonl", queue_size=2)
    slow = logger.client = SlowClient(logger.client)
    logger.start()
    for step in range(1, 41):
        logger.log({"train/step_loss": 1.0 / step}, step)  # would hang here if it sent itself
    kept = [json.loads(line)["step"] for line in (tmp_path / "pending.jsonl").read_text().splitlines()]
    assert len(kept) >= 40 - 2 - 1  # all but the queue and the batch in flight went to the file
    slow.release.set()
    assert logger.close() == 0
    steps = sorted(m.step for m in slow.get_metric_history(run_id, "train/step_loss"))
    assert steps == list(range(1, 41))
    assert slow.callers and threading.current_thread() not in slow.callers  # only the sender sent


def pending_points(spool: Path) -> list[tuple[str, int]]:
    lines = spool.read_text().splitlines() if spool.is_file() else []
    return sorted((json.loads(line)["key"], json.loads(line)["step"]) for line in lines)


def test_metric_logger_persist__waits_until_the_batch_the_sender_took_is_in_the_pending_file(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = start_run(uri, "exp", "run", {}, {})
    taken = threading.Event()

    class SlowDisk(MetricLogger):  # the sender holds a batch: off the queue, not yet in the file
        def _append(self, points):
            if threading.current_thread() is self._thread:
                taken.set()
                time.sleep(0.5)
            super()._append(points)

    spool = tmp_path / "pending.jsonl"
    logger = SlowDisk(uri, run_id, spool=spool)
    logger.client = FlakyClient(logger.client)
    logger.client.down = True
    logger.start()
    logger.log({"train/loss": 1.0}, 8)
    assert taken.wait(10)
    logger.persist()  # a checkpoint follows: a worker killed after it must find step 8 on disk
    assert pending_points(spool) == [("train/loss", 8)]
    assert logger.close() == 1  # the server is still down: kept for the next start


@pytest.mark.parametrize("server_up", [False, True])
def test_log_and_report__the_epochs_points_are_kept_before_the_epoch_is_reported(
    tmp_path, monkeypatch, server_up
):
    # A worker killed once the epoch-3 checkpoint is reported resumes after epoch 3, and Tune may
    # kill a trial on any report (ASHA): the points must be in MLflow already, or (server down)
    # in the pending file (CI lost step 24 when they were logged after the report).
    from pipelines.train import worker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = start_run(uri, "exp", "run", {}, {})
    spool = tmp_path / "pending.jsonl"
    logger = MetricLogger(uri, run_id, spool=spool)
    logger.client = FlakyClient(logger.client)
    logger.client.down = not server_up
    logger.start()
    at_report: list[tuple] = []

    def report(*args):
        steps = {
            k: [m.step for m in logger.client.get_metric_history(run_id, k)]
            for k in ("train/loss", "eval/knn_top1")
        }
        at_report.append((args[-1], pending_points(spool), steps))

    monkeypatch.setattr(worker, "_report", report)
    for checkpoint in (False, True):
        worker._log_and_report(
            logger,
            None,
            None,
            8 * (1 + checkpoint),
            1 + checkpoint,
            {"train/loss": 2.5, "eval/knn_top1": 0.6},
            0,
            checkpoint,
        )
    if server_up:
        assert at_report == [
            (False, [], {"train/loss": [8], "eval/knn_top1": [8]}),
            (True, [], {"train/loss": [8, 16], "eval/knn_top1": [8, 16]}),
        ]
    else:
        empty = {"train/loss": [], "eval/knn_top1": []}
        assert at_report == [
            (False, [("eval/knn_top1", 8), ("train/loss", 8)], empty),
            (
                True,
                [("eval/knn_top1", 8), ("eval/knn_top1", 16), ("train/loss", 8), ("train/loss", 16)],
                empty,
            ),
        ]
    logger.close()


def test_metric_logger_tag__is_set_or_warned_about_never_raised(tmp_path, caplog):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = start_run(uri, "exp", "run", {}, {})
    logger = MetricLogger(uri, run_id)
    logger.tag("checkpoint.resumed_from_epoch", "1")
    assert logger.client.get_run(run_id).data.tags["checkpoint.resumed_from_epoch"] == "1"

    class Down:
        def set_tag(self, *args):
            raise ConnectionError("Connection refused")

    logger.client = Down()
    logger.tag("checkpoint.skipped_corrupt", "checkpoint_2: truncated")  # training goes on
    assert (
        "could not set tag checkpoint.skipped_corrupt" in caplog.text and "Connection refused" in caplog.text
    )


def test_reachable_uri__falls_back_to_a_local_store_when_the_server_does_not_answer(
    tmp_path, monkeypatch, caplog
):
    with socket.socket() as s:  # a port nothing listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = reachable_uri(f"http://127.0.0.1:{port}", tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert f"MLflow at http://127.0.0.1:{port} does not answer" in caplog.text and uri in caplog.text
    local = f"sqlite:///{tmp_path / 'other.db'}"
    assert reachable_uri(local, tmp_path) == local  # a file store is always used as given


class Answers401(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802  (http.server's name)
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="mlflow"')
        self.end_headers()
        self.wfile.write(b"You are not authenticated.")

    def log_message(self, *args):
        pass


class BehindAProxy(http.server.BaseHTTPRequestHandler):
    """A proxy whose MLflow behind it is down (HTTP 503) for the first ``down_for`` requests."""

    down_for = 2
    seen = 0

    def do_GET(self):  # noqa: N802  (http.server's name)
        type(self).seen += 1
        up = type(self).seen > type(self).down_for
        self.send_response(200 if up else 503)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"experiments": []}' if up else b"Service Unavailable")

    def log_message(self, *args):
        pass


def serve(handler) -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_wait_until_answers__waits_out_an_outage_and_gives_up_after_its_timeout(tmp_path, capsys):
    assert wait_until_answers(f"sqlite:///{tmp_path / 'mlflow.db'}", 0)  # a local store: at once

    class Comes(BehindAProxy):
        down_for, seen = 2, 0

    class Stays(BehindAProxy):
        down_for, seen = 10**9, 0

    back, back_uri = serve(Comes)
    down, down_uri = serve(Stays)
    try:
        assert wait_until_answers(back_uri, 60, every_s=0.05)
        assert Comes.seen == 3  # two refusals, then the answer
        said = capsys.readouterr().out
        assert said.count("does not answer (HTTP 503)") == 1 and back_uri in said  # one line a minute
        assert not wait_until_answers(down_uri, 0.3, every_s=0.05)
        assert Stays.seen >= 2
    finally:
        back.shutdown()
        down.shutdown()


def test_finish_run__a_server_still_down_at_the_end_keeps_the_encoder_and_the_pending_points(
    tmp_path, monkeypatch
):
    import ray.train

    from pipelines import run
    from pipelines.tracking.metric_logger import PENDING_FILE

    class Stays(BehindAProxy):
        down_for, seen = 10**9, 0

    monkeypatch.setattr(run, "TRACKING_WAIT_S", 0.3)
    checkpoint_dir = tmp_path / "checkpoint"
    export_encoder(torch.nn.Linear(3, 2), checkpoint_dir)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pending = run_dir / PENDING_FILE
    line = {"run_id": "r1", "key": "train/loss", "value": 1.5, "step": 24, "timestamp": 0}
    pending.write_text(json.dumps(line) + "\n")
    result = type("Result", (), {"checkpoint": ray.train.Checkpoint.from_directory(checkpoint_dir)})()
    server, uri = serve(Stays)
    try:
        with pytest.raises(TrackingUnavailableError) as error:
            run.finish_run(result, run_dir, uri, "r1", complete=True)
    finally:
        server.shutdown()
    message = str(error.value)
    assert (
        uri in message
        and "run r1 is not closed" in message
        and f"1 metric points are kept in {pending}" in message
    )
    assert str(run_dir / "encoder.pt") in message
    saved = torch.load(run_dir / "encoder.pt", weights_only=True)
    assert torch.equal(
        saved["weight"], torch.load(checkpoint_dir / "encoder.pt", weights_only=True)["weight"]
    )
    assert json.loads(pending.read_text()) == line  # nothing dropped


def test_fail_run__marks_a_running_run_failed_and_leaves_a_closed_one_as_it_is(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    running = start_run(uri, "e", "crashed", {}, {})
    stopped = start_run(uri, "e", "stopped-by-tune", {}, {})
    end_run(uri, stopped, "KILLED")
    fail_run(uri, running)
    fail_run(uri, stopped)
    client = MlflowClient(uri)
    assert client.get_run(running).info.status == "FAILED"
    assert client.get_run(stopped).info.status == "KILLED"


def test_pretrain__a_training_error_is_the_one_raised_when_mlflow_is_down_at_that_moment(
    tmp_path, monkeypatch, capsys
):
    from types import SimpleNamespace

    from pipelines import run

    class Stays(BehindAProxy):
        down_for, seen = 10**9, 0

    class FailingTrainer:
        def fit(self):
            raise ValueError("the training error")

    server, uri = serve(Stays)
    datasets = SimpleNamespace(report=SimpleNamespace(bad=0), num_train_rows=8)
    for name, stub in {
        "check_model_builds": lambda config: None,
        "tracking_store": lambda *args: (uri, None, False),
        "connect": lambda: "a stub cluster",
        "quiet_ray": lambda: None,
        "check_capacity": lambda *args, **kwargs: None,
        "build_datasets": lambda config: datasets,
        "open_run": lambda *args, **kwargs: "r1",
        "log_corpus_input": lambda *args: None,
        "log_corpus_report": lambda *args: None,
        "build_trainer": lambda *args: FailingTrainer(),
    }.items():
        monkeypatch.setattr(run, name, stub)
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml")
    try:
        with pytest.raises(ValueError, match="the training error"):
            run.pretrain(config, tmp_path / "runs" / "crashed")
    finally:
        server.shutdown()
    assert f"MLflow at {uri}: run r1 could not be marked FAILED" in capsys.readouterr().out
    assert Stays.seen == 1  # asked once, not retried for minutes


def test_pretrain__a_server_answering_401_fails_before_any_ray_work_naming_the_uri_and_what_to_set(
    tmp_path, monkeypatch
):
    import ray

    from pipelines import run

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answers401)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    ray_before = ray.is_initialized()
    monkeypatch.setattr(run, "connect", lambda: pytest.fail("Ray was reached before the tracking check"))
    config = load_config(
        Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml",
        [f"tracking.tracking_uri={uri}", f"checkpoint.output_dir={tmp_path / 'runs'}"],
    )
    try:
        with pytest.raises(TrackingStoreError) as error:
            run.pretrain(config, tmp_path / "runs" / "refused")
    finally:
        server.shutdown()
    message = str(error.value)
    assert "\n" not in message and uri in message and "HTTP 401" in message
    assert "MLFLOW_TRACKING_USERNAME" in message and "MLFLOW_TRACKING_PASSWORD" in message
    assert ray.is_initialized() == ray_before
    assert not (tmp_path / "runs" / "refused" / "mlflow.db").exists()  # no fallback store either


def test_reachable_uri__an_unknown_host_fails_loudly_instead_of_falling_back(tmp_path):
    uri = "http://bob:s3cret@no-such-host.invalid:5000"  # .invalid never resolves (RFC 2606)
    with pytest.raises(
        TrackingStoreError, match=r"MLflow at http://bob:\*\*\*@no-such-host.invalid:5000: unknown host"
    ):
        reachable_uri(uri, tmp_path)
    assert not (tmp_path / "mlflow.db").exists()


def test_tracking_register_as__must_be_a_model_name_usable_in_a_models_uri():
    smoke = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"
    assert load_config(smoke, ["tracking.register_as=ssl-encoder"]).tracking.register_as == "ssl-encoder"
    for bad in ("team/encoder", "enc:v1", "''"):
        with pytest.raises(ConfigError, match="tracking.register_as"):
            load_config(smoke, [f"tracking.register_as={bad}"])


def test_redact__hides_a_password_in_a_tracking_uri():
    assert redact("https://bob:s3cret@mlflow.example.com/path") == "https://bob:***@mlflow.example.com/path"
    assert redact("http://mlflow:5000") == "http://mlflow:5000"


def test_log_corpus_report__logs_the_counts_and_the_bad_paths_once(tmp_path):
    from pipelines.data.report import CorpusReport
    from pipelines.run import log_corpus_report

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = start_run(uri, "exp", "run", {}, {})
    report = CorpusReport(total=27, bad=2, bad_examples=[("a/x.jpg", "truncated"), ("b/y.png", "empty file")])
    log_corpus_report(uri, run_id, report)
    log_corpus_report(uri, run_id, report)  # a resumed run: no second point
    client = MlflowClient(uri)
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "data/bad_files")] == [(0, 2.0)]
    assert [m.value for m in client.get_metric_history(run_id, "data/total_files")] == [27.0]
    text = Path(client.download_artifacts(run_id, "bad_files.txt", str(tmp_path))).read_text()
    assert "2 of 27 files skipped" in text and "a/x.jpg\ttruncated" in text and "b/y.png\tempty file" in text


def test_ui_page__opens_the_runs_table_of_the_runs_experiment(tmp_path):
    from mlflow.tracking import MlflowClient

    from pipelines.run import ui_page

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("ui-page")
    run = client.create_run(experiment)
    assert ui_page(uri, run.info.run_id) == f"#/experiments/{experiment}?workflowType=machine_learning"
    assert ui_page(uri, "no-such-run") == ""  # an unknown run or a server gone: the plain address
