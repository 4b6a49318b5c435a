"""Compare pretraining methods from an MLflow experiment: a table, two kNN curves, a report run.

kNN is ``final/knn_top1`` (``pipelines/evaluate.py``, the final encoder) when the run has it,
else the last epoch's kNN monitor (``eval/knn_top1``), never the best epoch: picking the
maximum over epochs would select on the test split. The table marks the latter with †.
Cost: GPU hours = wall time x workers when ``scaling.use_gpu``, CPU hours = wall time x
workers x ``scaling.cpus_per_worker``, from the run's params.
"""

import html
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from pipelines.tracking.mlflow_run import end_run, fail_run, log_artifacts, redact, start_run

KNN, EPOCH, THROUGHPUT = "eval/knn_top1", "train/epoch", "data/images_per_s"
COLUMNS = ("method", "run", "kNN", "linear", "1% FT", "10% FT", "images/s", "wall time", "GPU h", "CPU h")
MISSING = "–"
LAST_EPOCH_MARK = "†"
LAST_EPOCH_NOTE = (
    f"{LAST_EPOCH_MARK} kNN monitor of the last epoch (the run has no final/knn_top1: "
    "run pipelines/evaluate.py on it)"
)
FILES = ("comparison.md", "comparison.html", "knn_vs_epoch.png", "knn_vs_wall_time.png")


@dataclass(frozen=True)
class Row:
    """One finished pretraining run. Accuracies are fractions in [0, 1]; None: not logged."""

    run_id: str
    run_name: str
    method: str
    backbone: str
    dataset: str
    knn: float | None
    knn_source: str  # "final" | "last epoch" | "none"
    linear: float | None
    finetune_1pct: float | None
    finetune_10pct: float | None
    images_per_s: float | None  # mean over epochs
    wall_s: float | None  # end_time - start_time; None while running
    gpu_hours: float | None  # None: the run lacks the scaling.* params
    cpu_hours: float | None
    epochs: int | None
    start_time: int  # ms since the epoch (ties in best_per_method go to the newer run)
    status: str


def _runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _last(client: MlflowClient, run_id: str, key: str) -> float | None:
    """The value at the highest step (then the latest timestamp) of ``key``'s history."""
    history = client.get_metric_history(run_id, key)
    return max(history, key=lambda m: (m.step, m.timestamp)).value if history else None


def _costs(params: dict[str, str], wall_s: float | None) -> tuple[float | None, float | None]:
    try:
        workers, cpus = int(params["scaling.num_workers"]), float(params["scaling.cpus_per_worker"])
        use_gpu = params["scaling.use_gpu"].strip().lower() == "true"
    except (KeyError, ValueError):
        return None, None
    if wall_s is None:
        return None, None
    hours = wall_s / 3600
    return (hours * workers if use_gpu else 0.0), hours * workers * cpus


def _row(client: MlflowClient, run: Run) -> Row:
    info, metrics, params, tags = run.info, run.data.metrics, run.data.params, run.data.tags
    knn, source = metrics.get("final/knn_top1"), "final"
    if knn is None:
        knn = _last(client, info.run_id, KNN)
        source = "none" if knn is None else "last epoch"
    throughput = [m.value for m in client.get_metric_history(info.run_id, THROUGHPUT)]
    wall_s = (info.end_time - info.start_time) / 1000 if info.end_time else None
    gpu_hours, cpu_hours = _costs(params, wall_s)
    epochs = metrics.get(EPOCH, params.get("train.epochs"))
    return Row(
        run_id=info.run_id,
        run_name=info.run_name or info.run_id[:8],
        method=tags.get("method", "?"),
        backbone=tags.get("backbone", "?"),
        dataset=tags.get("dataset", "?"),
        knn=knn,
        knn_source=source,
        linear=metrics.get("final/linear_top1"),
        finetune_1pct=metrics.get("final/finetune_1pct_top1"),
        finetune_10pct=metrics.get("final/finetune_10pct_top1"),
        images_per_s=sum(throughput) / len(throughput) if throughput else None,
        wall_s=wall_s,
        gpu_hours=gpu_hours,
        cpu_hours=cpu_hours,
        epochs=int(float(epochs)) if epochs is not None else None,
        start_time=info.start_time,
        status=info.status,
    )


def collect(uri: str, experiment: str, include_unfinished: bool = False) -> list[Row]:
    """One :class:`Row` per FINISHED pretraining run of ``experiment`` (every status with
    ``include_unfinished``), newest first. Report runs (tag ``kind=report``) and sweep parents
    (tag ``kind=sweep``, or the ``mlflow.parentRunId`` of another run) are skipped; trials kept.

    Raises:
        ValueError: no such experiment (the message lists the existing ones), or no run left.
    """
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ValueError(
            f"no MLflow experiment {experiment!r} in {redact(uri)}; existing: "
            + (", ".join(repr(n) for n in names) or "none")
        )
    runs = _runs(client, found.experiment_id)
    parents = {r.data.tags["mlflow.parentRunId"] for r in runs if "mlflow.parentRunId" in r.data.tags}
    runs = [
        r for r in runs if r.data.tags.get("kind") not in ("report", "sweep") and r.info.run_id not in parents
    ]
    kept = [r for r in runs if include_unfinished or r.info.status == "FINISHED"]
    if not kept:
        counts = Counter(r.info.status for r in runs)
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no pretraining runs"
        raise ValueError(f"experiment {experiment!r} has no finished runs ({statuses})")
    return [_row(client, r) for r in kept]


def _rank(row: Row) -> tuple[bool, float, int]:
    return row.knn is not None, row.knn or 0.0, row.start_time


def _one_per_method(rows: list[Row], key: Callable[[Row], Any]) -> list[Row]:
    """The row of each method with the greatest ``key``, by kNN descending."""
    chosen: dict[str, Row] = {}
    for row in rows:
        if row.method not in chosen or key(row) > key(chosen[row.method]):
            chosen[row.method] = row
    return sorted(chosen.values(), key=_rank, reverse=True)


def best_per_method(rows: list[Row]) -> list[Row]:
    """The best row of each method by kNN (a tie goes to the newer run), by kNN descending."""
    return _one_per_method(rows, _rank)


def latest_per_method(rows: list[Row]) -> list[Row]:
    """The newest row of each method (what its current config gives, not the luckiest of several
    runs), by kNN descending."""
    return _one_per_method(rows, lambda row: row.start_time)


def _ranked(rows: list[Row]) -> list[Row]:
    return sorted(rows, key=_rank, reverse=True)


SELECTIONS: dict[str, Callable[[list[Row]], list[Row]]] = {
    "all": _ranked,
    "latest": latest_per_method,
    "best": best_per_method,
}


def _pct(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.1f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return MISSING
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _cells(row: Row) -> list[str]:
    """The table cells of ``row``, in :data:`COLUMNS` order."""
    knn = _pct(row.knn) + (LAST_EPOCH_MARK if row.knn_source == "last epoch" else "")
    throughput = MISSING if row.images_per_s is None else f"{row.images_per_s:,.0f}"
    accuracies = [_pct(v) for v in (row.linear, row.finetune_1pct, row.finetune_10pct)]
    return [
        row.method,
        row.run_name,
        knn,
        *accuracies,
        throughput,
        _duration(row.wall_s),
        *(MISSING if h is None else f"{h:.2f}" for h in (row.gpu_hours, row.cpu_hours)),
    ]


def markdown_table(rows: list[Row]) -> str:
    """A GitHub-markdown table of ``rows`` (percentages with one decimal, missing as –)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|---|" + "--:|" * (len(COLUMNS) - 2)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |" for r in rows]
    if any(r.knn_source == "last epoch" for r in rows):
        lines += ["", LAST_EPOCH_NOTE]
    return "\n".join(lines) + "\n"


def html_report(rows: list[Row], plot_names: list[str], title: str = "Method comparison") -> str:
    """A self-contained HTML page: the table of ``rows`` and the plots (relative file names)."""
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in COLUMNS)
    body = "\n".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in _cells(r)) + "</tr>" for r in rows)
    note = f"<p>{e(LAST_EPOCH_NOTE)}</p>" if any(r.knn_source == "last epoch" for r in rows) else ""
    images = "\n".join(f'<img src="{e(name)}" alt="{e(name)}">' for name in plot_names)
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "th,td{border:1px solid #ccc;padding:4px 8px}td:nth-child(n+3){text-align:right}"
        "img{max-width:100%;display:block;margin-top:1em}"
    )
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{e(title)}</title>'
        f"<style>{style}</style></head>\n<body><h1>{e(title)}</h1>\n"
        f"<table><tr>{head}</tr>\n{body}\n</table>{note}\n{images}\n</body></html>\n"
    )


def knn_curve(uri: str, run_id: str, start_time: int) -> tuple[list[float], list[float], list[float]]:
    """``eval/knn_top1`` of a run as (epochs, seconds since ``start_time`` (ms), values), by
    step. The epoch is ``train/epoch`` at the same step, else the point's index + 1."""
    client = MlflowClient(uri)
    epoch_at = {m.step: m.value for m in client.get_metric_history(run_id, EPOCH)}
    points = sorted(client.get_metric_history(run_id, KNN), key=lambda m: (m.step, m.timestamp))
    epochs = [epoch_at.get(m.step, i + 1.0) for i, m in enumerate(points)]
    return epochs, [(m.timestamp - start_time) / 1000 for m in points], [m.value for m in points]


def plot_curves(uri: str, rows: list[Row], path_epoch: Path, path_wall: Path) -> tuple[Path, Path]:
    """Two PNGs: each row's kNN monitor against the epoch and against wall-clock seconds."""
    figures = [plt.subplots(figsize=(7, 4.5)) for _ in range(2)]
    plotted = False
    for row in rows:
        epochs, seconds, values = knn_curve(uri, row.run_id, row.start_time)
        if not values:
            continue  # no kNN monitor logged: no line, no legend entry
        plotted = True
        label, percent = f"{row.method} ({row.run_name})", [100 * v for v in values]
        for (_, ax), xs in zip(figures, (epochs, seconds)):
            ax.plot(xs, percent, marker="o" if len(xs) < 30 else None, label=label)
    for (fig, ax), xlabel, path in zip(
        figures, ("epoch", "wall-clock seconds since the run started"), (path_epoch, path_wall)
    ):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("kNN top-1 (%)")
        ax.grid(alpha=0.3)
        if plotted:
            ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return Path(path_epoch), Path(path_wall)


def _log_report(uri: str, experiment: str, rows: list[Row], files: list[Path], selection: str) -> str:
    name = f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    params = {"selection": selection, "runs": " ".join(r.run_id for r in rows)}
    run_id = start_run(uri, experiment, name, params, {"kind": "report"})
    try:
        log_artifacts(uri, run_id, files)
    except BaseException:
        fail_run(uri, run_id)
        raise
    end_run(uri, run_id)
    return run_id


def write_comparison(
    uri: str,
    experiment: str,
    out_dir: Path,
    log_to_mlflow: bool = True,
    all_runs: bool = False,
    latest: bool = False,
) -> dict[str, Any]:
    """Write the comparison (every finished run with ``all_runs``, the newest run per method with
    ``latest``, else the best per method) to ``out_dir`` and, with ``log_to_mlflow``, log it as a
    ``kind=report`` run of ``experiment``."""
    if all_runs and latest:
        raise ValueError("all_runs and latest are exclusive: every run, or the newest per method")
    rows = collect(uri, experiment)
    selection = "all" if all_runs else "latest" if latest else "best"
    rows = SELECTIONS[selection](rows)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, page, epoch_png, wall_png = (out_dir / name for name in FILES)
    table = markdown_table(rows)
    md.write_text(f"# Method comparison: {experiment}\n\n{table}")
    page.write_text(html_report(rows, [epoch_png.name, wall_png.name], f"Method comparison: {experiment}"))
    plot_curves(uri, rows, epoch_png, wall_png)
    files = [md, page, epoch_png, wall_png]
    report_run_id = _log_report(uri, experiment, rows, files, selection) if log_to_mlflow else None
    print(table, flush=True)
    print(f"{len(rows)} runs of {experiment!r} in {redact(uri)}; files in {out_dir.resolve()}", flush=True)
    if report_run_id:
        print(f"MLflow: report run {report_run_id}", flush=True)
    return {"rows": rows, "files": files, "report_run_id": report_run_id}
