"""Checkpoint files: atomic writes, verified loads, no arbitrary unpickling.

A checkpoint directory holds ``state.pt`` (model, optimizer, counters, RNG, metrics) and, at
the end of a run, ``encoder.pt`` (the backbone's plain ``state_dict``, usable without this
project). Files are written to a temporary name and renamed, so a crash mid-write leaves the
previous checkpoint intact; loads use ``torch.load(weights_only=True)``.
"""

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.pt"
ENCODER_FILE = "encoder.pt"
DIGEST_SUFFIX = ".sha256"


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated or does not match its digest."""


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` via a temporary file + rename, with a sha256 digest beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    digest = _digest(tmp)
    os.replace(tmp, path)
    digest_tmp = path.with_name(f".{path.name}{DIGEST_SUFFIX}.tmp-{os.getpid()}")
    digest_tmp.write_text(digest)
    os.replace(digest_tmp, path.with_name(path.name + DIGEST_SUFFIX))
    return path


def verified_load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a file written by :func:`atomic_save`, checking its digest; tensors only.

    Raises:
        CorruptCheckpointError: missing file, digest mismatch, or unreadable content.
    """
    path = Path(path)
    digest_file = path.with_name(path.name + DIGEST_SUFFIX)
    if not path.is_file():
        raise CorruptCheckpointError(f"{path} does not exist")
    if digest_file.is_file() and digest_file.read_text().strip() != _digest(path):
        raise CorruptCheckpointError(f"{path} does not match its sha256 digest (truncated or modified)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001  (any unpickling failure means a bad file)
        raise CorruptCheckpointError(f"{path} cannot be loaded: {exc}") from exc


def load_newest_valid(directories: list[Path]) -> tuple[dict, Path, list[str]]:
    """The state of the newest checkpoint directory whose ``state.pt`` verifies.

    Args:
        directories: checkpoint directories, newest first.

    Returns:
        (state, its directory, one "path: reason" line per newer checkpoint skipped as corrupt).

    Raises:
        CorruptCheckpointError: none of them verifies (naming each).
    """
    skipped = []
    for directory in directories:
        try:
            return verified_load(Path(directory) / STATE_FILE), Path(directory), skipped
        except CorruptCheckpointError as exc:
            skipped.append(str(exc))
    raise CorruptCheckpointError("no usable checkpoint: " + "; ".join(skipped))


def export_encoder(backbone: torch.nn.Module, directory: str | Path) -> Path:
    """Write the backbone's ``state_dict`` (CPU tensors) as ``encoder.pt``."""
    state = {k: v.detach().cpu() for k, v in backbone.state_dict().items()}
    return atomic_save(state, Path(directory) / ENCODER_FILE)
