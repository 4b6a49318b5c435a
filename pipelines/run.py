"""A run's lifecycle: its directory, its MLflow run, the Ray Train fit, the encoder at the end.

The CLIs (``pretrain.py``, ``tune.py``, ``evaluate.py``) and the sweep driver share these steps;
none of them imports another CLI.
"""

import json
import shutil
import signal
import threading
import time
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from pipelines import storage
from pipelines.config import ExperimentConfig, flatten, to_dict
from pipelines.config.load import CONFIGS
from pipelines.data.build import build_datasets
from pipelines.home import output_home, staging_dir
from pipelines.tracking.curves import plot_curves
from pipelines.tracking.metric_logger import PENDING_FILE, MetricLogger
from pipelines.tracking.mlflow_run import (
    TrackingUnavailableError,
    default_tracking_uri,
    end_run,
    fail_run,
    log_artifacts,
    log_corpus_input,
    log_text,
    reachable_uri,
    redact,
    reopen_run,
    start_run,
    wait_until_answers,
)
from pipelines.tracking.model import log_encoder
from pipelines.train.checkpoints import ENCODER_FILE
from pipelines.train.cluster import LOCAL_INSTANCE, check_capacity, connect, quiet_ray
from pipelines.train.trainer import build_trainer, check_model_builds

DEFAULT_CONFIG = CONFIGS / "default.yaml"
TRACKING_WAIT_S = 300  # at the end of a job: how long a tracking server outage is waited out
RUN_INFO = "run_info.json"
SMOKE = [
    "train.epochs=1",
    "data.limit=512",
    "train.global_batch_size=64",
    "eval.train_size=256",
    "eval.test_size=256",
    "eval.knn_k=20",
]


def resolve_run_dir(config: ExperimentConfig) -> Path | str:
    """``<checkpoint.output_dir>/<name>-<time>``: a path (relative ones under the output home) or,
    for an ``s3://`` (any pyarrow filesystem) output dir, a URI."""
    name = f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if storage.is_uri(config.checkpoint.output_dir):
        return storage.join(config.checkpoint.output_dir, name)
    base = Path(config.checkpoint.output_dir).expanduser()
    base = base if base.is_absolute() else output_home() / base
    return base / name


def open_run(
    config: ExperimentConfig, run_dir: Path | str, uri: str, parent_run_id: str | None = None
) -> str:
    """Create the MLflow run (a sweep's child when ``parent_run_id``) and the run directory's
    ``config.yaml`` / ``run_info.json``."""
    tags = {
        "method": config.method.name,
        "backbone": config.backbone.name,
        "dataset": config.data.source,
        "config_name": config.name,
    }
    params = flatten(to_dict(config))
    name = str(run_dir).rstrip("/").rsplit("/", 1)[-1]
    run_id = start_run(uri, config.tracking.experiment, name, params, tags, parent_run_id)
    local = staging_dir(run_dir)
    local.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(to_dict(config), sort_keys=False)
    (local / "config.yaml").write_text(text)
    if storage.is_uri(run_dir):
        storage.write_text(storage.join(run_dir, "config.yaml"), text)
    storage.write_text(
        storage.join(run_dir, RUN_INFO), json.dumps({"run_id": run_id, "tracking_uri": uri}, indent=2)
    )
    log_artifacts(uri, run_id, [local / "config.yaml"])
    return run_id


def log_corpus_report(uri: str, run_id: str, report) -> None:
    """``data/bad_files`` and ``data/total_files`` at step 0, and the bad files' paths and reasons
    as ``bad_files.txt`` (the log has them too)."""
    logger = MetricLogger(uri, run_id).start()
    logger.log(report.as_metrics(), 0)  # a resumed run skips the existing point
    logger.close()
    if report.bad_examples:
        lines = [f"{report.bad} of {report.total} files skipped; the first {len(report.bad_examples)}:"]
        log_text(
            uri,
            run_id,
            "\n".join(lines + [f"{path}\t{reason}" for path, reason in report.bad_examples]) + "\n",
            "bad_files.txt",
        )


def finish_run(
    result,
    run_dir: Path | str,
    uri: str,
    run_id: str,
    complete: bool,
    config: ExperimentConfig | None = None,
) -> Path | str:
    """Export the latest encoder next to the run, replay the metric points still pending on this
    machine and plot the curves; a complete run logs both (with ``config``: the encoder as the
    MLflow model ``encoder`` too, registered as ``tracking.register_as`` when set) and is closed
    FINISHED, a stopped one is marked KILLED until ``--resume`` reopens it.

    Raises:
        TrackingUnavailableError: a tracking server that does not answer for ``TRACKING_WAIT_S``
            (the encoder is exported and the pending points stay on disk first).
    """
    if result.checkpoint is None:
        raise RuntimeError("the run finished without a checkpoint")
    local = staging_dir(run_dir)
    with result.checkpoint.as_directory() as directory:  # Ray: fetched from object storage if there
        encoder = Path(shutil.copy(Path(directory) / ENCODER_FILE, local / ENCODER_FILE))
    if storage.is_uri(run_dir):
        storage.write_bytes(storage.join(run_dir, encoder.name), encoder.read_bytes())
    pending = local / PENDING_FILE  # there when rank 0 ran here and MLflow did not take every point
    if not wait_until_answers(uri, TRACKING_WAIT_S):
        kept = MetricLogger(uri, run_id, pending).pending()
        raise TrackingUnavailableError(
            f"training {'finished' if complete else 'stopped'} and the encoder is saved "
            f"({storage.join(run_dir, encoder.name) if storage.is_uri(run_dir) else encoder}), but MLflow "
            f"at {redact(uri)} did not answer for {TRACKING_WAIT_S} s: run {run_id} is not closed and "
            f"{kept} metric points are kept in {pending} (JSON lines)"
        )
    if pending.is_file():
        MetricLogger(uri, run_id, pending).start().close()
    curves = plot_curves(uri, run_id, local / "curves.png")
    if storage.is_uri(run_dir):
        storage.write_bytes(storage.join(run_dir, curves.name), curves.read_bytes())
    if complete:
        log_artifacts(uri, run_id, [encoder, curves])
        if config is not None:
            model = log_encoder(uri, run_id, config, encoder, config.tracking.register_as)
            registered = config.tracking.register_as
            print(
                f"MLflow model: {model}" + (f" (registered as {registered})" if registered else ""),
                flush=True,
            )
    end_run(uri, run_id, "FINISHED" if complete else "KILLED")
    return storage.join(run_dir, ENCODER_FILE) if storage.is_uri(run_dir) else encoder


def tracking_store(
    config: ExperimentConfig, run_dir: Path | str, resume: bool
) -> tuple[str, str | None, bool]:
    """(tracking URI, the run id when resuming, whether the URI is the fallback store). A server
    that refuses the credentials or whose host is unknown raises ``TrackingStoreError`` (one line:
    the URI and what to set); one that cannot be reached falls back to ``<run dir>/mlflow.db``
    (resumed runs keep their store: rank 0 keeps the points pending until it answers)."""
    if resume:
        info = json.loads(storage.read_text(storage.join(run_dir, RUN_INFO)))
        reachable_uri(info["tracking_uri"], staging_dir(run_dir))
        return info["tracking_uri"], info["run_id"], False
    wanted = config.tracking.tracking_uri or default_tracking_uri(output_home())
    uri = reachable_uri(wanted, staging_dir(run_dir))
    if uri != wanted:
        print(f"MLflow at {redact(wanted)} does not answer: this run is tracked in {uri}", flush=True)
    return uri, None, uri != wanted


def pretrain(
    config: ExperimentConfig, run_dir: Path | str, resume: bool = False, stop_after_epochs: int | None = None
) -> dict[str, float]:
    """Run (or resume) one pretraining job; returns the last reported metrics."""
    check_model_builds(config)
    uri, run_id, fallback = tracking_store(config, run_dir, resume)  # before Ray: a bad store fails fast
    where = connect()
    print(f"Ray: using {where}", flush=True)
    quiet_ray()
    check_capacity(config, fixed=where == LOCAL_INSTANCE)
    datasets = build_datasets(config)
    report = datasets.report
    unit = "clip pairs" if config.data.source == "video_folder" else "images"
    print(
        f"data: {datasets.num_train_rows} training {unit} per epoch ({report.bad} bad files skipped)",
        flush=True,
    )
    if run_id is not None:
        reopen_run(uri, run_id)
    else:
        run_id = open_run(config, run_dir, uri)
        log_corpus_input(uri, run_id, config.data, datasets.num_train_rows, report)
    print(
        f"MLflow: run {run_id} in {redact(uri)}" + (" (the fallback store)" if fallback else ""), flush=True
    )
    log_corpus_report(uri, run_id, report)
    print(f"run directory: {run_dir}", flush=True)
    handler = signal.getsignal(signal.SIGINT)
    try:
        result = build_trainer(config, datasets, run_dir, run_id, uri, stop_after_epochs).fit()
    except BaseException:
        fail_run(uri, run_id)
        raise
    finally:
        # Ray: fit() leaves its Ctrl-C handler installed, and the handler holds the finished
        # TrainController actor alive; restoring ours lets it go (a soak of 3 runs in one
        # process otherwise keeps the last controller).
        if handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, handler)
    metrics = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}
    complete = int(metrics.get("train/epoch", 0)) >= config.train.epochs
    encoder = finish_run(result, run_dir, uri, run_id, complete, config)
    if not complete:
        print(
            f"stopped after epoch {int(metrics['train/epoch'])}; continue with: "
            f"python pipelines/pretrain.py --resume {run_dir}",
            flush=True,
        )
    knn = metrics.get("eval/knn_top1")
    print(
        f"done: loss {metrics.get('train/loss', float('nan')):.4f}"
        + (f", kNN top-1 {knn:.4f}" if knn is not None else "")
        + f"; encoder: {encoder}"
    )
    print_where(uri, run_id, fallback)
    return metrics


def print_where(uri: str, run_id: str, fallback: bool) -> None:
    """The end of a job's output: where its run is and how to open it in MLflow's UI."""
    if fallback:
        print(f"MLflow did not answer at the start: this run is in the fallback store {uri}", flush=True)
    page = ui_page(uri, run_id)
    if uri.startswith("sqlite:"):
        print(f"open the UI: mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000", flush=True)
        print(f"  then http://127.0.0.1:5000/{page}", flush=True)
    else:
        print(f"open the UI: {redact(uri).rstrip('/')}/{page}", flush=True)


def ui_page(uri: str, run_id: str) -> str:
    """The run's experiment in MLflow's UI on its runs table: MLflow 3.17's UI opens every
    experiment on its GenAI pages (its global GenAI / Model training switch, default GenAI, wins
    over the experiment's kind tag) unless the link says ``workflowType=machine_learning``."""
    try:
        experiment = MlflowClient(uri).get_run(run_id).info.experiment_id
    except Exception:  # noqa: BLE001  (the server went away at the end: the plain address)
        return ""
    return f"#/experiments/{experiment}?workflowType=machine_learning"
