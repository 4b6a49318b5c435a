"""Where relative output paths and the default MLflow store go (Ray-free)."""

import os
from pathlib import Path

RAY_SESSION_MARKER = "/runtime_resources/"  # where Ray unpacks a job's --working-dir


def output_home() -> Path:
    """The directory relative output paths and the default MLflow store resolve against.

    The current directory, except inside a ``ray job submit --working-dir`` copy (under Ray's
    session folder, deleted later): then ``$SSL_PIPELINE_HOME`` or ``~/ssl-pipeline``.
    """
    if "SSL_PIPELINE_HOME" in os.environ:
        return Path(os.environ["SSL_PIPELINE_HOME"]).expanduser().resolve()
    cwd = Path.cwd().resolve()
    return Path.home() / "ssl-pipeline" if RAY_SESSION_MARKER in str(cwd) else cwd


def staging_dir(run_dir: str | Path) -> Path:
    """The local folder of a run's machine-local files (MLflow's pending points, a fallback store,
    the curves before upload): the run directory itself, or for a run on object storage
    ``<output home>/staging/<run name>``."""
    text = str(run_dir)
    if "://" not in text or text.startswith("file://"):
        return Path(text.removeprefix("file://"))
    local = output_home() / "staging" / text.rstrip("/").rsplit("/", 1)[-1]
    local.mkdir(parents=True, exist_ok=True)
    return local
