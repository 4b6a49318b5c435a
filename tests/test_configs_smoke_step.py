"""Every config in configs/ runs one optimisation step through the worker's own pieces (model
from the config, the Ray Data augmentation function, the device-side views, the step loop),
without a cluster."""

from pathlib import Path

import numpy as np
import pytest
import torch

from cl_core.datasets import load_fashion_mnist
from cl_core.optim import build_optimizer
from cl_core.training import StepSchedules, train_steps
from pipelines.config import load_config
from pipelines.data import augment_batch, device_views, normalization, recipe_from_config
from pipelines.worker import build_model

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config__runs_one_training_step(path):
    config = load_config(path)
    images, labels = load_fashion_mnist("train", limit=32)
    recipe, (mean, std) = recipe_from_config(config), normalization(config)
    batch = augment_batch({"image": images[:, None], "label": labels}, recipe, config.augment.colour_on_device, 0)
    batch = {k: torch.from_numpy(v) for k, v in batch.items()}
    model = build_model(config, world_size=1)
    optimizer = build_optimizer(model, config.train.optimizer, 0.01, config.train.weight_decay, config.train.momentum)
    generator = torch.Generator().manual_seed(0)
    before = [p.detach().clone() for p in model.backbone.parameters()]
    metrics = train_steps(model, optimizer, [batch],
                          lambda b: device_views(b, recipe, config.augment.colour_on_device, mean, std, generator),
                          StepSchedules(np.full(1, 0.01)), 0)  # fmt: skip
    assert metrics["steps"] == 1 and np.isfinite(metrics["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.backbone.parameters()))
