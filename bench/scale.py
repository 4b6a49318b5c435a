"""Does the streamed image path scale? The same job on N and 10N JPEGs: memory and time to the
first training batch, as ratios 10N / N, and streamed vs cached images/s on the same files.

    .venv/bin/python bench/scale.py                 # N = 5,000 JPEGs of 320x256 px; ~10 minutes
    .venv/bin/python bench/scale.py --n 1000 --batches 4   # a smoke run

The corpus (class sub-folders, generated once into ``--cache-dir``) has N distinct JPEGs; the 10N
corpus holds 10 hard links to each (10N files to list, read and decode; no extra disk). Each job
runs on a fresh 2-CPU local Ray instance, one at a time, with the default SimCLR recipe at 224 px
(colour on the device) and one consumer that takes batches of 256 as a Train worker would
(``streaming_split``), ``--batches`` of them. Measured while it runs (polled every 0.2 s): the
object store's bytes in use (Ray's memory summary), the peak unique memory (USS: without the
object store's shared pages) of Ray's worker processes (psutil; the data tasks), and the seconds
from building the datasets to the first batch. images/s: the batches after the first (what the
pipeline ran ahead while the first was awaited included). Also with the colour stage on the CPU
(the full recipe), where augmentation, not decoding, is most of the work. ``data.cache: memory``
decodes the whole corpus first (so its first batch waits for that); it runs on N only, since 10N
at 224 px (~7.5 GB decoded) does not fit this machine's store.
Targets (issue #20): streamed 10N / N memory <= 1.3 and first batch <= 1.5; streamed images/s
>= 0.8x the cache's on the same files.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import ray
from corpus import make_corpus  # bench/corpus.py (bench/ is the script's folder)

from pipelines.config import load_config
from pipelines.data.build import build_datasets
from pipelines.data.epochs import set_epoch


def link_copies(src: Path, dst: Path, copies: int) -> Path:
    """``copies`` hard links of every file of ``src`` under ``dst`` (same classes)."""
    done = dst / f".done-{copies}"
    if done.exists():
        return dst
    for path in src.rglob("*.jpg"):
        folder = dst / path.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(copies):
            target = folder / f"{path.stem}-{k}.jpg"
            if not target.exists():
                os.link(path, target)
    done.touch()
    return dst


def store_bytes() -> int:
    """Bytes in Ray's object store now (its memory summary's plasma line)."""
    from ray._private.internal_api import memory_summary

    text = memory_summary(stats_only=True)
    match = re.search(r"Plasma memory usage (\d+) MiB", text)
    return int(match.group(1)) * 2**20 if match else 0


def worker_rss() -> int:
    """Unique memory (USS: not the object store's shared pages they map) of Ray's worker processes."""
    total = 0
    for proc in psutil.process_iter(["cmdline"]):
        if " ".join(proc.info["cmdline"] or []).startswith("ray::"):
            try:
                total += proc.memory_full_info().uss
            except psutil.Error:  # exited meanwhile
                pass
    return total


class Peaks(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.store, self.rss, self.stop = 0, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.store, self.rss = max(self.store, store_bytes()), max(self.rss, worker_rss())
            time.sleep(0.2)


def job(
    folder: Path, cache: str, batches: int, batch: int = 256, colour_on_device: bool = True
) -> dict[str, float]:
    ray.init(num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False)
    peaks = Peaks()
    peaks.start()
    try:
        config = load_config(
            values={
                "data": {
                    "source": "image_folder",
                    "path": str(folder),
                    "image_size": 224,
                    "channels": 3,
                    "cache": cache,
                },
                "augment": {"cpus_per_task": 0.5, "colour_on_device": colour_on_device},
                "eval": {"train_size": 256, "test_size": 64},
                "scaling": {"cpus_per_worker": 0.5},
            }
        )
        started = time.monotonic()
        datasets = build_datasets(config)
        if datasets.clock is not None:
            set_epoch(datasets.clock, 0)
        (split,) = datasets.train.streaming_split(1, equal=True)
        stream = iter(split.iter_batches(batch_size=batch, drop_last=True))
        next(stream)
        first = time.monotonic() - started
        steady = time.monotonic()
        taken = sum(1 for _, _ in zip(range(batches - 1), stream))  # fewer if the epoch ends first
        rate = taken * batch / (time.monotonic() - steady)
    finally:
        peaks.stop.set()
        peaks.join()
        ray.shutdown()
    return {"first_s": first, "store": peaks.store, "rss": peaks.rss, "images_per_s": rate}


def job_in_process(folder: Path, cache: str, batches: int, colour_on_device: bool = True) -> dict[str, float]:
    """``job`` in a fresh Python process (its own Ray instance, nothing left over between jobs)."""
    spec = json.dumps([str(folder), cache, batches, colour_on_device])
    out = subprocess.run(
        [sys.executable, __file__, "--job", spec], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{folder.name} cache={cache} colour_on_device={colour_on_device}: {result}", flush=True)
    return result


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--n", type=int, default=5000, help="N (%(default)s)")
    parser.add_argument("--batches", type=int, default=12, help="batches of 256 per job (%(default)s)")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "ssl-pipeline-bench")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # internal: one job, its result as JSON
    args = parser.parse_args()
    if args.job:
        folder, cache, batches, on_device = json.loads(args.job)
        print(json.dumps(job(Path(folder), cache, batches, colour_on_device=on_device)))
        return
    small = make_corpus(args.cache_dir / f"jpeg-{args.n}", args.n, workers=os.cpu_count() or 1)
    large = link_copies(small, args.cache_dir / f"jpeg-{args.n}x10", 10)
    rows = {
        "stream N": job_in_process(small, "none", args.batches),
        "stream 10N": job_in_process(large, "none", args.batches),
        "cache N": job_in_process(small, "memory", args.batches),
        "stream N, colour on CPU": job_in_process(small, "none", args.batches // 3, False),
        "cache N, colour on CPU": job_in_process(small, "memory", args.batches // 3, False),
    }
    print("\n| job | files | first batch s | peak object store MB | peak worker USS MB | images/s |")
    print("|---|--:|--:|--:|--:|--:|")
    for name, r in rows.items():
        files = args.n * (10 if "10N" in name else 1)
        cells = [name, files, f"{r['first_s']:.1f}", f"{r['store'] / 2**20:.0f}", f"{r['rss'] / 2**20:.0f}"]
        print("| " + " | ".join(map(str, cells)) + f" | {r['images_per_s']:.0f} |")
    small_job, large_job, cached = rows["stream N"], rows["stream 10N"], rows["cache N"]
    first = large_job["first_s"] / small_job["first_s"]
    store = large_job["store"] / max(small_job["store"], 1)
    rss = large_job["rss"] / small_job["rss"]  # unique memory of the workers
    print(
        f"\nstreamed 10N / N: first batch {first:.2f} (target <= 1.5), object store {store:.2f}, "
        f"worker USS {rss:.2f} (target <= 1.3)"
    )
    speed = small_job["images_per_s"] / cached["images_per_s"]
    full = rows["stream N, colour on CPU"]["images_per_s"] / rows["cache N, colour on CPU"]["images_per_s"]
    print(
        f"streamed / cached images/s on N: {speed:.2f} colour on device, {full:.2f} colour on the CPU "
        f"(target >= 0.8); cached first batch {cached['first_s']:.1f} s, object store "
        f"{cached['store'] / 2**20:.0f} MB"
    )


if __name__ == "__main__":
    main()
