"""Checkpoint files round-trip, reject corruption and pickled objects; the MLflow logger never
duplicates a step on resume."""

import pickle

import pytest
import torch

from pipelines.checkpoints import CorruptCheckpointError, atomic_save, export_encoder, verified_load
from pipelines.tracking import MetricLogger, end_run, start_run


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
