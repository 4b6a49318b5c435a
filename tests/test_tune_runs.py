"""How a sweep closes a trial's MLflow run (``TrialMlflowRuns``, the driver side), Ray-free: Tune's
verdict (finished, stopped early by ASHA, failed) against whatever the trial's own process
wrote first, in every order the two can race in."""

import pytest
from mlflow.tracking import MlflowClient

from pipelines.config import load_config
from pipelines.run import open_run
from pipelines.sweep.driver import TrialMlflowRuns
from pipelines.tracking.mlflow_run import end_run

PLANNED = 3


class Trial:  # what TrialMlflowRuns reads of a Tune trial
    def __init__(self, name: str, epochs: int) -> None:
        self.name, self.last_result = name, {"train/epoch": float(epochs), "eval/knn_top1": 0.5}

    def __str__(self) -> str:
        return self.name


@pytest.mark.parametrize(
    ("written", "tune_epochs", "failed", "expected"),
    [
        (None, 1, False, "KILLED"),  # stopped by ASHA while training: the trial's process is killed
        ("FINISHED", 2, False, "KILLED"),  # the stop reached the workers after their last epoch
        ("FAILED", 2, False, "KILLED"),  # the trial's shutdown wrote FAILED before the stop was seen
        (None, PLANNED, False, "FINISHED"),
        ("FINISHED", PLANNED, False, "FINISHED"),
        (None, 1, True, "FAILED"),
        ("FAILED", 1, True, "FAILED"),
    ],
)
def test_trial_runs__tunes_verdict_wins_whatever_the_trial_wrote_first(
    tmp_path, capsys, written, tune_epochs, failed, expected
):
    uri, name = f"sqlite:///{tmp_path / 'mlflow.db'}", "t000"
    config = load_config(values={"train": {"epochs": PLANNED}})
    run_id = open_run(config, tmp_path / "runs" / name, uri)
    if written:
        end_run(uri, run_id, written)
    callback = TrialMlflowRuns(str(tmp_path), "eval/knn_top1")
    (callback.on_trial_error if failed else callback.on_trial_complete)(0, [], Trial(name, tune_epochs))
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == expected
    assert run.data.tags.get("tune.stopped_after_epoch") == (
        str(tune_epochs) if expected == "KILLED" else None
    )
    word = {"KILLED": "stopped early by ASHA"}.get(expected, expected.lower())
    assert f"trial {name}: {word} after {tune_epochs} epochs, eval/knn_top1 0.5000" in capsys.readouterr().out
