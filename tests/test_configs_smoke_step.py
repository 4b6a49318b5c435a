"""Every config in configs/ runs one optimisation step through the worker's own pieces (model
from the config, the Ray Data augmentation function, the device-side views, the step loop),
without a cluster. Video configs get random uint8 clip pairs in the streamed layout."""

from pathlib import Path

import numpy as np
import pytest
import torch

from cl_core.datasets import load_fashion_mnist
from cl_core.optim import build_optimizer
from cl_core.training import StepSchedules, train_steps
from cl_core.transforms.stages import augment_batch
from pipelines.config import load_config, recipe_from_config
from pipelines.train.worker import batch_preparer, build_model

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def image_batch(config) -> dict[str, torch.Tensor]:
    """32 Fashion-MNIST images through the Ray Data augmentation function, with their row index
    (as ``cached_calls`` passes it, for InstDisc's memory bank)."""
    images, labels = load_fashion_mnist("train", limit=32)
    recipe = recipe_from_config(config)
    rows = {"image": images[:, None], "label": labels, "index": np.arange(32) * 7}
    batch = augment_batch(rows, recipe, config.augment.colour_on_device, 0)
    return {k: torch.from_numpy(v) for k, v in batch.items()}


def clip_batch(config) -> dict[str, torch.Tensor]:
    """8 clip pairs (t, c, s, s) uint8 of 4 videos, as the video pipeline streams them."""
    g = torch.Generator().manual_seed(0)
    shape = (8, config.video.frames, config.data.channels, config.data.image_size, config.data.image_size)
    clips = {f"clip_{i}": torch.randint(0, 256, shape, generator=g, dtype=torch.uint8) for i in (0, 1)}
    return clips | {"label": torch.arange(8) % 4}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config__runs_one_training_step(path):
    config = load_config(path)
    batch = clip_batch(config) if config.data.source == "video_folder" else image_batch(config)
    model = build_model(config, world_size=1)
    optimizer = build_optimizer(
        model, config.train.optimizer, 0.01, config.train.weight_decay, config.train.momentum
    )
    before = [p.detach().clone() for p in model.backbone.parameters()]
    metrics = train_steps(
        model, optimizer, [batch], batch_preparer(config, rank=0), StepSchedules(np.full(1, 0.01)), 0
    )
    assert metrics["steps"] == 1 and np.isfinite(metrics["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.backbone.parameters()))
