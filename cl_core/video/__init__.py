"""Video for CVRL: clip-pair sampling (pure NumPy) and seek-based frame decoding (PyAV).

first, second = sample_clip_pair(train_end, frames=8, stride=2, power=1.0, rng=rng)
frames = decode_frames(path, np.concatenate([first, second]), short_side=128)  # (2T, C, s, s)
"""

from cl_core.video.decode import VideoDecodeError, VideoInfo, decode_frames, probe
from cl_core.video.encode import reencode, write_video
from cl_core.video.sampling import (
    clip_indices,
    clip_span,
    eval_clip_starts,
    sample_clip_pair,
    start_distance_pmf,
)

__all__ = [
    "VideoDecodeError",
    "VideoInfo",
    "clip_indices",
    "clip_span",
    "decode_frames",
    "eval_clip_starts",
    "probe",
    "reencode",
    "sample_clip_pair",
    "start_distance_pmf",
    "write_video",
]
