"""MLflow tracking: one run per job, created by the driver, written to by rank 0.

The driver opens the run (params, tags, config artifact) and passes its id to the workers;
rank 0 logs metrics through ``MlflowClient`` against that id; the driver logs the encoder and
the curves and closes the run. Only plain strings cross process boundaries.
"""

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

LOG = logging.getLogger(__name__)
MAX_PARAM_LENGTH = 6000


def default_tracking_uri(base_dir: str | Path) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else a sqlite file ``mlflow.db`` in ``base_dir``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(base_dir).resolve() / 'mlflow.db'}"


def reachable_uri(uri: str, fallback_dir: str | Path) -> str:
    """``uri`` if its store answers; for a tracking server that does not, a sqlite store in
    ``fallback_dir`` (with a warning naming both), so the run starts and loses nothing."""
    if not uri.startswith(("http://", "https://")):
        return uri
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")  # MLflow's default backs off for minutes
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    try:
        MlflowClient(uri).search_experiments(max_results=1)
        return uri
    except Exception as exc:  # noqa: BLE001  (connection refused, DNS, 5xx, auth: all mean "not usable now")
        local = f"sqlite:///{Path(fallback_dir).resolve() / 'mlflow.db'}"
        LOG.warning(
            "MLflow at %s does not answer (%s); this run is tracked in %s instead",
            redact(uri),
            str(exc).splitlines()[0][:200],
            local,
        )
        return local


def redact(uri: str) -> str:
    """``uri`` without a password (``https://user:secret@host`` -> ``https://user:***@host``)."""
    scheme, sep, rest = uri.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return uri
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


def artifact_location(uri: str, experiment: str) -> str | None:
    """For a sqlite store, an absolute artifact folder beside the database (MLflow's default
    ``./mlartifacts`` is relative to whichever process creates the experiment: inside a Ray
    job that is a temporary copy of the working dir). None lets a tracking server decide."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts" / experiment).as_uri()


def start_run(
    uri: str,
    experiment: str,
    run_name: str,
    params: dict[str, Any],
    tags: dict[str, str],
    parent_run_id: str | None = None,
) -> str:
    """Create a run (experiment created on first use), nested under ``parent_run_id`` if given
    (a sweep's trial under its sweep run); returns its id."""
    if parent_run_id is not None:
        tags = {**tags, "mlflow.parentRunId": parent_run_id}
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = (
        found.experiment_id
        if found
        else client.create_experiment(experiment, artifact_location(uri, experiment))
    )
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    items = [(k, "None" if v is None else str(v)[:MAX_PARAM_LENGTH]) for k, v in sorted(params.items())]
    for start in range(0, len(items), 100):
        for key, value in items[start : start + 100]:
            client.log_param(run.info.run_id, key, value)
    return run.info.run_id


class MetricLogger:
    """Logs metric dicts for one run from one process. A point whose key already has a point at
    that step or later is skipped, so a resumed run neither duplicates nor loses points.

    When the tracking server does not answer, training goes on: the points are kept in memory
    and appended to ``spool`` (JSON lines), one warning names the file, and every later call
    first uploads what is pending, in order, once the server answers again.
    """

    def __init__(self, uri: str, run_id: str, spool: str | Path | None = None) -> None:
        self.client = MlflowClient(uri)
        self.uri, self.run_id = uri, run_id
        self.spool = Path(spool) if spool is not None else None
        self._last_step: dict[str, int] = {}
        self._pending: list[Metric] = []
        self._warned = False

    def _last(self, key: str) -> int:
        if key not in self._last_step:
            try:
                history = self.client.get_metric_history(self.run_id, key)
            except Exception:  # noqa: BLE001  (unreachable: nothing known, log from here on)
                history = []
            self._last_step[key] = max((m.step for m in history), default=-1)
        return self._last_step[key]

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Log ``metrics`` at ``step`` (keys already logged at ``step`` or later are skipped)."""
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if step > self._last(k)]
        for metric in batch:
            self._last_step[metric.key] = step
        self._pending += batch
        try:
            for start in range(0, len(self._pending), 1000):  # MLflow's log_batch limit
                self.client.log_batch(
                    self.run_id, metrics=self._pending[start : start + 1000], synchronous=True
                )
        except Exception as exc:  # noqa: BLE001  (any transport or server error: keep training)
            self._keep_locally(batch, exc)
            return
        if self._warned:
            LOG.warning(
                "MLflow at %s answers again: uploaded %d pending metric points",
                redact(self.uri),
                len(self._pending),
            )
            self._warned = False
        self._pending = []

    def tag(self, key: str, value: str) -> None:
        """Set a run tag; when the server does not answer, warn and go on (tags are notes)."""
        try:
            self.client.set_tag(self.run_id, key, value[:5000])  # MLflow's tag value limit
        except Exception as exc:  # noqa: BLE001
            LOG.warning("MLflow at %s: could not set tag %s=%r: %s", redact(self.uri), key, value, exc)

    def _keep_locally(self, batch: list[Metric], exc: Exception) -> None:
        if self.spool is not None:
            self.spool.parent.mkdir(parents=True, exist_ok=True)
            with open(self.spool, "a") as f:
                for m in batch:
                    f.write(
                        json.dumps(
                            {
                                "run_id": self.run_id,
                                "key": m.key,
                                "value": m.value,
                                "step": m.step,
                                "timestamp": m.timestamp,
                            }
                        )
                        + "\n"
                    )
        if not self._warned:
            where = f"; every point is also in {self.spool}" if self.spool else ""
            LOG.warning(
                "MLflow at %s is unreachable (%s): training continues, %d metric points kept to upload "
                "when it answers%s",
                redact(self.uri),
                str(exc).splitlines()[0][:200],
                len(self._pending),
                where,
            )
            self._warned = True


def log_artifacts(uri: str, run_id: str, files: list[Path], artifact_path: str | None = None) -> None:
    client = MlflowClient(uri)
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path)


def log_text(uri: str, run_id: str, text: str, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(text)
        MlflowClient(uri).log_artifact(run_id, str(path))


def reopen_run(uri: str, run_id: str) -> None:
    """Mark a stopped or failed run RUNNING again when it is resumed."""
    MlflowClient(uri).update_run(run_id, status="RUNNING")


def end_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    MlflowClient(uri).set_terminated(run_id, status)
