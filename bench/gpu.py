"""The GPU path in one short, prepared run (issue #23): what a Train worker does per image on a GPU,
and whether the CPU tier keeps it fed.

    bash bench/gpu.sh                              # a fresh single-GPU machine: sets up, then runs this
    .venv/bin/python bench/gpu.py                  # where the project is installed; ~5 minutes
    .venv/bin/python bench/gpu.py --cpu --tiny     # the dry run on CPU (tests/test_gpu_bench.py)

For each workload (SimCLR with ResNet-50 at 224 px, batch 256; ResNet-18 at 32 px, batch 512), with
the worker's own code (``build_model``, ``batch_preparer`` = the colour stage on the device,
``train_steps``, bf16 autocast, channels_last):
- ceiling: training images/s on synthetic uint8 crops already on the device (the colour stage and
  the step: everything but the data), and the peak GPU memory of those steps;
- colour: images/s of the colour-on-device stage alone;
- stream: a real job (``pipelines.run.pretrain``: Ray Data streaming a JPEG folder generated on the
  spot, decoded and cropped on the CPU tier, ``iter_torch_batches(device=...)`` into the Train
  worker), its last epoch's images/s and ``data/wait_fraction``, and stream / ceiling;
- with 2+ GPUs, a 2-worker job (DDP over NCCL, SimCLR's all-gather) on the 32 px workload.
Target (issue #23): ResNet-50 stream >= 0.9x the ceiling (data wait < 10%).
``--cpu`` runs the same path on the CPU in float32 (autocast off); ``--tiny`` shrinks models, images,
corpora and steps so the whole dry run takes about a minute. Results also go to ``--out`` (JSON).
"""

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

try:
    from corpus import make_corpus  # run as a script: bench/ is on the path
except ImportError:  # imported as bench.gpu (the tests)
    from bench.corpus import make_corpus

from cl_core.optim import build_optimizer
from cl_core.training import StepSchedules, train_steps
from pipelines.config import load_config, recipe_from_config
from pipelines.train.worker import PRECISION, batch_preparer, build_model


@dataclass(frozen=True)
class Workload:
    name: str
    backbone: str
    small_images: bool  # 3x3 stem, no max-pool (32 px)
    image_size: int
    batch: int
    jpeg_size: tuple[int, int]  # generated files (width, height); decoded shorter side <= 2 x image_size
    images: int  # corpus size: the stream's epoch


FULL = [
    Workload("resnet50_224px", "resnet50", False, 224, 256, (320, 256), 16384),
    Workload("resnet18_32px", "resnet18", True, 32, 512, (48, 40), 32768),
]
TINY = [  # the same two paths, small enough for two CPU cores
    Workload("resnet50_224px (tiny: tiny_cnn 64 px)", "tiny_cnn", False, 64, 16, (80, 64), 96),
    Workload("resnet18_32px (tiny: tiny_cnn 32 px)", "tiny_cnn", True, 32, 16, (48, 40), 96),
]


def job_config(
    work: Workload, corpus: Path, out: Path, gpu: bool, workers: int, epochs: int, eval_size: int
) -> dict:
    """The stream job: SimCLR's full recipe on an RGB image folder, the GPU settings of
    ``configs/cluster_simclr.yaml`` (bf16, channels_last; fp32 on the CPU)."""
    return {
        "name": f"gpu-bench-{work.backbone}-{work.image_size}",
        "method": {"name": "simclr", "params": {"temperature": 0.2}},
        "backbone": {"name": work.backbone, "small_images": work.small_images},
        "data": {"source": "image_folder", "path": str(corpus), "image_size": work.image_size, "channels": 3},
        "augment": {"recipe": "simclr"},
        "train": {
            "epochs": epochs,
            "global_batch_size": work.batch * workers,
            "optimizer": "lars" if gpu else "sgd",
            "base_lr": 0.3,
            "weight_decay": 1.0e-6,
            "precision": "bf16" if gpu else "fp32",
            "channels_last": True,
        },
        "scaling": {"num_workers": workers, "use_gpu": gpu, "cpus_per_worker": 1.0},
        "eval": {"every_epochs": 0, "knn_k": 20, "train_size": eval_size, "test_size": eval_size},
        "checkpoint": {"output_dir": str(out / "runs")},
        "tracking": {"tracking_uri": f"sqlite:///{out / 'mlflow.db'}", "experiment": "gpu-bench"},
    }


def load(raw: dict, folder: Path):
    path = folder / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_batch(config, device: torch.device) -> dict[str, torch.Tensor]:
    """What ``iter_torch_batches(device=...)`` hands the worker: uint8 crops (b, c, s, s) + labels."""
    g = torch.Generator().manual_seed(0)
    b, c = config.train.global_batch_size, config.data.channels
    batch = {
        f"view_{i}": torch.randint(0, 256, (b, c, size, size), generator=g, dtype=torch.uint8).to(device)
        for i, size in enumerate(recipe_from_config(config).sizes)
    }
    batch["label"] = torch.zeros(b, dtype=torch.int64, device=device)
    return batch


def ceiling(config, device: torch.device, warmup: int, steps: int) -> dict[str, float]:
    """Training images/s with the data already on the device (one batch, reused), and peak memory."""
    method = build_model(config, world_size=1).to(device)
    if config.train.channels_last:
        method = method.to(memory_format=torch.channels_last)
    t = config.train
    optimizer = build_optimizer(method, t.optimizer, t.base_lr, t.weight_decay, t.momentum)
    schedules = StepSchedules(lr=np.full(warmup + steps, t.base_lr))
    prepare, batch = batch_preparer(config, rank=0), synthetic_batch(config, device)
    dtype = PRECISION[t.precision]
    train_steps(method, optimizer, [batch] * warmup, prepare, schedules, 0, dtype, t.grad_clip)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    started = time.perf_counter()
    metrics = train_steps(method, optimizer, [batch] * steps, prepare, schedules, warmup, dtype, t.grad_clip)
    sync(device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    del method, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "images_per_s": steps * batch["label"].numel() / seconds,
        "loss": metrics["loss"],
        "peak_gpu_gib": peak,
    }


def colour_stage(config, device: torch.device, repeats: int) -> float:
    """Images/s of ``batch_preparer`` alone (colour stage + normalisation of every view)."""
    prepare, batch = batch_preparer(config, rank=0), synthetic_batch(config, device)
    prepare(batch)
    sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        views, _ = prepare(batch)
    sync(device)
    return repeats * views[0].shape[0] / (time.perf_counter() - started)


def stream(config, out: Path) -> dict[str, float]:
    """A real pretraining job; its last epoch's throughput and data wait."""
    from pipelines import run  # Ray and MLflow: only for this part

    metrics = run.pretrain(config, out / "runs" / config.name)
    return {
        "images_per_s": float(metrics["data/images_per_s"]),
        "wait_fraction": float(metrics["data/wait_fraction"]),
        "epochs": int(metrics["train/epoch"]),
    }


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name}, {props.total_memory / 2**30:.0f} GiB, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    return f"CPU ({os.cpu_count()} cores, {cpu}), torch {torch.__version__}"


def table(rows: list[dict]) -> str:
    lines = [
        "| workload | ceiling img/s | stream img/s | stream / ceiling | data wait | colour img/s "
        "| peak GiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workload']} | {r['ceiling']['images_per_s']:,.0f} | {r['stream']['images_per_s']:,.0f} | "
            f"{r['stream_over_ceiling']:.2f} | {r['stream']['wait_fraction']:.1%} | "
            f"{r['colour_images_per_s']:,.0f} | {r['ceiling']['peak_gpu_gib']:.1f} |"
        )
    return "\n".join(lines)


def run_bench(cpu: bool, tiny: bool, work_dir: Path, steps: int | None = None) -> dict:
    """Every figure of the bench, as a dict (printed by ``main``)."""
    device = torch.device("cpu" if cpu else "cuda")
    workloads, gpus = TINY if tiny else FULL, 0 if cpu else torch.cuda.device_count()
    steps, warmup = steps or (2 if tiny else 30), 1 if tiny else 10
    epochs, eval_size = (1, 32) if tiny else (2, 512)  # the last epoch is timed: 2 on a GPU (warm)
    print(f"device: {describe(device)}; work dir {work_dir}", flush=True)
    results: dict = {"device": describe(device), "date": time.strftime("%Y-%m-%d"), "workloads": []}
    started = time.perf_counter()
    for work in workloads:
        folder = work_dir / f"jpeg-{work.images}-{work.jpeg_size[0]}"
        corpus = make_corpus(folder, work.images, work.jpeg_size, workers=os.cpu_count() or 1)
        config = load(job_config(work, corpus, work_dir, not cpu, 1, epochs, eval_size), work_dir)
        row = {"workload": work.name, "batch": work.batch, "precision": config.train.precision}
        row["ceiling"] = ceiling(config, device, warmup, steps)
        row["colour_images_per_s"] = colour_stage(config, device, 3 if tiny else 20)
        print(f"{work.name}: ceiling {row['ceiling']['images_per_s']:,.0f} img/s; streaming...", flush=True)
        row["stream"] = stream(config, work_dir)
        row["stream_over_ceiling"] = row["stream"]["images_per_s"] / row["ceiling"]["images_per_s"]
        results["workloads"].append(row)
    if gpus >= 2:
        work = workloads[-1]
        corpus = work_dir / f"jpeg-{work.images}-{work.jpeg_size[0]}"
        raw = job_config(work, corpus, work_dir, True, 2, 1, eval_size) | {"name": "gpu-bench-nccl"}
        results["nccl"] = {"ran": True, "workers": 2, **stream(load(raw, work_dir), work_dir)}
    else:
        why = "the CPU dry run" if cpu else f"{gpus} GPU on this machine; it needs 2+"
        results["nccl"] = {"ran": False, "why": why}
    results["seconds"] = time.perf_counter() - started
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="run on the CPU in float32 (a dry run)")
    parser.add_argument("--tiny", action="store_true", help="small models, images and corpora (~1 min)")
    parser.add_argument("--work-dir", type=Path, help="corpora, runs and MLflow store (default: a temp dir)")
    parser.add_argument("--out", type=Path, help="also write the results here (JSON)")
    parser.add_argument("--steps", type=int, help="timed synthetic steps (default 30; tiny 2)")
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --cpu for the dry run")
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    results = run_bench(args.cpu, args.tiny, work_dir, args.steps)
    print(f"\n## GPU bench, {results['date']}: {results['device']}\n\n{table(results['workloads'])}\n")
    nccl = results["nccl"]
    print(
        f"2-worker NCCL check: {nccl['images_per_s']:,.0f} img/s, data wait {nccl['wait_fraction']:.1%}"
        if nccl["ran"]
        else f"2-worker NCCL check: not run ({nccl['why']})"
    )
    print(f"total {results['seconds']:.0f} s", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=str))
    if args.work_dir is None:
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
