"""CVRL clip-pair sampling: spans, the start-distance pmf, padding of short videos, the train range."""

import numpy as np
import pytest
from scipy import stats

from cl_core.video.sampling import (
    clip_indices,
    clip_span,
    eval_clip_starts,
    sample_clip_pair,
    start_distance_pmf,
)


def test_clip_span__is_frames_minus_one_times_stride_plus_one():
    assert clip_span(8, 2) == 15
    assert clip_span(1, 5) == 1
    assert clip_span(16, 1) == 16
    with pytest.raises(ValueError):
        clip_span(0, 2)


def test_start_distance_pmf__linear_decrease_uniform_and_degenerate():
    pmf = start_distance_pmf(4, 1.0)
    np.testing.assert_allclose(pmf, np.array([4, 3, 2, 1, 0]) / 10)
    np.testing.assert_allclose(start_distance_pmf(4, 0.0), np.full(5, 0.2))
    np.testing.assert_allclose(start_distance_pmf(4, 2.0), np.array([16, 9, 4, 1, 0]) / 30)
    np.testing.assert_allclose(start_distance_pmf(0, 1.0), [1.0])


def _distances(num_frames: int, power: float, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array(
        [
            abs(int(a[0]) - int(b[0]))
            for a, b in (sample_clip_pair(num_frames, 4, 2, power, rng) for _ in range(n))
        ]
    )


@pytest.mark.parametrize("power", [1.0, 0.0])
def test_sample_clip_pair__start_distances_follow_the_pmf(power):
    num_frames, n = 27, 6000  # span 7, max_offset 20
    distances = _distances(num_frames, power, n)
    pmf = start_distance_pmf(num_frames - 7, power)
    observed = np.bincount(distances, minlength=len(pmf))
    keep = pmf > 0
    assert observed[~keep].sum() == 0
    _, p_value = stats.chisquare(observed[keep], n * pmf[keep])
    assert p_value > 1e-3


def test_sample_clip_pair__linear_pmf_is_not_uniform():
    distances = _distances(27, 1.0, 6000)
    observed = np.bincount(distances, minlength=21)
    _, p_value = stats.chisquare(observed, np.full(21, 6000 / 21))
    assert p_value < 1e-6  # the test above can tell the two distributions apart


def test_sample_clip_pair__clips_are_strided_inside_the_range_and_order_shuffled():
    rng, firsts_later = np.random.default_rng(1), 0
    for _ in range(500):
        a, b = sample_clip_pair(40, 8, 2, 1.0, rng)
        for clip in (a, b):
            assert clip.dtype == np.int64 and clip.shape == (8,)
            assert (np.diff(clip) == 2).all() and clip.min() >= 0 and clip.max() < 40
        firsts_later += a[0] > b[0]
    assert 150 < firsts_later < 350  # shuffled, not always earlier-first


def test_sample_clip_pair__respects_a_train_range():
    rng, train_end = np.random.default_rng(2), 30
    seen = np.concatenate([np.concatenate(sample_clip_pair(train_end, 8, 2, 1.0, rng)) for _ in range(2000)])
    assert seen.max() == train_end - 1 and seen.min() == 0


def test_sample_clip_pair__short_video_loops_frames():
    rng = np.random.default_rng(3)
    for _ in range(100):
        a, b = sample_clip_pair(5, 8, 2, 1.0, rng)  # span 15 > 5 frames
        for clip in (a, b):
            assert clip.max() < 5
            np.testing.assert_array_equal(clip, (clip[0] + 2 * np.arange(8)) % 5)
    np.testing.assert_array_equal(clip_indices(3, 4, 2, 6), [3, 5, 1, 3])


def test_eval_clip_starts__evenly_spaced_and_deterministic():
    starts = eval_clip_starts(0, 40, 4, 2, 4)  # span 7, starts in [0, 33]
    np.testing.assert_array_equal(starts, [4, 12, 21, 29])
    assert (eval_clip_starts(80, 100, 4, 2, 3) + 7 <= 100).all() and eval_clip_starts(
        80, 100, 4, 2, 3
    ).min() >= 80


def test_eval_clip_starts__short_range_sits_as_far_right_as_possible():
    np.testing.assert_array_equal(eval_clip_starts(95, 100, 4, 2, 2), [93, 93])  # span 7 > 5 frames
    np.testing.assert_array_equal(eval_clip_starts(0, 5, 4, 2, 2), [0, 0])
