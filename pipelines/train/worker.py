"""The function every Ray Train worker runs: build the method, resume, train epoch by epoch,
evaluate and checkpoint on rank 0. Ray touch points are marked ``# Ray:``."""

import contextlib
import inspect
import io
import itertools
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch

from cl_core import build_backbone, build_method, memory_format
from cl_core.datasets.permutation import epoch_key
from cl_core.methods import method_class
from cl_core.optim import build_optimizer, scale_lr, warmup_cosine, weight_decay_schedule
from cl_core.training import NonFiniteLossError, StepSchedules, knn_monitor, train_steps, unwrap
from cl_core.training.pretrain import LabelledSplit
from cl_core.transforms import normalize_clips
from cl_core.transforms.stages import device_views
from pipelines.config import ExperimentConfig, config_from_dict, normalization, recipe_from_config
from pipelines.data.epochs import set_epoch
from pipelines.tracking.metric_logger import MetricLogger
from pipelines.tracking.mlflow_run import bound_requests
from pipelines.tracking.progress import ProgressLine
from pipelines.tracking.system_metrics import RunSystemMetrics
from pipelines.train.checkpoints import (
    STATE_FILE,
    atomic_save,
    export_encoder,
    load_newest_valid,
    verified_load,
)
from pipelines.train.cluster import quiet_ray

LOG = logging.getLogger(__name__)
PRECISION = {"fp32": None, "bf16": torch.bfloat16}
SEND_WAIT_S = 10.0  # at an epoch end: how long the epoch's points may take to reach MLflow before the report


def build_model(config: ExperimentConfig, world_size: int) -> torch.nn.Module:
    """The method around its backbone; ``gather=True`` across workers when the method has it."""
    torch.manual_seed(config.train.seed)  # identical init on every rank
    backbone = build_backbone(config.backbone.name, config.data.channels, config.backbone.small_images)
    params = dict(config.method.params)
    if "gather" in inspect.signature(method_class(config.method.name).__init__).parameters:
        params.setdefault("gather", world_size > 1)
    method = build_method(config.method.name, backbone, **params)
    if use_sync_batchnorm(config, world_size):
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
    return method


def use_sync_batchnorm(config: ExperimentConfig, world_size: int) -> bool:
    """``train.sync_batchnorm``: true/false as given (only with several workers); null (auto): on
    with several GPU workers for methods with ``sync_batchnorm_by_default`` (PyTorch's SyncBN
    runs on GPUs only, so never on CPU workers)."""
    if world_size <= 1:
        return False
    if config.train.sync_batchnorm is None:
        return config.scaling.use_gpu and method_class(config.method.name).sync_batchnorm_by_default
    return config.train.sync_batchnorm


def batch_preparer(
    config: ExperimentConfig, rank: int
) -> Callable[[dict], tuple[list[torch.Tensor], torch.Tensor]]:
    """Turns a streamed batch (on the device) into (float normalised views, labels), or (views,
    row indices) for methods with ``needs_indices`` (the ``index`` column of ``cached_calls``).

    Images: ``device_views`` (the colour stage here when ``augment.colour_on_device``). Clips
    (``clip_0``, ``clip_1`` uint8 (b, t, c, h, w), ``label`` = video id): the video backbones'
    (b, c, t, h, w) layout.
    """
    mean, std = normalization(config)
    if config.data.source == "video_folder":
        fmt = memory_format(video=True, channels_last=config.train.channels_last)
        return lambda batch: (
            [normalize_clips(batch[f"clip_{i}"], mean, std).contiguous(memory_format=fmt) for i in (0, 1)],
            batch["label"],
        )
    recipe = recipe_from_config(config)
    generator = torch.Generator().manual_seed(config.train.seed * 1000 + rank)
    fmt = memory_format(video=False, channels_last=config.train.channels_last)
    by_index = method_class(config.method.name).needs_indices  # InstDisc: targets are row indices

    def prepare(batch: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        views, labels = device_views(batch, recipe, config.augment.colour_on_device, mean, std, generator)
        return [v.contiguous(memory_format=fmt) for v in views], batch["index"] if by_index else labels

    return prepare


def _eval_split(config: ExperimentConfig) -> LabelledSplit | None:
    """Rank 0 pulls the small labelled eval datasets into tensors once."""
    shards = {}
    for name in ("eval_train", "eval_test"):
        shard = ray.train.get_dataset_shard(name)  # Ray: un-split dataset, whole on each worker
        if shard is None:
            return None
        images, labels = [], []
        for batch in shard.iter_torch_batches(batch_size=1024):
            images.append(batch["clip"] if "clip" in batch else batch["image"])  # clips: (n, t, c, h, w)
            labels.append(batch["label"])
        shards[name] = (torch.cat(images), torch.cat(labels))
    return LabelledSplit(*shards["eval_train"], *shards["eval_test"])


def _save_checkpoint(model, optimizer, step: int, epoch: int, metrics: dict, directory: Path) -> None:
    state = {
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "epoch": epoch,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "torch_rng": torch.get_rng_state(),
    }
    atomic_save(state, directory / STATE_FILE)


def _restore(model, optimizer) -> tuple[int, int, list[str]]:
    """Resume from the latest reported checkpoint, or from an older one of the run when the
    latest does not verify (truncated or modified); returns (step, epochs done, one "path:
    reason" line per corrupt checkpoint skipped)."""
    checkpoint = ray.train.get_checkpoint()  # Ray: latest checkpoint of this run, if any
    skipped: list[str] = []
    if checkpoint is None:
        return 0, 0, skipped
    latest = Path(checkpoint.path)
    if latest.is_dir():  # local or shared file system: the run's other checkpoints are siblings
        older = sorted(
            (p for p in latest.parent.glob("checkpoint_*") if p.is_dir() and p.name < latest.name),
            reverse=True,
        )
        state, used, skipped = load_newest_valid([latest, *older])
        for reason in skipped:
            LOG.warning("skipped a corrupt checkpoint: %s", reason)
        if used != latest:
            LOG.warning("resuming from the older checkpoint %s (epoch %s)", used, state["epoch"])
    else:
        with checkpoint.as_directory() as directory:
            state = verified_load(Path(directory) / STATE_FILE)
    unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), int(state["epoch"]), skipped


def _snapshot(model, optimizer, step: int, epoch: int) -> bytes:
    """What a checkpoint holds, serialised in memory (off the device), for
    ``train.on_non_finite: rollback``; every rank keeps its own."""
    buffer = io.BytesIO()
    torch.save(
        {
            "model": unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "epoch": epoch,
            "torch_rng": torch.get_rng_state(),
        },
        buffer,
    )
    return buffer.getvalue()


def _roll_back(model, optimizer, snapshot: bytes, device: torch.device) -> tuple[int, int]:
    """Restore a :func:`_snapshot` (weights, optimizer, method state such as the MoCo queue or
    EMA target, BN statistics, RNG); returns its (step, epoch)."""
    state = torch.load(io.BytesIO(snapshot), map_location=device, weights_only=True)
    unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"].cpu())
    return int(state["step"]), int(state["epoch"])


class NanInjector:
    """Fault drill (``train.inject_nan_at_step``): the views of that global step become NaN, so
    its loss is non-finite; fires once per worker process."""

    def __init__(self, step: int | None) -> None:
        self.step, self.fired = step, step is None

    def wrap(self, prepare: Callable, start_step: int) -> Callable:
        if self.fired:
            return prepare
        steps = itertools.count(start_step)  # train_steps prepares each step's batch once, in order

        def prepare_or_poison(batch):
            views, targets = prepare(batch)
            if next(steps) == self.step and not self.fired:
                self.fired = True
                LOG.warning("train.inject_nan_at_step: NaN views at step %d", self.step)
                views = [torch.full_like(v, float("nan")) for v in views]
            return views, targets

        return prepare_or_poison


def _schedules(config: ExperimentConfig, steps_per_epoch: int) -> tuple[StepSchedules, float]:
    t = config.train
    peak = scale_lr(t.base_lr, t.global_batch_size, rule=t.lr_scaling)
    total = steps_per_epoch * t.epochs
    lr = warmup_cosine(peak, 0.0, total, warmup_steps=int(t.warmup_epochs * steps_per_epoch))
    weight_decay = weight_decay_schedule(t.weight_decay, t.weight_decay_end, total)  # None: fixed
    return StepSchedules(lr=lr, weight_decay=weight_decay), peak


def _epoch_batches(shard, config: ExperimentConfig, per_worker: int, device, rank: int, epoch: int, clock):
    """This worker's batches of ``epoch``: the streamed reader's clock set first (its files come in
    the order of (seed, epoch)), rows shuffled in a local buffer of ``data.shuffle_buffer`` rows
    (None: one batch; 0: off) seeded by (seed, rank, epoch)."""
    if clock is not None:
        set_epoch(clock, epoch)
    buffer = per_worker if config.data.shuffle_buffer is None else config.data.shuffle_buffer
    seed = epoch_key(config.train.seed * 1000 + rank, epoch) % 2**31
    return shard.iter_torch_batches(
        batch_size=per_worker,
        drop_last=True,
        device=device,
        local_shuffle_buffer_size=buffer or None,  # mixes rows of neighbouring read tasks
        local_shuffle_seed=seed if buffer else None,
    )


@contextlib.contextmanager
def _rank0_tracking(
    config: ExperimentConfig,
    loop_config: dict[str, Any],
    rank: int,
    steps_per_epoch: int,
    step: int,
    first_epoch: int,
    skipped: list[str],
) -> Iterator[tuple[MetricLogger | None, ProgressLine | None]]:
    """Rank 0's metrics through a sender thread (replaying what a killed predecessor left
    pending), MLflow's system metrics beside them, and the progress line; Nones on other ranks.
    On the way out, a failed step too, the logger is closed: what MLflow has not taken stays in
    the pending file (replayed by the driver), no queued point is lost."""
    if rank != 0:
        yield None, None
        return
    uri, run_id, spool = loop_config["tracking_uri"], loop_config["run_id"], loop_config.get("spool")
    logger = MetricLogger(uri, run_id, spool).start()
    machine = RunSystemMetrics(uri, run_id)
    machine.start()
    try:
        if skipped:  # the run says it went back (the warning is in the worker log)
            logger.tag("checkpoint.skipped_corrupt", "; ".join(skipped))
            logger.tag("checkpoint.resumed_from_epoch", str(first_epoch))
        yield logger, ProgressLine(config.train.epochs, steps_per_epoch, step, config.train.global_batch_size)
    finally:
        logger.close()
        machine.finish()


def _quiet_worker() -> None:
    """Ray's worker noise off; an unreachable MLflow server warns instead of stalling a step."""
    quiet_ray()
    bound_requests()


def _knn(config: ExperimentConfig, model, eval_split: LabelledSplit, device) -> float:
    """kNN top-1 of the backbone on the labelled evaluation split (rank 0's progress metric)."""
    mean, std = normalization(config)
    e = config.eval
    return knn_monitor(unwrap(model).backbone, eval_split, mean, std, e.knn_k, e.knn_temperature, device)


def _prepared_model(config: ExperimentConfig, world: int) -> torch.nn.Module:
    """The method in the configured memory format, on this worker's device, wrapped in DDP."""
    method = build_model(config, world)
    method = method.to(memory_format=memory_format(method.video, config.train.channels_last))
    return ray.train.torch.prepare_model(  # Ray: move to device + DDP
        method, parallel_strategy_kwargs={"find_unused_parameters": method.may_skip_parameters}
    )


def _step_logger(logger: MetricLogger | None, progress: ProgressLine | None, step: int) -> Callable:
    """``train_steps``'s per-step callback: every 10th step's metrics to MLflow (never one logged
    before a rollback again) and the progress line within long epochs."""
    logged_to = [step]

    def on_step(global_step: int, metrics: dict[str, float]) -> None:
        if logger is not None and global_step % 10 == 0 and global_step > logged_to[0]:
            logger.log({f"train/step_{k}": v for k, v in metrics.items()}, global_step)
            logged_to[0] = global_step
        if progress is not None:
            progress.step_done(global_step, metrics)

    return on_step


class _Rollback:
    """``train.on_non_finite: rollback``: every rank keeps its last checkpointed state in memory
    and goes back to it on a non-finite loss, with the learning rate scaled down, at most
    ``train.max_rollbacks`` times."""

    def __init__(self, config: ExperimentConfig, model, optimizer, step: int, epoch: int) -> None:
        self.enabled = config.train.on_non_finite == "rollback"
        self.limit, self.factor, self.count = config.train.max_rollbacks, config.train.rollback_lr_factor, 0
        self.snapshot = _snapshot(model, optimizer, step, epoch) if self.enabled else b""

    def keep(self, model, optimizer, step: int, epoch: int) -> None:
        if self.enabled:
            self.snapshot = _snapshot(model, optimizer, step, epoch)

    def recover(
        self, error: NonFiniteLossError, model, optimizer, device, schedules: StepSchedules, logger
    ) -> tuple[int, int, StepSchedules] | None:
        """(step, epoch, schedules) to go on from; None when the error is to be raised."""
        if not self.enabled or self.count >= self.limit:
            return None
        self.count += 1
        step, epoch = _roll_back(model, optimizer, self.snapshot, device)
        note = (
            f"non-finite loss at step {error.step}: rolled back to step {step} (epoch {epoch}), "
            f"learning rate x{self.factor**self.count:g} (rollback {self.count} of {self.limit})"
        )
        LOG.warning("%s; last finite metrics: %s", note, error.last_metrics)
        if logger is not None:
            logger.tag(f"non_finite.rollback_{self.count}", note)
            logger.log({"train/rollbacks": float(self.count)}, error.step)
        return step, epoch, StepSchedules(schedules.lr * self.factor, schedules.weight_decay)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point. ``loop_config``: {"config": plain dict, "run_id", "tracking_uri",
    "num_train_rows", "stop_after_epochs", "clock"}."""
    config = config_from_dict(loop_config["config"])
    _quiet_worker()
    context = ray.train.get_context()  # Ray: rank and world size
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()  # Ray: this worker's device
    model = _prepared_model(config, world)
    per_worker = config.train.global_batch_size // world
    steps_per_epoch = loop_config["num_train_rows"] // config.train.global_batch_size
    schedules, peak = _schedules(config, steps_per_epoch)
    t = config.train
    optimizer = build_optimizer(unwrap(model), t.optimizer, peak, t.weight_decay, t.momentum)
    step, epoch, skipped = _restore(model, optimizer)
    prepare, eval_split = batch_preparer(config, rank), _eval_split(config) if rank == 0 else None
    shard = ray.train.get_dataset_shard("train")  # Ray: this worker's part of the stream
    stop = loop_config.get("stop_after_epochs")
    end_epoch = t.epochs if stop is None else min(t.epochs, epoch + stop)
    rollback, injector = _Rollback(config, model, optimizer, step, epoch), NanInjector(t.inject_nan_at_step)
    tracking = _rank0_tracking(config, loop_config, rank, steps_per_epoch, step, epoch, skipped)
    with tracking as (logger, progress):  # closed on the way out, a failed step too
        on_step = _step_logger(logger, progress, step)
        while epoch < end_epoch:
            batches = _epoch_batches(shard, config, per_worker, device, rank, epoch, loop_config.get("clock"))
            started = time.perf_counter()
            try:  # a NaN/inf loss raises NonFiniteLossError naming the step, method and last metrics
                metrics = train_steps(
                    model,
                    optimizer,
                    itertools.islice(batches, steps_per_epoch),
                    injector.wrap(prepare, step),
                    schedules,
                    step,
                    PRECISION[t.precision],
                    t.grad_clip,
                    on_step,
                )
            except NonFiniteLossError as error:
                restored = rollback.recover(error, model, optimizer, device, schedules, logger)
                if restored is None:
                    raise
                step, epoch, schedules = restored
                continue
            step = int(metrics["last_step"])
            report = _epoch_metrics(metrics, epoch, step, time.perf_counter() - started, world)
            last = epoch + 1 == end_epoch
            if eval_split is not None and (last or _due(config.eval.every_epochs, epoch)):
                report["eval/knn_top1"] = _knn(config, model, eval_split, device)
            checkpoint = last or _due(config.checkpoint.every_epochs, epoch)
            _log_and_report(logger, model, optimizer, step, epoch + 1, report, rank, checkpoint)
            if checkpoint:
                rollback.keep(model, optimizer, step, epoch + 1)
            if progress is not None:
                progress.epoch_done(epoch + 1, step, report)
            epoch += 1


def _due(every: int, epoch: int) -> bool:
    return every > 0 and (epoch + 1) % every == 0


def _epoch_metrics(metrics: dict[str, float], epoch: int, step: int, seconds: float, world: int) -> dict:
    skip = {"steps", "last_step", "images_per_s", "wait_fraction", "embedding_std", "effective_rank"}
    report = {f"train/{k}": v for k, v in metrics.items() if k not in skip}
    report.update(
        {
            "train/epoch": float(epoch + 1),
            "train/step": float(step),
            "train/epoch_seconds": seconds,
            "data/images_per_s": metrics["images_per_s"] * world,
            "data/wait_fraction": metrics["wait_fraction"],
        }
    )
    for key in ("embedding_std", "effective_rank"):
        if key in metrics:
            report[f"monitor/{key}"] = metrics[key]
    return report


def _log_and_report(
    logger: MetricLogger | None,
    model,
    optimizer,
    step: int,
    epoch: int,
    metrics: dict,
    rank: int,
    checkpoint: bool,
) -> None:
    """Rank 0 puts the epoch's points on local disk and gives the sender up to ``SEND_WAIT_S`` to
    upload them (none while MLflow does not answer); then every rank reports. In this order
    because a worker killed once its checkpoint is reported resumes after this epoch and never
    computes these points again (the pending file has them), and because Tune may stop a trial on
    this report (ASHA) and kill it before a later upload."""
    if logger is not None:
        logger.log(metrics, step)
        logger.persist()
        logger.wait_sent(SEND_WAIT_S)
    _report(model, optimizer, step, epoch, metrics, rank, checkpoint)


def _report(model, optimizer, step: int, epoch: int, metrics: dict, rank: int, checkpoint: bool) -> None:
    """Every rank reports; rank 0 attaches the checkpoint (state + exported encoder)."""
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = None
        if rank == 0 and checkpoint:
            _save_checkpoint(model, optimizer, step, epoch, metrics, Path(tmp))
            export_encoder(unwrap(model).backbone, tmp)
            ckpt = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=ckpt)  # Ray: metrics (+ checkpoint) to the controller
