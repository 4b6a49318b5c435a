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
