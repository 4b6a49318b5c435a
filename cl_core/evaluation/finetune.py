"""Semi-supervised fine-tuning: the whole encoder plus a linear head on a few labels.

SimCLR's protocol (arXiv 2002.05709, appendix B.5): fine-tune the pretrained network end to end
on the labelled subset with only random crop and flip, Nesterov SGD, momentum 0.9, no warmup,
then report test top-1. Small subsets get a minimum number of steps so that 1% of the labels is
not fitted in a handful of updates.
"""

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cl_core.evaluation.features import extract_features


@dataclass(frozen=True)
class FineTuneSettings:
    """Fine-tuning hyperparameters.

    Attributes:
        epochs: passes over the labelled subset.
        min_steps: at least this many steps (tiny subsets).
        batch_size: images per step (the subset's size when smaller).
        lr: peak learning rate of a cosine decay to 0, for the encoder and the head.
        weight_decay: L2 on every parameter (SimCLR: 0 for fine-tuning; a little helps tiny subsets).
        momentum: Nesterov momentum.
        seed: head init, batch order and crops.
    """

    epochs: int = 30
    min_steps: int = 300
    batch_size: int = 64
    lr: float = 0.05
    weight_decay: float = 5e-4
    momentum: float = 0.9
    seed: int = 0


def random_crop_flip(images: Tensor, generator: torch.Generator, pad_fraction: float = 0.125) -> Tensor:
    """Pad by ``pad_fraction`` of the side (reflect), crop back at a random offset, flip half.

    Args:
        images: (b, c, h, w) float.
    """
    b, _, h, w = images.shape
    pad = max(1, round(pad_fraction * h))
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")  # (b, c, h + 2p, w + 2p)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).tolist()
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).tolist()
    out = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])  # (b, c, h, w)
    flip = torch.rand(b, generator=generator) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def fine_tune_top1(
    encoder: nn.Module,
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    transform: Callable[[Tensor], Tensor],
    num_classes: int | None = None,
    settings: FineTuneSettings = FineTuneSettings(),
    device: str | torch.device = "cpu",
) -> float:
    """Fine-tune a copy of ``encoder`` with a new linear head; return test top-1 in [0, 1].

    Args:
        encoder: maps (b, c, h, w) to (b, d) with ``output_dim`` = d; left unchanged.
        train_images: (n, c, h, w) uint8, the labelled subset.
        train_labels: (n,) integers.
        test_images: (m, c, h, w) uint8.
        test_labels: (m,) integers.
        transform: uint8 batch (on ``device``) -> normalised float batch.
        num_classes: C; default one more than the largest label in either split.
        settings: see :class:`FineTuneSettings`.
        device: where to train.
    """
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    s = settings
    torch.manual_seed(s.seed)  # the head's init
    model = nn.Sequential(
        copy.deepcopy(encoder), nn.Flatten(), nn.Linear(encoder.output_dim, num_classes)
    ).to(device)
    model.train()
    n = train_images.shape[0]
    batch_size = min(s.batch_size, n)
    per_epoch = max(1, n // batch_size)
    total = max(s.epochs * per_epoch, s.min_steps)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=s.lr, momentum=s.momentum, nesterov=True, weight_decay=s.weight_decay
    )
    generator = torch.Generator().manual_seed(s.seed)
    labels = train_labels.long()
    step = 0
    while step < total:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            if step == total:
                break
            idx = order[start : start + batch_size]
            x = random_crop_flip(transform(train_images[idx].to(device)), generator)  # (b, c, h, w)
            for group in optimizer.param_groups:
                group["lr"] = 0.5 * s.lr * (1.0 + math.cos(math.pi * step / total))
            loss = F.cross_entropy(model(x), labels[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    logits = extract_features(model, test_images, device=device, transform=transform)  # (m, C)
    return int((logits.argmax(dim=1) == test_labels.cpu().long()).sum()) / test_labels.numel()
