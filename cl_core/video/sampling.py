"""CVRL's temporally spaced clip pairs (Qian et al. 2021, arXiv 2008.03800, section 3.2).

Two clips of ``T`` frames, ``stride`` apart, are cut from one video. Their starts are drawn so
that close clips are more likely: the distance ``d`` between the starts follows
``p(d) ∝ (1 - d / max_offset) ** power`` on ``d = 0 .. max_offset`` (CVRL: power 1, a linearly
decreasing density; power 0: uniform), then the earlier start is uniform over the places where
both clips fit, and the two starts are shuffled. This follows the official
``sample_ssl_sequence`` (tensorflow/models ``official/projects/video_ssl/ops/
video_ssl_preprocess_ops.py``), with a discrete pmf instead of its binary search on a cdf.

Short videos (fewer frames than the span ``(T - 1) * stride + 1``): both starts are uniform
over all frames and the clip indices loop, ``index mod L``, as the official
``_sample_or_pad_sequence_indices`` (which tiles the sequence). Pure NumPy; no decoding here.
"""

import numpy as np


def clip_span(frames: int, stride: int) -> int:
    """Frames covered by one clip, first to last: ``(frames - 1) * stride + 1``."""
    if frames < 1 or stride < 1:
        raise ValueError(f"frames and stride must be >= 1, got {frames} and {stride}")
    return (frames - 1) * stride + 1


def clip_indices(start: int, frames: int, stride: int, num_frames: int) -> np.ndarray:
    """Frame indices of one clip, looping past the end (padding of short videos).

    Args:
        start: first frame of the clip, in [0, num_frames).
        frames: T, frames per clip.
        stride: frames between consecutive clip frames.
        num_frames: L, frames of the range the clip is cut from (indices stay < L).

    Returns:
        (T,) int64 indices ``(start + k * stride) mod L``.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    return (start + stride * np.arange(frames, dtype=np.int64)) % num_frames


def start_distance_pmf(max_offset: int, power: float) -> np.ndarray:
    """Probabilities of the distance between the two clip starts.

    Args:
        max_offset: largest distance M (>= 0).
        power: exponent of ``(1 - d / M)``; 0 gives the uniform distribution.

    Returns:
        (M + 1,) float64 pmf over d = 0 .. M, ``∝ (1 - d / M) ** power`` (for M = 0: [1.0]).
    """
    if max_offset < 0 or power < 0:
        raise ValueError(f"max_offset and power must be >= 0, got {max_offset} and {power}")
    if max_offset == 0:
        return np.ones(1)
    weights = (1.0 - np.arange(max_offset + 1) / max_offset) ** power  # 0 ** 0 == 1: uniform
    return weights / weights.sum()


def sample_clip_pair(
    num_frames: int, frames: int, stride: int, power: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices of one CVRL clip pair from frames ``[0, num_frames)``.

    Pass the end of the training range as ``num_frames`` to keep a held-out tail out: every
    index is < ``num_frames``.

    Args:
        num_frames: L, frames to sample from.
        frames: T, frames per clip.
        stride: frames between consecutive clip frames.
        power: exponent of the start distance pmf (CVRL: 1).
        rng: the source of every draw.

    Returns:
        Two (T,) int64 index arrays (clip 0, clip 1).
    """
    span = clip_span(frames, stride)
    if num_frames < span:  # official: independent uniform starts, looping indices
        starts = rng.integers(0, num_frames, size=2)
    else:
        max_offset = num_frames - span
        d = int(rng.choice(max_offset + 1, p=start_distance_pmf(max_offset, power)))
        first = int(rng.integers(0, max_offset - d + 1))
        starts = rng.permutation([first, first + d])
    return tuple(clip_indices(int(s), frames, stride, num_frames) for s in starts)


def eval_clip_starts(first: int, end: int, frames: int, stride: int, count: int) -> np.ndarray:
    """Evenly spaced, deterministic clip starts for the retrieval monitor in frames ``[first, end)``.

    The ``count`` starts split ``[first, end - span]`` evenly (bin centres). A range shorter
    than a span puts every clip as far right as possible, ``max(0, end - span)`` (so it reaches
    back before ``first``; indices of a video shorter than the span loop, see ``clip_indices``).

    Args:
        first: first frame of the range.
        end: one past its last frame.
        frames: T.
        stride: frame stride.
        count: clips wanted.

    Returns:
        (count,) int64 starts.
    """
    if count < 1 or end <= first:
        raise ValueError(f"need count >= 1 and end > first, got {count}, [{first}, {end})")
    last = end - clip_span(frames, stride)
    if last < first:
        return np.full(count, max(0, last), dtype=np.int64)
    return first + np.floor((np.arange(count) + 0.5) * (last - first + 1) / count).astype(np.int64)
