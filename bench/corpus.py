"""Synthetic JPEG corpora for the benches, laid out as users have them (``root/c<k>/<i>.jpg``,
class sub-folders), generated once and kept (a ``.done-<n>-<w>x<h>`` marker), in parallel."""

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = 10


def _write(root: Path, start: int, stop: int, size: tuple[int, int]) -> None:
    width, height = size
    for i in range(start, stop):
        rng = np.random.default_rng(i)  # per image: the corpus does not depend on the worker count
        folder = root / f"c{i % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(6):  # smooth shapes: ~15 KB at 320x256
            x, y = rng.integers(0, width - width // 16, 1)[0], rng.integers(0, height - height // 16, 1)[0]
            w, h = rng.integers(width // 16, width * 3 // 8 + 2, 2)
            draw.ellipse([x, y, x + w, y + h], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        image.save(folder / f"{i:06d}.jpg", quality=85)


def make_corpus(root: Path, n: int, size: tuple[int, int] = (320, 256), workers: int = 1) -> Path:
    """``n`` distinct JPEGs of ``size`` (width, height) under ``root``; returns ``root``."""
    done = root / f".done-{n}-{size[0]}x{size[1]}"
    if done.exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, n, max(1, workers) * 4 + 1).astype(int)
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        jobs = [pool.submit(_write, root, int(a), int(b), size) for a, b in zip(bounds, bounds[1:]) if b > a]
        for job in jobs:
            job.result()
    done.touch()
    return root
