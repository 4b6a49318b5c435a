"""The Train worker's GPU settings on the CPU (what bench/gpu.py exercises on a GPU): bf16 autocast
steps, channels_last views and weights, the bench's synthetic device batches. Ray-free."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import gpu
from cl_core.optim import build_optimizer
from cl_core.training import StepSchedules, train_steps
from pipelines.config import config_from_dict, recipe_from_config
from pipelines.train.worker import PRECISION, batch_preparer, build_model


def _config(tmp_path, channels_last: bool = True, precision: str = "fp32"):
    work = gpu.TINY[0]
    raw = gpu.job_config(work, tmp_path, tmp_path, False, 1, 1, 32)
    raw["train"] |= {"channels_last": channels_last, "precision": precision}
    return config_from_dict(raw)


def _steps(config, steps: int = 3) -> tuple[list[float], torch.nn.Module]:
    method = build_model(config, world_size=1)
    if config.train.channels_last:
        method = method.to(memory_format=torch.channels_last)
    t = config.train
    optimizer = build_optimizer(method, "sgd", 0.05, 0.0, 0.9)
    batch, prepare = gpu.synthetic_batch(config, torch.device("cpu")), batch_preparer(config, rank=0)
    losses = []
    for step in range(steps):
        metrics = train_steps(
            method,
            optimizer,
            [batch],
            prepare,
            StepSchedules(lr=np.full(steps, 0.05)),
            step,
            PRECISION[t.precision],
            t.grad_clip,
        )
        losses.append(metrics["loss"])
    return losses, method


def test_synthetic_batch__holds_uint8_crops_of_the_recipe_sizes(tmp_path):
    config = _config(tmp_path)
    batch = gpu.synthetic_batch(config, torch.device("cpu"))
    sizes = recipe_from_config(config).sizes
    assert [batch[f"view_{i}"].shape for i in range(len(sizes))] == [(16, 3, s, s) for s in sizes]
    assert all(batch[f"view_{i}"].dtype == torch.uint8 for i in range(len(sizes)))
    assert batch["label"].shape == (16,)


def test_batch_preparer__views_are_channels_last_when_asked(tmp_path):
    config = _config(tmp_path, channels_last=True)
    views, _ = batch_preparer(config, rank=0)(gpu.synthetic_batch(config, torch.device("cpu")))
    assert views and all(v.is_contiguous(memory_format=torch.channels_last) for v in views)
    assert all(v.dtype == torch.float32 for v in views)


def test_channels_last__same_embeddings_as_contiguous(tmp_path):
    config = _config(tmp_path)
    method = build_model(config, world_size=1).eval()
    x = torch.randn(4, 3, 64, 64)
    expected = method.backbone(x)
    last = method.to(memory_format=torch.channels_last)
    torch.testing.assert_close(last.backbone(x.contiguous(memory_format=torch.channels_last)), expected)


def test_bf16_autocast__steps_stay_finite_and_track_fp32(tmp_path):
    fp32, _ = _steps(_config(tmp_path, precision="fp32"))
    bf16, method = _steps(_config(tmp_path, precision="bf16"))
    assert all(np.isfinite(bf16)) and bf16 != fp32  # autocast really ran in bf16
    assert bf16 == pytest.approx(fp32, rel=0.05)  # same init, same batch: bf16 rounding only
    assert all(p.dtype == torch.float32 for p in method.parameters())  # master weights stay fp32


def test_gpu_sh__uses_a_python_that_has_the_project_and_runs_the_bench():
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        ["bash", str(root / "bench" / "gpu.sh"), "--help"],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--cpu" in done.stdout and "--tiny" in done.stdout
    assert not (root / ".venv-gpu").exists()  # no set-up where the packages are there
