"""Single-process pretraining on an in-memory uint8 tensor dataset.

Builds the per-step schedules, makes the views batch by batch and calls
:func:`cl_core.training.loop.train_steps` once per epoch; evaluates with weighted kNN.
Returns a history of metric dicts and never logs (pass ``on_epoch_end`` to print). With
``checkpoint`` it saves its whole state after every epoch and continues from that file when it
exists, so a killed run loses at most one epoch and ends with the weights of an unbroken one.
"""

import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from cl_core.backbones import memory_format
from cl_core.evaluation import extract_features, knn_top1
from cl_core.optim import build_optimizer, scale_lr, warmup_cosine, weight_decay_schedule
from cl_core.training.loop import Batch, StepSchedules, train_steps
from cl_core.transforms import ViewRecipe, make_views, normalize, normalize_clips


@dataclass(frozen=True)
class PretrainSettings:
    """Optimisation settings of a single-process run.

    Attributes:
        epochs: passes over the data.
        batch_size: images per step (the last incomplete batch is dropped).
        optimizer: "lars", "sgd" or "adamw".
        base_lr: learning rate at batch 256; the step's peak is ``base_lr * batch_size / 256``.
        weight_decay: L2 penalty on weights (not biases / norms).
        weight_decay_end: if set, the weight decay follows a cosine from ``weight_decay`` to
            this over training (DINO: 0.04 to 0.4), one value per step.
        momentum: SGD / LARS momentum.
        warmup_epochs: linear warmup before the cosine decay.
        grad_clip: max global gradient norm, or None.
        seed: seeds the model-independent randomness (shuffling and augmentation).
        channels_last: weights and views in the channels-last memory format (``channels_last_3d``
            for a video method); the same computation, faster on CPUs and GPUs alike (1.2-1.4x
            per step on one CPU thread: ``bench/channels_last.py``). Not part of a checkpoint's
            identity: a run may resume in the other format.
        knn_k: neighbours of the kNN monitor.
        knn_temperature: temperature of the kNN monitor.
    """

    epochs: int = 10
    batch_size: int = 256
    optimizer: str = "sgd"
    base_lr: float = 0.06
    weight_decay: float = 5e-4
    weight_decay_end: float | None = None
    momentum: float = 0.9
    warmup_epochs: float = 0.0
    grad_clip: float | None = None
    seed: int = 0
    channels_last: bool = True
    knn_k: int = 200
    knn_temperature: float = 0.1


@dataclass(frozen=True)
class LabelledSplit:
    """Images (n, c, h, w) (or clips (n, t, c, h, w)) uint8 and labels (n,) for the kNN monitor."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    for start in range(0, n - batch_size + 1, batch_size):
        yield order[start : start + batch_size]


def knn_monitor(
    encoder: torch.nn.Module,
    split: LabelledSplit,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    k: int = 200,
    temperature: float = 0.1,
    device: str | torch.device = "cpu",
) -> float:
    """kNN top-1 of ``encoder`` features on ``split`` (images scaled to [0, 1], normalised).

    ``split`` may hold clips (n, t, c, h, w) for a video encoder (retrieval by video id).
    """

    def transform(x: torch.Tensor) -> torch.Tensor:
        return normalize_clips(x, mean, std) if x.ndim == 5 else normalize(x.float() / 255.0, mean, std)

    train = extract_features(encoder, split.train_images, device=device, transform=transform)
    test = extract_features(encoder, split.test_images, device=device, transform=transform)
    return knn_top1(train, split.train_labels, test, split.test_labels, k=k, temperature=temperature)


def pretrain(
    method: torch.nn.Module,
    images: torch.Tensor,
    recipe: ViewRecipe,
    settings: PretrainSettings,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    labels: torch.Tensor | None = None,
    eval_split: LabelledSplit | None = None,
    device: str | torch.device = "cpu",
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    checkpoint: str | Path | None = None,
) -> list[dict[str, float]]:
    """Pretrain ``method`` on ``images`` (n, c, h, w) uint8 for ``settings.epochs``.

    Args:
        method: a registered method (already built around its backbone).
        images: the unlabelled corpus.
        recipe: view recipe applied to each batch.
        settings: optimisation settings.
        mean: per-channel normalisation mean, on the [0, 1] scale.
        std: per-channel normalisation std.
        labels: (n,) labels, required by methods with ``needs_targets``. Methods with
            ``needs_indices`` get each image's index into ``images`` instead.
        eval_split: if given, kNN top-1 is measured after every epoch (``knn_top1``).
        device: where the model runs.
        on_epoch_end: called with each epoch's metrics (e.g. to print progress).
        checkpoint: a file for the state after each epoch (method, optimizer, random generators,
            history; written to a temporary file, then renamed). If it exists, training resumes
            from it (``on_epoch_end`` is called for the new epochs only); it must come from the
            same settings and dataset size. The file is left in place: delete it when done.

    Returns:
        One metrics dict per epoch (``epoch``, ``loss``, ``lr``, ``images_per_s``, ``seconds``
        (its wall time), ...), the resumed epochs included.

    Raises:
        ValueError: labels missing for a method that needs them, a batch larger than the data,
            or a ``checkpoint`` from other settings or another dataset size.
    """
    _check_inputs(method, images, labels, settings)
    fmt = memory_format(method.video, settings.channels_last)
    method.to(device, memory_format=fmt)
    generator = torch.Generator().manual_seed(settings.seed)
    schedules, peak = _schedules(settings, images.shape[0] // settings.batch_size)
    by_index = getattr(method, "needs_indices", False)
    optimizer = build_optimizer(method, settings.optimizer, peak, settings.weight_decay, settings.momentum)

    def prepare(index: torch.Tensor) -> Batch:
        views = make_views(images[index], recipe, generator)  # list of (b, c, s, s) in [0, 1]
        views = [normalize(v, mean, std).to(device, non_blocking=True, memory_format=fmt) for v in views]
        if by_index:
            return views, index.to(device)
        targets = labels[index].to(device) if labels is not None else None
        return views, targets

    resume = checkpoint is not None and Path(checkpoint).exists()
    history = _resume(Path(checkpoint), method, optimizer, generator, settings, len(images)) if resume else []
    step = int(history[-1]["last_step"]) if history else 0
    for epoch in range(len(history), settings.epochs):
        epoch_started = time.perf_counter()
        metrics = train_steps(
            method,
            optimizer,
            _batches(images.shape[0], settings.batch_size, generator),
            prepare,
            schedules,
            start_step=step,
            grad_clip=settings.grad_clip,
        )
        step = int(metrics["last_step"])
        metrics["epoch"] = float(epoch + 1)
        if eval_split is not None:
            metrics["knn_top1"] = knn_monitor(
                method.backbone, eval_split, mean, std, settings.knn_k, settings.knn_temperature, device
            )
        metrics["seconds"] = time.perf_counter() - epoch_started
        history.append(metrics)
        if checkpoint is not None:
            _save(Path(checkpoint), method, optimizer, generator, settings, len(images), history)
        if on_epoch_end is not None:
            on_epoch_end(metrics)
    return history


def _check_inputs(
    method, images: torch.Tensor, labels: torch.Tensor | None, settings: PretrainSettings
) -> None:
    if getattr(method, "needs_targets", False) and labels is None:
        raise ValueError(f"method {getattr(method, 'method_name', '?')!r} needs labels")
    if images.shape[0] < settings.batch_size:
        raise ValueError(f"batch_size {settings.batch_size} exceeds the dataset size {images.shape[0]}")


def _schedules(settings: PretrainSettings, steps_per_epoch: int) -> tuple[StepSchedules, float]:
    """The per-step learning rate (warmup, cosine) and weight decay, and the peak learning rate."""
    total = steps_per_epoch * settings.epochs
    peak = scale_lr(settings.base_lr, settings.batch_size)
    warmup = int(settings.warmup_epochs * steps_per_epoch)
    lr = warmup_cosine(peak, 0.0, total, warmup_steps=warmup)
    return StepSchedules(
        lr, weight_decay_schedule(settings.weight_decay, settings.weight_decay_end, total)
    ), peak


def _identity(settings: PretrainSettings, n: int) -> dict:
    """What a checkpoint must match to be resumed: the settings (but the memory format, which
    changes no result) and the dataset size."""
    identity = dataclasses.asdict(settings) | {"dataset_size": n}
    del identity["channels_last"]
    return identity


def _save(path: Path, method, optimizer, generator, settings, n: int, history: list) -> None:
    state = {
        "identity": _identity(settings, n),
        "method": method.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "history": history,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _resume(path: Path, method, optimizer, generator, settings, n: int) -> list[dict[str, float]]:
    """Load a checkpoint written by :func:`_save` into the live objects; returns its history."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    expected = _identity(settings, n)
    differ = sorted(
        k for k in expected.keys() | state["identity"].keys() if expected.get(k) != state["identity"].get(k)
    )
    if differ:
        found = {k: state["identity"].get(k) for k in differ}
        now = {k: expected.get(k) for k in differ}
        raise ValueError(
            f"checkpoint {path} was written with other settings ({found}, now {now}); "
            "delete it or restore those settings"
        )
    method.load_state_dict(state["method"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    return list(state["history"])
