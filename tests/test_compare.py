"""The comparison report reads the right runs and numbers from an MLflow store: final metrics
over the last kNN monitor point (never the best epoch), costs from the scaling params, sweep
parents, failed and report runs left out; main writes and logs the four files."""

import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from PIL import Image

from pipelines.compare import cli
from pipelines.tracking.compare import (
    FILES,
    Row,
    best_per_method,
    collect,
    html_report,
    knn_curve,
    latest_per_method,
    markdown_table,
    write_comparison,
)
from pipelines.tracking.mlflow_run import artifact_location

EXPERIMENT = "ssl-pretrain"
T0 = 1_700_000_000_000  # ms
EPOCH_STEPS = (10, 20, 30)


def _scaling(workers: int, use_gpu: bool, cpus: float) -> dict[str, str]:
    return {
        "scaling.num_workers": str(workers),
        "scaling.use_gpu": str(use_gpu),
        "scaling.cpus_per_worker": str(cpus),
        "train.epochs": "3",
    }


def _run(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    start: int,
    wall_s: float,
    *,
    method: str = "simclr",
    status: str = "FINISHED",
    params: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    final: dict[str, float] | None = None,
    knn: Sequence[tuple[int, float]] = (),
    epochs: bool = True,
    images_per_s: Sequence[float] = (),
) -> str:
    """A pretraining-like run; kNN points at (step, value), 60 s of wall time per step unit."""
    tags = {
        "method": method,
        "backbone": "resnet18",
        "dataset": "fashion_mnist",
        "config_name": name,
        **(tags or {}),
    }
    run_id = client.create_run(experiment_id, start_time=start, tags=tags, run_name=name).info.run_id
    metrics = [Metric(k, v, start + 1000, 0) for k, v in (final or {}).items()]
    metrics += [Metric("eval/knn_top1", v, start + 1000 * step, step) for step, v in knn]
    metrics += [Metric("data/images_per_s", v, start, EPOCH_STEPS[i]) for i, v in enumerate(images_per_s)]
    if epochs:
        metrics += [Metric("train/epoch", float(i + 1), start, s) for i, s in enumerate(EPOCH_STEPS)]
    params = [Param(k, v) for k, v in (params or _scaling(1, False, 1.0)).items()]
    client.log_batch(run_id, metrics=metrics, params=params, synchronous=True)
    client.set_terminated(run_id, status, end_time=start + int(wall_s * 1000))
    return run_id


def _build_store(folder: Path) -> str:
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment(EXPERIMENT, artifact_location(uri, EXPERIMENT))
    _run(
        client,
        exp,
        "simclr-a",
        T0,
        237,
        params=_scaling(2, True, 4.0),
        final={
            "final/knn_top1": 0.700,
            "final/linear_top1": 0.750,
            "final/finetune_1pct_top1": 0.512,
            "final/finetune_10pct_top1": 0.634,
        },
        knn=[(10, 0.60), (20, 0.65), (30, 0.69)],
        images_per_s=[100.0, 200.0, 300.0],
    )
    _run(
        client,
        exp,
        "simclr-b",
        T0 + 1_000_000,
        3723,
        params=_scaling(1, True, 2.0),
        final={"final/knn_top1": 0.714, "final/linear_top1": 0.800},
        images_per_s=[1200.0, 1300.0],
    )
    _run(
        client,
        exp,
        "byol",
        T0 + 2_000_000,
        3600,
        method="byol",
        params=_scaling(2, False, 1.5),
        knn=[(30, 0.58), (10, 0.50), (20, 0.62)],
        images_per_s=[50.0, 70.0],
    )  # the max (62%) is not the last
    parent = _run(client, exp, "sweep-lr", T0 + 3_000_000, 900, final={"final/knn_top1": 0.99})
    _run(
        client,
        exp,
        "sweep-lr-trial-0",
        T0 + 3_100_000,
        300,
        tags={"mlflow.parentRunId": parent},
        final={"final/knn_top1": 0.65},
        knn=[(5, 0.40), (9, 0.55)],
        epochs=False,
    )
    _run(
        client,
        exp,
        "sweep-tagged",
        T0 + 3_200_000,
        60,
        tags={"kind": "sweep"},
        final={"final/knn_top1": 0.98},
    )
    _run(client, exp, "simclr-crashed", T0 + 4_000_000, 30, status="FAILED", final={"final/knn_top1": 0.95})
    broken = client.create_experiment("only-failed", artifact_location(uri, "only-failed"))
    _run(client, broken, "crashed", T0, 10, status="FAILED")
    return uri


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """A store read (never written) by the tests that share it."""
    return _build_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def rows(store) -> dict[str, Row]:
    return {r.run_name: r for r in collect(store, EXPERIMENT)}


def test_collect__keeps_finished_runs_and_sweep_trials_only(rows):
    assert set(rows) == {"simclr-a", "simclr-b", "byol", "sweep-lr-trial-0"}


def test_collect__include_unfinished_adds_the_failed_run_but_not_the_sweep_parents(store):
    names = {r.run_name: r.status for r in collect(store, EXPERIMENT, include_unfinished=True)}
    assert names == {
        "simclr-a": "FINISHED",
        "simclr-b": "FINISHED",
        "byol": "FINISHED",
        "sweep-lr-trial-0": "FINISHED",
        "simclr-crashed": "FAILED",
    }


def test_collect__knn_is_the_final_metric_when_logged(rows):
    a = rows["simclr-a"]
    assert (a.knn, a.knn_source) == (0.700, "final")  # not the monitor's last point, 0.69
    assert (a.linear, a.finetune_1pct, a.finetune_10pct) == (0.750, 0.512, 0.634)
    assert (rows["simclr-b"].finetune_1pct, rows["simclr-b"].finetune_10pct) == (None, None)


def test_collect__knn_without_final_is_the_last_epoch_not_the_best(rows):
    byol = rows["byol"]
    assert (byol.knn, byol.knn_source) == (0.58, "last epoch")
    assert byol.linear is None


def test_collect__wall_time_and_costs_come_from_the_run_times_and_scaling_params(rows):
    a, byol = rows["simclr-a"], rows["byol"]
    assert a.wall_s == 237.0
    assert a.gpu_hours == pytest.approx(237 / 3600 * 2) and a.cpu_hours == pytest.approx(237 / 3600 * 2 * 4.0)
    assert byol.gpu_hours == 0.0 and byol.cpu_hours == pytest.approx(1 * 2 * 1.5)
    assert (a.images_per_s, byol.images_per_s) == (200.0, 60.0)
    assert (a.epochs, a.method, a.backbone, a.dataset) == (3, "simclr", "resnet18", "fashion_mnist")


def test_collect__unknown_experiment_names_the_existing_ones(store):
    with pytest.raises(ValueError, match=r"'nope'.*existing:.*'only-failed'.*'ssl-pretrain'"):
        collect(store, "nope")


def test_collect__experiment_without_finished_runs_is_an_error(store):
    with pytest.raises(ValueError, match=r"'only-failed' has no finished runs \(1 FAILED\)"):
        collect(store, "only-failed")


def test_best_per_method__picks_the_best_knn_per_method_sorted_descending(rows):
    assert [r.run_name for r in best_per_method(list(rows.values()))] == ["simclr-b", "byol"]


def test_best_per_method__a_tie_goes_to_the_newer_run(rows):
    older = rows["simclr-a"]
    newer = replace(older, run_id="newer", start_time=older.start_time + 1)
    missing = replace(older, run_id="no-knn", knn=None, knn_source="none", start_time=older.start_time + 2)
    for order in ([older, newer, missing], [missing, newer, older]):
        assert [r.run_id for r in best_per_method(order)] == ["newer"]


def test_latest_per_method__picks_the_newest_finished_run_per_method_sorted_by_knn(rows):
    # simclr: the sweep trial is the newest finished run (65%, under simclr-b's 71.4%; the newer
    # simclr-crashed is FAILED), so --latest reports it, not the best one.
    assert [r.run_name for r in latest_per_method(list(rows.values()))] == ["sweep-lr-trial-0", "byol"]
    assert [r.run_name for r in latest_per_method(list(rows.values())[::-1])] == ["sweep-lr-trial-0", "byol"]


def test_markdown_table__formats_percentages_durations_costs_and_missing_values(rows):
    lines = markdown_table(best_per_method(list(rows.values()))).splitlines()
    assert lines[0] == (
        "| method | run | kNN | linear | 1% FT | 10% FT | images/s | wall time | GPU h | CPU h |"
    )
    assert lines[2] == "| simclr | simclr-b | 71.4 | 80.0 | – | – | 1,250 | 1h02m | 1.03 | 2.07 |"
    assert lines[3] == "| byol | byol | 58.0† | – | – | – | 60 | 1h00m | 0.00 | 3.00 |"
    assert lines[5].startswith("† kNN monitor of the last epoch")
    a = markdown_table([rows["simclr-a"]]).splitlines()
    assert a[2] == "| simclr | simclr-a | 70.0 | 75.0 | 51.2 | 63.4 | 200 | 3m57s | 0.13 | 0.53 |"
    assert len(a) == 3, "no footnote without a last-epoch kNN"


def test_html_report__has_the_escaped_table_and_links_the_plots(rows):
    row = replace(rows["simclr-b"], run_name="a<b>")
    page = html_report([row], ["knn_vs_epoch.png", "knn_vs_wall_time.png"])
    assert page.startswith("<!DOCTYPE html>") and "<td>71.4</td><td>80.0</td><td>–</td>" in page
    assert "<td>a&lt;b&gt;</td>" in page and "<b>" not in page
    assert '<img src="knn_vs_epoch.png"' in page and '<img src="knn_vs_wall_time.png"' in page


def test_knn_curve__epochs_from_train_epoch_else_the_point_index(store, rows):
    byol = rows["byol"]
    epochs, seconds, values = knn_curve(store, byol.run_id, byol.start_time)
    assert (epochs, seconds, values) == ([1.0, 2.0, 3.0], [10.0, 20.0, 30.0], [0.50, 0.62, 0.58])
    trial = rows["sweep-lr-trial-0"]
    assert knn_curve(store, trial.run_id, trial.start_time) == ([1.0, 2.0], [5.0, 9.0], [0.40, 0.55])


def test_main__writes_the_four_files_and_logs_them_as_a_report_run(store, tmp_path, capsys):
    shutil.copy(store.removeprefix("sqlite:///"), tmp_path / "mlflow.db")  # a copy: main adds a run
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    before = {r.run_id for r in collect(uri, EXPERIMENT)}
    result = write_comparison(uri, EXPERIMENT, tmp_path / "out")
    assert [r.run_name for r in result["rows"]] == ["simclr-b", "byol"]
    assert sorted(p.name for p in result["files"]) == sorted(FILES)
    assert all(p.parent == tmp_path / "out" and p.stat().st_size > 0 for p in result["files"])
    for name in ("knn_vs_epoch.png", "knn_vs_wall_time.png"):
        with Image.open(tmp_path / "out" / name) as image:
            assert image.format == "PNG" and image.size == (700, 450)
    assert "| simclr | simclr-b | 71.4 |" in (tmp_path / "out" / "comparison.md").read_text()
    assert "| simclr | simclr-b | 71.4 |" in capsys.readouterr().out
    client = MlflowClient(uri)
    report = client.get_run(result["report_run_id"])
    assert report.data.tags["kind"] == "report" and report.info.status == "FINISHED"
    assert report.info.run_name.startswith("compare-")
    assert report.info.experiment_id == client.get_experiment_by_name(EXPERIMENT).experiment_id
    assert sorted(a.path for a in client.list_artifacts(report.info.run_id)) == sorted(FILES)
    assert {r.run_id for r in collect(uri, EXPERIMENT)} == before


def test_cli__all_runs_without_mlflow_ranks_every_run_and_logs_nothing(store, tmp_path):
    client = MlflowClient(store)
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    runs_before = len(client.search_runs([experiment_id]))
    result = cli(["--tracking-uri", store, "--out", str(tmp_path), "--all-runs", "--no-mlflow"])
    assert [r.run_name for r in result["rows"]] == ["simclr-b", "simclr-a", "sweep-lr-trial-0", "byol"]
    assert result["report_run_id"] is None and sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)
    assert len(client.search_runs([experiment_id])) == runs_before


def test_cli__latest_reports_the_newest_run_per_method_and_records_the_selection(store, tmp_path):
    shutil.copy(store.removeprefix("sqlite:///"), tmp_path / "mlflow.db")  # a copy: main adds a run
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = cli(["--tracking-uri", uri, "--out", str(tmp_path / "out"), "--latest"])
    assert [r.run_name for r in result["rows"]] == ["sweep-lr-trial-0", "byol"]
    params = MlflowClient(uri).get_run(result["report_run_id"]).data.params
    assert params["selection"] == "latest" and params["runs"].split() == [r.run_id for r in result["rows"]]
    with pytest.raises(SystemExit):
        cli(["--tracking-uri", uri, "--out", str(tmp_path / "x"), "--latest", "--all-runs", "--no-mlflow"])
    with pytest.raises(ValueError, match="exclusive"):
        write_comparison(uri, EXPERIMENT, tmp_path / "y", log_to_mlflow=False, all_runs=True, latest=True)
