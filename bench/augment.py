"""Augmentation throughput: our batched recipe path vs per-sample torchvision + PIL, and Ray's overhead.

    .venv/bin/python bench/augment.py            # about 8 minutes on 2 cores
    .venv/bin/python bench/augment.py --quick    # smoke run, under a minute

Part 1, images/s per core (torch pinned to 1 thread) of SimCLR's full two-view recipe on the
same decoded uint8 images: ``reference_views`` (one PIL image at a time through torchvision v2,
as the official pipelines) vs ``pipelines.data.augment_batch`` with the colour stage on the CPU
(views quantised to uint8, what crosses the object store) and with it deferred to the device
(geometric stage only on the CPU). Decoding is excluded from both: the pipeline decodes once.

Part 2, the Ray overhead: an epoch of the pipeline's training rows (``cached_rows``, as in
``build_datasets``; default config) on a 1-CPU local Ray, so one task at a time, vs
``augment_batch`` called in a loop over the same decoded images with the same rows per call, in
this process; colour on device (the default), and at 224 px also the full recipe on the CPU (an
eighth of the images: it is ~15x slower per image). Then where a Ray epoch goes: the same
pipeline with each augmentation call timed inside its task; the share of the epoch outside the
calls and the time per task outside them
(Ray's own cost, whatever the speed of the calls in the worker vs this process).

Everything runs under the pipeline's augmentation workers' malloc policy
(``pipelines.malloc.keep_freed_memory``), so this process' calls and the workers' allocate alike.

Part 3, task sizing: Ray epochs of the 224 px folder and of Fashion-MNIST with ``rows_per_task``
(several calls per task) vs one call per task, in pairs, on the same Ray instance; the median of
the pairs' time ratios.
"""

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cl_core.datasets import load_fashion_mnist
from cl_core.datasets.decode import decode_image
from cl_core.transforms import ViewRecipe, build_recipe, reference_views
from cl_core.transforms.stages import augment_batch
from pipelines.config import load_config, recipe_from_config
from pipelines.data.corpus import read_corpus
from pipelines.data.epochs import start_clock
from pipelines.data.images import _cached_task, cached_rows, call_rows, rows_per_task, training_arrays
from pipelines.data.malloc import keep_freed_memory


def natural_images(n: int, size: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """(n, channels, size, size) uint8: smooth random colour fields plus fine texture (JPEG-realistic)."""
    g, out = torch.Generator().manual_seed(seed), np.empty((n, channels, size, size), dtype=np.uint8)
    for start in range(0, n, 256):  # chunks: float images of 224 px take 600 KB each
        coarse = torch.rand(min(256, n - start), channels, 8, 8, generator=g) * 255
        smooth = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
        texture = torch.randn(smooth.shape, generator=g) * 12
        out[start : start + 256] = (smooth + texture).clamp(0, 255).round().byte().numpy()
    return out


def write_jpegs(images: np.ndarray, root: Path) -> list[Path]:
    """Save (n, 3, s, s) uint8 images as quality-90 JPEGs; return their paths."""
    paths = [root / f"{i:05d}.jpg" for i in range(len(images))]
    for image, path in zip(images, paths):
        Image.fromarray(image.transpose(1, 2, 0)).save(path, quality=90)
    return paths


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def plain_loop(images: np.ndarray, recipe: ViewRecipe, colour_on_device: bool, batch_rows: int) -> None:
    """``augment_batch`` over ``images`` in chunks of ``batch_rows``, as one Ray Data task would."""
    labels = np.zeros(len(images), dtype=np.int64)
    for start in range(0, len(images), batch_rows):
        chunk = {"image": images[start : start + batch_rows], "label": labels[start : start + batch_rows]}
        augment_batch(chunk, recipe, colour_on_device, seed=start)


def recipe_table(sets: dict[str, tuple[np.ndarray, ViewRecipe]], rounds: int) -> None:
    """Part 1: per-sample PIL vs our full and geometric-only paths, per data set. The three run in
    turn ``rounds`` times after a warm-up (this machine's speed drifts); medians over rounds."""
    print("\nSimCLR two views, images/s per core (1 thread); ratio = ours / per-sample torchvision+PIL")
    print(
        f"{'data':<24}{'n':>6}{'PIL':>9}{'ours full':>11}{'ratio':>7}{'ours, colour on device':>24}"
        f"{'ratio':>7}"
    )
    for name, (images, recipe) in sets.items():
        hwc = np.ascontiguousarray(images.transpose(0, 2, 3, 1))  # reference_views takes (b, h, w, c)
        paths = [
            lambda: reference_views(hwc, recipe, seed=0),
            lambda: plain_loop(images, recipe, False, 64),
            lambda: plain_loop(images, recipe, True, 64),
        ]
        for path in paths:
            path()
        times = [[seconds(path) for path in paths] for _ in range(rounds)]  # (rounds, 3)
        pil, full, geometric = (len(images) / statistics.median(column) for column in zip(*times))
        full_ratio, geometric_ratio = (statistics.median(t[0] / t[i] for t in times) for i in (1, 2))
        print(
            f"{name:<24}{len(images):>6}{pil:>9.0f}{full:>11.0f}{full_ratio:>6.1f}x{geometric:>24.0f}"
            f"{geometric_ratio:>6.1f}x"
        )


def timed_pass(dataset) -> tuple[int, float, float]:
    """One pass over ``dataset``: (rows, seconds, seconds to the first batch)."""
    start, rows, first = time.perf_counter(), 0, 0.0
    for batch in dataset.iter_batches(batch_size=None):
        first = first or time.perf_counter() - start
        rows += len(batch["label"])
    return rows, time.perf_counter() - start, first


def interleaved_rates(dataset, plain: Callable[[], object], rounds: int) -> dict[str, float]:
    """A pass over ``dataset`` and one of ``plain`` (the same images) in alternation, ``rounds``
    times after a warm-up each: this machine's speed drifts (shared cores), so each round's Ray /
    plain ratio compares neighbours in time. Medians over rounds.

    Returns:
        rows, plain and Ray images/s, the Ray / plain ratio, Ray's seconds to the first batch.
    """
    rows = timed_pass(dataset)[0]
    plain()
    stats = []
    for _ in range(rounds):
        _, elapsed, first = timed_pass(dataset)
        plain_rate = rows / seconds(plain)
        stats.append((plain_rate, rows / elapsed, rows / elapsed / plain_rate, first))
    plain_rate, ray_rate, ratio, first = (statistics.median(column) for column in zip(*stats))
    ratios = [r[2] for r in stats]
    return dict(rows=rows, plain=plain_rate, ray=ray_rate, ratio=ratio, first=first, ratios=ratios)


CLOCKS = []  # the epoch clocks' actors stay alive for the bench's Ray session


def epoch_rows(corpus, config, rows: int | None = None, fn=_cached_task):
    """The pipeline's training rows of a decoded ``corpus`` (``cached_rows``, as ``build_datasets``)."""
    clock, handle = start_clock()
    CLOCKS.append(handle)
    return cached_rows(*training_arrays(corpus), config, clock, corpus.tasks, rows, fn)


def corpus_rows_per_task(corpus, config) -> int:
    return rows_per_task(config, corpus.num_train_rows, corpus.tasks["compute"].size)


def timed_calls(batch, **kwargs) -> Iterator[dict[str, np.ndarray]]:
    """``_cached_task`` with each call's start and end (seconds since the epoch) and its task's
    start as columns."""
    start = task = time.time()
    for out in _cached_task(batch, **kwargs):
        n = len(out["label"])
        yield out | {
            "call_start": np.full(n, start),
            "call_end": np.full(n, time.time()),
            "task": np.full(n, task),
        }
        start = time.time()


def outside_calls(dataset, rounds: int) -> tuple[float, float, int]:
    """Epochs of ``dataset`` (made by ``timed_calls``, one task at a time), after a warm-up.

    Returns:
        Medians over ``rounds`` epochs: the share of the epoch's wall time outside the
        augmentation calls, its milliseconds per task, tasks per epoch.
    """
    timed_pass(dataset)
    stats = []
    for _ in range(rounds):
        start, calls, tasks = time.perf_counter(), set(), set()
        for batch in dataset.iter_batches(batch_size=None):
            calls |= set(zip(batch["call_start"].tolist(), batch["call_end"].tolist()))
            tasks |= set(batch["task"].tolist())
        wall, inside = time.perf_counter() - start, sum(end - begin for begin, end in calls)
        stats.append((1 - inside / wall, (wall - inside) / len(tasks) * 1000, len(tasks)))
    share, per_task, tasks = (statistics.median(column) for column in zip(*stats))
    return share, per_task, int(tasks)


def ray_table(folder: Path, jpeg_images: np.ndarray, fmnist_limit: int, rounds: int) -> None:
    """Part 2: Ray Data pipeline vs the plain loop, colour stage deferred (the default)."""
    import ray
    import ray.data

    # Ray nices its workers to 15; on a machine busy with other work that alone slows the tasks
    # against this (nice 0) process. Same priority for both, so the ratio measures Ray.
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(
        address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR
    )  # a new 1-CPU instance even if another cluster runs here
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    common = {"eval": {"train_size": 64, "test_size": 64}}  # default augment: 0.25-CPU tasks, 1 at a time
    jpegs = {
        "source": "image_folder",
        "path": str(folder),
        "image_size": 224,
        "channels": 3,
        "folder_labels": False,
        "cache": "memory",  # decoded once: the path this part measures
    }
    full_rows = len(jpeg_images) // 8  # the full recipe is ~15x slower per image: fewer images
    cases = {
        "224 px JPEG folder": {"data": jpegs},
        "28 px Fashion-MNIST": {"data": {"limit": fmnist_limit}},  # 60,000: one real epoch
        "224 px, colour on CPU": {
            "data": jpegs | {"limit": full_rows},
            "augment": {"colour_on_device": False},
        },
    }
    print("\nRay Data (1-CPU local Ray) vs augment_batch in a loop, images/s, colour on device unless said")
    print("overhead = 1 - median over rounds of (Ray / plain in the same round); plain, Ray: median images/s")
    print(f"{'data':<24}{'n':>7}{'plain':>9}{'Ray':>9}{'overhead':>10}{'1st batch s':>13}  per round")
    corpora = {}
    for name, values in cases.items():
        config = load_config(values=values | common)
        corpus = corpora[name] = read_corpus(config)
        if config.data.source == "image_folder":
            images = jpeg_images[: config.data.limit]
        else:
            images = load_fashion_mnist(limit=fmnist_limit)[0][:, None]
        recipe, rows, on_device = (
            recipe_from_config(config),
            call_rows(config),
            config.augment.colour_on_device,
        )
        loop = lambda: plain_loop(images, recipe, on_device, rows)  # noqa: E731
        r = interleaved_rates(epoch_rows(corpus, config), loop, rounds)
        assert r["rows"] == len(images)
        rounds_text = " ".join(f"{1 - x:.0%}" for x in r["ratios"])
        print(
            f"{name:<24}{len(images):>7}{r['plain']:>9.0f}{r['ray']:>9.0f}{1 - r['ratio']:>10.1%}"
            f"{r['first']:>13.2f}  {rounds_text}"
        )
    print(f"\nWhere a Ray epoch goes (calls timed inside the tasks), medians of {rounds} epochs")
    print(f"{'data':<24}{'rows/task':>10}{'tasks':>7}{'outside calls':>15}{'per task':>10}")
    for name, corpus in corpora.items():
        config = load_config(values=cases[name] | common)
        share, per_task, tasks = outside_calls(epoch_rows(corpus, config, fn=timed_calls), rounds)
        print(
            f"{name:<24}{corpus_rows_per_task(corpus, config):>10}{tasks:>7}{share:>15.1%}{per_task:>8.0f}ms"
        )
    for name in ("224 px JPEG folder", "28 px Fashion-MNIST"):
        task_sizing(name, corpora[name], load_config(values=cases[name] | common), rounds + 1)
    ray.shutdown()


def task_sizing(name: str, corpus, config, pairs: int) -> None:
    """Part 3: Ray epoch time with ``rows_per_task`` vs one call per task, ``pairs`` pairs (the
    order alternates), after a warm-up of each."""
    call, rows = call_rows(config), corpus_rows_per_task(corpus, config)
    head = f"\nTask sizing, {name} ({corpus.report.total} images) on one slot:"
    if rows == call:
        print(f"{head} one call per task ({call} rows) either way, nothing to compare")
        return
    single, several = epoch_rows(corpus, config, call), epoch_rows(corpus, config)
    timed_pass(single), timed_pass(several)
    ratios = []
    for i in range(pairs):
        first, second = (single, several) if i % 2 else (several, single)
        times = {id(first): timed_pass(first)[1], id(second): timed_pass(second)[1]}
        ratios.append(times[id(several)] / times[id(single)])
    print(
        f"{head} {rows} rows ({rows // call} calls) per task vs {call} (1 call); epoch time ratio,"
        f" median of {pairs} pairs: "
        f"{statistics.median(ratios):.3f}  ({' '.join(f'{x:.2f}' for x in ratios)})"
    )


def main(quick: bool) -> None:
    torch.set_num_threads(1)  # per-core figures; Ray Data tasks pin themselves to 1 thread too
    keep_freed_memory()  # the malloc policy of the pipeline's augmentation workers, for both sides
    n224, n_small, n_ray, n_fmnist, rounds = (8, 64, 64, 2048, 1) if quick else (96, 2048, 4096, 60000, 3)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_jpegs(natural_images(n_ray, 224), folder)
        jpeg_images = np.stack([decode_image(p.read_bytes(), 224, 3) for p in paths])  # (n, 3, 224, 224)
        fmnist = load_fashion_mnist(limit=n_small)[0][:, None]  # (n, 1, 28, 28)

        def simclr(size: int) -> ViewRecipe:  # the ImageNet recipe at 224 px, CIFAR's (no blur, B.9) below
            return build_recipe("simclr", size=size, blur_prob=0.5 if size >= 96 else 0.0)

        sets = {
            "224 px JPEG (RGB)": (jpeg_images[:n224], simclr(224)),
            "32 px arrays (RGB)": (natural_images(n_small, 32, seed=1), simclr(32)),
            "28 px Fashion-MNIST (L)": (fmnist, simclr(28)),
        }
        recipe_table(sets, rounds)
        ray_table(folder, jpeg_images, n_fmnist, 9 if not quick else 1)  # 9: this VM drifts between rounds


if __name__ == "__main__":
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: a smoke run")
    main(parser.parse_args().quick)
