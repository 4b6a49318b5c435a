"""Checkpoint files round-trip, reject corruption and pickled objects; the MLflow logger never
duplicates a step on resume."""

import json
import pickle
import socket
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from pipelines.tracking.mlflow_run import MetricLogger, end_run, reachable_uri, redact, start_run
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
    first = MetricLogger(uri, run_id)
    for step in (10, 20, 30):
        first.log({"train/loss": step / 10}, step)
    resumed = MetricLogger(uri, run_id)  # a restarted worker resumes from the step-20 checkpoint
    for step in (30, 40):
        resumed.log({"train/loss": 99.0, "eval/knn_top1": 0.5}, step)
    end_run(uri, run_id)
    history = sorted((m.step, m.value) for m in first.client.get_metric_history(run_id, "train/loss"))
    assert history == [(10, 1.0), (20, 2.0), (30, 3.0), (40, 99.0)]
    knn = sorted(m.step for m in first.client.get_metric_history(run_id, "eval/knn_top1"))
    assert knn == [30, 40]
    run = first.client.get_run(run_id)
    assert run.data.params == {"a.b": "1", "c": "None"} and run.info.status == "FINISHED"


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
    logger = MetricLogger(uri, run_id, spool=tmp_path / "pending.jsonl")
    flaky = logger.client = FlakyClient(logger.client)
    logger.log({"train/loss": 1.0}, 10)
    flaky.down = True
    logger.log({"train/loss": 2.0}, 20)  # no exception: training goes on
    logger.log({"train/loss": 3.0, "eval/knn_top1": 0.5}, 30)
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
    history = sorted((m.step, m.value) for m in flaky.get_metric_history(run_id, "train/loss"))
    assert history == [(10, 1.0), (20, 2.0), (30, 3.0), (40, 4.0)]  # in order, none lost or doubled
    assert [m.step for m in flaky.get_metric_history(run_id, "eval/knn_top1")] == [30]
    assert any("answers again: uploaded 4 pending" in r.message for r in caplog.records)


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
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = reachable_uri(f"http://127.0.0.1:{port}", tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert f"MLflow at http://127.0.0.1:{port} does not answer" in caplog.text and uri in caplog.text
    local = f"sqlite:///{tmp_path / 'other.db'}"
    assert reachable_uri(local, tmp_path) == local  # a file store is always used as given


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
