"""MLflow tracking: one run per job, created by the driver, written to by rank 0.

The driver opens the run (params, tags, dataset input, config artifact) and passes its id to the
workers; rank 0 logs metrics (``metric_logger.MetricLogger``) and system metrics against that id;
the driver logs the encoder model (``model.py``) and the curves and closes the run. Only plain
strings cross process boundaries.
"""

import hashlib
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from mlflow.entities import Param
from mlflow.tracking import MlflowClient

LOG = logging.getLogger(__name__)
MAX_PARAM_LENGTH = 6000
EXPERIMENT_KIND = "mlflow.experimentKind"  # read by MLflow 3's UI (its JS bundle names the values)
MODEL_TRAINING = "custom_model_development"  # vs "genai_development" (traces first)


def default_tracking_uri(base_dir: str | Path) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else a sqlite file ``mlflow.db`` in ``base_dir``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(base_dir).resolve() / 'mlflow.db'}"


class TrackingStoreError(RuntimeError):
    """The tracking server answers but refuses us (credentials), or its host does not exist: a
    mistake to fix, not an outage to ride out."""


UNREACHABLE = ("connection refused", "timed out", "timeout", "connection reset", "connection aborted")
UNKNOWN_HOST = (
    "name or service not known",
    "nodename nor servname",
    "temporary failure in name resolution",
    "no address associated",
    "getaddrinfo failed",
    "nameresolutionerror",
)


def reachable_uri(uri: str, fallback_dir: str | Path) -> str:
    """``uri`` if its store answers; for a tracking server that cannot be reached (connection
    refused, timeout, 502-504), a sqlite store in ``fallback_dir`` (with a warning naming both), so
    the run starts and loses nothing.

    Raises:
        TrackingStoreError: the server answers 401/403 (or another error), or its host is unknown:
            one line naming the URI (redacted) and what to set.
    """
    if not uri.startswith(("http://", "https://")):
        return uri
    bound_requests()
    problem = _probe(uri)
    if problem is None:
        return uri
    local = f"sqlite:///{Path(fallback_dir).resolve() / 'mlflow.db'}"
    LOG.warning(
        "MLflow at %s does not answer (%s); this run is tracked in %s instead", redact(uri), problem, local
    )
    return local


def bound_requests() -> None:
    """This process's MLflow client gives up on a server that does not answer after 2 retries of
    20 s (MLflow's default backs off for minutes), unless the user set those variables."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


class TrackingUnavailableError(RuntimeError):
    """The tracking server stayed unreachable at the end of a job (what it has not taken is kept)."""


def wait_until_answers(uri: str, timeout_s: float, every_s: float = 5.0) -> bool:
    """True once the store at ``uri`` answers (a local store at once); False when a tracking
    server is still unreachable after ``timeout_s``, with a line every minute while it waits.

    Raises:
        TrackingStoreError: the server answers but refuses us (see :func:`reachable_uri`).
    """
    if not uri.startswith(("http://", "https://")):
        return True
    started = time.monotonic()
    said = -1
    while (problem := _probe(uri)) is not None:
        waited = time.monotonic() - started
        if waited >= timeout_s:
            return False
        if int(waited // 60) > said:
            said = int(waited // 60)
            print(
                f"MLflow at {redact(uri)} does not answer ({problem}): waiting up to "
                f"{timeout_s - waited:.0f} s more to upload the run's last metric points and files",
                flush=True,
            )
        time.sleep(min(every_s, max(0.0, timeout_s - waited)))
    return True


def _probe(uri: str) -> str | None:
    """None when the server answers a search; the reason when it cannot be reached.

    Raises:
        TrackingStoreError: any other answer (see :func:`reachable_uri`).
    """
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(
            get_default_host_creds(uri),
            "/api/2.0/mlflow/experiments/search",
            "GET",
            max_retries=0,
            timeout=float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")),
            raise_on_status=False,
            params={"max_results": 1},
        )
    except Exception as exc:  # noqa: BLE001  (MLflow wraps every transport error in MlflowException)
        text = str(exc).lower()
        if any(marker in text for marker in UNKNOWN_HOST):
            raise TrackingStoreError(
                f"MLflow at {redact(uri)}: unknown host; fix tracking.tracking_uri or MLFLOW_TRACKING_URI"
            ) from None
        if any(marker in text for marker in UNREACHABLE):
            return str(exc).splitlines()[0][:200]
        raise TrackingStoreError(f"MLflow at {redact(uri)} cannot be used: {str(exc)[:200]}") from None
    if response.status_code in (401, 403):
        raise TrackingStoreError(
            f"MLflow at {redact(uri)} refused the credentials (HTTP {response.status_code}): set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)"
        )
    if response.status_code in (502, 503, 504):  # a proxy whose MLflow behind it is down
        return f"HTTP {response.status_code}"
    if response.status_code != 200:
        raise TrackingStoreError(
            f"MLflow at {redact(uri)} answered HTTP {response.status_code}: {response.text[:200]}"
        )
    return None


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


def run_context_tags() -> dict[str, str]:
    """What MLflow's fluent ``start_run`` records about the caller (``mlflow.user``,
    ``mlflow.source.name`` / ``.type``, ``mlflow.source.git.commit`` / ``.branch`` / ``.repoURL``),
    from its context registry. The git tags come from the script's checkout, else this project's
    (a Ray job's entry script runs in a copy without ``.git``)."""
    from mlflow.tracking.context.registry import resolve_tags
    from mlflow.utils import git_utils
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_BRANCH, MLFLOW_GIT_COMMIT, MLFLOW_GIT_REPO_URL

    tags = resolve_tags()
    if MLFLOW_GIT_COMMIT not in tags:
        here = str(Path(__file__).resolve())
        git = {
            MLFLOW_GIT_COMMIT: git_utils.get_git_commit(here),
            MLFLOW_GIT_BRANCH: git_utils.get_git_branch(here),
            MLFLOW_GIT_REPO_URL: git_utils.get_git_repo_url(here),
        }
        tags.update({k: v for k, v in git.items() if v})
    return tags


def start_run(
    uri: str,
    experiment: str,
    run_name: str,
    params: dict[str, Any],
    tags: dict[str, str],
    parent_run_id: str | None = None,
) -> str:
    """Create a run (experiment created on first use, as a model-training experiment), nested under
    ``parent_run_id`` if given (a sweep's trial under its sweep run), with the caller's git commit,
    user and source tags; params go in batches of 100. Returns the run id."""
    tags = {**run_context_tags(), **tags}
    if parent_run_id is not None:
        tags["mlflow.parentRunId"] = parent_run_id
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = (
        found.experiment_id
        if found
        else client.create_experiment(experiment, artifact_location(uri, experiment))
    )
    if found is None or EXPERIMENT_KIND not in found.tags:
        # MLflow 3's UI opens an experiment by its kind: runs and models, not GenAI traces.
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    items = [Param(k, "None" if v is None else str(v)[:MAX_PARAM_LENGTH]) for k, v in sorted(params.items())]
    for start in range(0, len(items), 100):  # MLflow's log_batch limit for params
        client.log_batch(run.info.run_id, params=items[start : start + 100], synchronous=True)
    return run.info.run_id


def log_corpus_input(uri: str, run_id: str, data, num_rows: int, report) -> None:
    """The training corpus as the run's dataset input (the UI's "Datasets used"): its source (a
    path or URI), a digest and its row count. The digest fingerprints the read (source, path,
    ``data.limit``, rows and bad files), not the bytes: hashing a corpus is a job of its own.

    Args:
        data: the config's ``data`` section.
        num_rows: training rows per epoch.
        report: the corpus read's ``CorpusReport``.
    """
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Dataset, DatasetInput, InputTag

    from cl_core.datasets.fashion_mnist import FASHION_MNIST_DIR

    where = data.path or (str(FASHION_MNIST_DIR) if data.source == "fashion_mnist" else data.source)
    if "://" not in where:
        where = str(Path(where).expanduser().resolve())
    fingerprint = json.dumps([data.source, where, data.limit, num_rows, report.total, report.bad])
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    with warnings.catch_warnings():  # "can be interpreted in multiple ways": a local path, either way
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(where)
    entity = MetaDataset(
        source, name=f"{data.source}:{where.rstrip('/').rsplit('/', 1)[-1]}"
    )._to_mlflow_entity()
    profile = json.dumps({"num_rows": num_rows, "files_read": report.total, "bad_files": report.bad})
    dataset = Dataset(entity.name, digest, entity.source_type, entity.source, profile=profile)
    context = InputTag("mlflow.data.context", "train")
    MlflowClient(uri).log_inputs(run_id, datasets=[DatasetInput(dataset, tags=[context])])


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


def fail_run(uri: str, run_id: str) -> None:
    """Mark a run FAILED on an error path unless something closed it already (a Tune stop closes a
    trial's run KILLED). Never raises: the error being handled is the one to show. A tracking server
    that does not answer is asked once, not retried, and gets one line: the run stays RUNNING."""
    try:
        problem = "it does not answer" if not wait_until_answers(uri, 0) else None
        if problem is None and MlflowClient(uri).get_run(run_id).info.status == "RUNNING":
            end_run(uri, run_id, "FAILED")
    except Exception as error:  # noqa: BLE001  (refused, or gone between the probe and the update)
        problem = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
    if problem is not None:
        print(f"MLflow at {redact(uri)}: run {run_id} could not be marked FAILED ({problem})", flush=True)
