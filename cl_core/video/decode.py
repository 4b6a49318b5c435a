"""Seek-based frame decoding with PyAV: decode only the frames a clip pair needs.

Frame ``i`` of a video is the frame whose timestamp is ``i / fps`` after the stream's first
frame, with ``fps`` the stream's average rate (exact for constant frame rate, the case of
every video this was tested on; a variable-rate video is read as if resampled to its average
rate: a needed index gets the first decoded frame at or after it). ``decode_frames`` seeks to
the keyframe at or before the first needed frame, decodes forward without converting the
frames it skips, converts each needed frame once (resize of the short side + centre crop, in
FFmpeg's swscale), and stops after the last one. Given the keyframes (``probe``), it seeks
again whenever a keyframe lies between two needed frames, so a pair of distant clips costs two
short GOP decodes, not the stretch between them.

Output layout: (n, C, s, s) uint8, channels-first like the rest of the pipeline.
"""

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


class VideoDecodeError(ValueError):
    """A video that cannot be (fully) decoded; the message is the reason."""


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` learnt about a video's first video stream.

    Attributes:
        frames: L, frames (video packets with a timestamp; 0 when undecodable).
        fps: average frame rate.
        duration: L / fps seconds.
        width: coded width in pixels.
        height: coded height in pixels.
        keyframes: sorted frame indices of the keyframes (random access points).
        decodable: opened, demuxed to the end and decoded its first frame.
        error: why not decodable ("" when fine).
    """

    frames: int
    fps: float
    duration: float
    width: int
    height: int
    keyframes: tuple[int, ...]
    decodable: bool
    error: str = ""


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _rate(stream: "av.video.stream.VideoStream") -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise VideoDecodeError("no frame rate in the stream")
    return Fraction(rate)


def _start(stream: "av.video.stream.VideoStream") -> int:
    """Timestamp of frame 0: the stream's start time (0 when the container has none)."""
    return stream.start_time if stream.start_time is not None else 0


def _frame_index(pts: int, start: int, time_base: Fraction, rate: Fraction) -> int:
    """Frame index of a timestamp: ``round((pts - start) * time_base * rate)``."""
    return round((pts - start) * time_base * rate)


def probe(path: str | Path, check_end: bool = True) -> VideoInfo:
    """Open a video, count its frames by demuxing every packet, find its keyframes, decode frame 0.

    Never raises for a bad file: ``decodable`` is False and ``error`` says why (unopenable, no
    video stream, fewer packets than the container declares, undecodable first or last frame).

    Args:
        path: the video file.
        check_end: also decode the last frame (costs decoding its GOP; once per file at indexing).

    Returns:
        The stream's ``VideoInfo``.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError("no video stream")
            stream = container.streams.video[0]
            rate, time_base = _rate(stream), stream.time_base
            packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.pts is not None]
            if not packets:
                raise VideoDecodeError("no video packets")
            if stream.frames and len(packets) < stream.frames:
                raise VideoDecodeError(f"truncated: {len(packets)} of {stream.frames} declared frames")
            start = _start(stream)
            keys = sorted({_frame_index(pts, start, time_base, rate) for pts, key in packets if key})
            container.seek(start, backward=True, any_frame=False, stream=stream)
            next(container.decode(stream))  # the first frame must decode
            width, height = stream.codec_context.width, stream.codec_context.height
            if check_end:  # the last frame too: decode its GOP (catches a cut last packet)
                _decode_segment(container, stream, np.array([len(packets) - 1]), {}, 2, 1)
    except (av.FFmpegError, OSError, VideoDecodeError, StopIteration, ValueError) as exc:
        reason = "no frame decoded" if isinstance(exc, StopIteration) else _reason(exc)
        return VideoInfo(0, 0.0, 0.0, 0, 0, (), False, reason)
    frames = len(packets)
    return VideoInfo(frames, float(rate), frames / float(rate), width, height, tuple(keys), True)


def _segments(wanted: np.ndarray, keyframes: Sequence[int] | None) -> list[np.ndarray]:
    """Split sorted unique ``wanted`` indices where a keyframe lies after one and at or before the next."""
    if keyframes is None or len(wanted) < 2:
        return [wanted]
    cuts = [k for k in range(1, len(wanted)) if _keyframe_before(keyframes, int(wanted[k])) > wanted[k - 1]]
    return np.split(wanted, cuts)


def _keyframe_before(keyframes: Sequence[int], index: int) -> int:
    """The last keyframe at or before ``index`` (0 when none)."""
    k = bisect.bisect_right(keyframes, index) - 1
    return keyframes[k] if k >= 0 else 0


def _square_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    scale = short_side / min(width, height)
    return max(short_side, round(width * scale)), max(short_side, round(height * scale))


def _convert(frame: "av.VideoFrame", short_side: int, channels: int) -> np.ndarray:
    """Resize the short side to ``short_side`` (swscale, bilinear), centre-crop: (C, s, s) uint8."""
    width, height = _square_size(frame.width, frame.height, short_side)
    fmt = "rgb24" if channels == 3 else "gray"
    pixels = frame.to_ndarray(width=width, height=height, format=fmt, interpolation="BILINEAR")  # (h, w[, 3])
    top, left = (height - short_side) // 2, (width - short_side) // 2
    pixels = pixels[top : top + short_side, left : left + short_side]
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _decode_segment(
    container, stream, segment: np.ndarray, out: dict, short_side: int, channels: int
) -> None:
    """Seek to the keyframe at or before ``segment[0]``, decode forward, convert ``segment``'s frames."""
    start, time_base, rate = _start(stream), stream.time_base, _rate(stream)
    target = start + round(Fraction(int(segment[0])) / rate / time_base)
    container.seek(target, backward=True, any_frame=False, stream=stream)
    k = 0
    for frame in container.decode(stream):
        if frame.pts is None:
            continue
        index = _frame_index(frame.pts, start, time_base, rate)
        if index < segment[k]:
            continue  # decoded for its successors only: never converted
        pixels = _convert(frame, short_side, channels)
        while k < len(segment) and segment[k] <= index:
            out[int(segment[k])] = pixels
            k += 1
        if k == len(segment):
            return
    raise VideoDecodeError(f"truncated: frame {int(segment[k])} not found (stream ended)")


def decode_frames(
    path: str | Path,
    indices: Sequence[int] | np.ndarray,
    short_side: int,
    channels: int = 3,
    keyframes: Sequence[int] | None = None,
) -> np.ndarray:
    """Decode the frames ``indices`` (any order, repeats allowed), resized and centre-cropped.

    Args:
        path: the video file.
        indices: (n,) frame indices, each in [0, frames).
        short_side: the short side is resized to this, then the centre square is cut out.
        channels: 3 (RGB) or 1 (luma).
        keyframes: sorted keyframe indices (``VideoInfo.keyframes``): lets the decoder seek
            between distant frames; None seeks once, to the first needed frame.

    Returns:
        (n, channels, short_side, short_side) uint8 frames, in the order of ``indices``.

    Raises:
        VideoDecodeError: the file cannot be opened or decoded, or ends before a needed frame.
    """
    order = np.asarray(indices, dtype=np.int64)
    if order.size and order.min() < 0:
        raise ValueError(f"frame indices must be >= 0, got {order.min()}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    out: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError("no video stream")
            stream = container.streams.video[0]
            for segment in _segments(np.unique(order), keyframes) if order.size else []:
                _decode_segment(container, stream, segment, out, short_side, channels)
    except (av.FFmpegError, OSError) as exc:
        raise VideoDecodeError(f"{path}: {_reason(exc)}") from None
    if not order.size:
        return np.zeros((0, channels, short_side, short_side), np.uint8)
    return np.stack([out[int(i)] for i in order])
