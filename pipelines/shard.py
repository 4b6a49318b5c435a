"""Convert an image folder into shards: WebDataset-style tar files or Parquet files, plus an index.

    python -m pipelines.shard /data/imagenet/train /data/imagenet-shards --shard-size 1000
    python -m pipelines.shard /data/photos s3://bucket/photos-shards --format parquet

The files are written in a seeded random order (``--seed``), so every shard mixes the classes of
a class-sorted folder; labels come from the first sub-folder level as for ``image_folder``.
Tar shards hold ``<key>.<ext>`` (the encoded bytes as they were) and ``<key>.cls`` (the label
as ASCII); Parquet shards the columns ``image`` (bytes), ``label`` and ``key`` (the source path
below the root). ``shards.json`` beside them lists each shard and its sample count, the classes,
and the total: what ``data.source: tar_shards`` reads instead of opening every shard.
"""

import argparse
import io
import json
import posixpath
import tarfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cl_core.datasets.permutation import permute
from pipelines import storage
from pipelines.data.readers import IMAGE_EXTENSIONS
from pipelines.data.shards import INDEX


def list_images(root: str) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """Image files under ``root`` (local or URI), their labels (first sub-folder level, -1 when
    a file lies directly in ``root``) and the sorted class names."""
    files = [p for p, _ in storage.list_files(root) if p.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
        raise ValueError(f"no images ({' '.join(IMAGE_EXTENSIONS)}) under {root}")
    base = str(root).rstrip("/") + "/"
    rel = [p[len(base) :] if p.startswith(base) else posixpath.basename(p) for p in files]
    nested = all("/" in r for r in rel)
    classes = tuple(sorted({r.split("/", 1)[0] for r in rel})) if nested else ()
    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([index[r.split("/", 1)[0]] if nested else -1 for r in rel], dtype=np.int64)
    return files, labels, classes


def _tar_shard(root: str, files: list[str], labels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, label in zip(files, labels):
            rel = path[len(root.rstrip("/")) + 1 :]
            stem, ext = posixpath.splitext(rel)
            key = stem.replace("/", "__")  # one flat name per sample; "." only before the extension
            for name, data in (
                (key + ext.lower(), storage.read_bytes(path)),
                (key + ".cls", str(label).encode()),
            ):
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _parquet_shard(root: str, files: list[str], labels: np.ndarray) -> bytes:
    table = pa.table(
        {
            "image": pa.array([storage.read_bytes(p) for p in files], pa.binary()),
            "label": pa.array(labels, pa.int64()),
            "key": [p[len(root.rstrip("/")) + 1 :] for p in files],
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=256)
    return buf.getvalue()


def write_shards(src: str, dst: str, shard_size: int, fmt: str = "tar", seed: int = 0) -> dict:
    """Write ``src``'s images into shards of ``shard_size`` under ``dst``; returns the index."""
    if fmt not in ("tar", "parquet"):
        raise ValueError(f"--format: {fmt!r} is not allowed; allowed values: tar, parquet")
    if shard_size < 1:
        raise ValueError(f"--shard-size must be >= 1, got {shard_size}")
    files, labels, classes = list_images(src)
    order = permute(np.arange(len(files)), len(files), seed)  # class-mixed shards
    writer, ext = (_tar_shard, ".tar") if fmt == "tar" else (_parquet_shard, ".parquet")
    shards, started, total = [], time.monotonic(), len(files)
    print(f"{total} images, {len(classes)} classes -> {dst} ({fmt}, {shard_size} per shard)", flush=True)
    for first in range(0, total, shard_size):
        picked = order[first : first + shard_size]
        name = f"shard-{len(shards):06d}{ext}"
        storage.write_bytes(storage.join(dst, name), writer(src, [files[i] for i in picked], labels[picked]))
        shards.append({"name": name, "count": len(picked)})
        done, seconds = first + len(picked), time.monotonic() - started
        rate = done / max(seconds, 1e-9)
        eta = (total - done) / rate
        print(
            f"  {done}/{total} images, {len(shards)} shards, {rate:.0f} images/s, ETA {eta:.0f} s", flush=True
        )
    index = {"format": fmt, "classes": list(classes), "total": total, "shards": shards}
    storage.write_text(storage.join(dst, INDEX), json.dumps(index, indent=1))
    return index


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        "shard", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("src", help="image folder (local path or URI), classes as first-level sub-folders")
    parser.add_argument("dst", help="output folder (local path or URI)")
    parser.add_argument(
        "--shard-size", type=int, default=1000, help="images per shard (default: %(default)s)"
    )
    parser.add_argument("--format", choices=("tar", "parquet"), default="tar", help="(default: %(default)s)")
    parser.add_argument(
        "--seed", type=int, default=0, help="of the shuffled file order (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    return write_shards(args.src, args.dst, args.shard_size, args.format, args.seed)


if __name__ == "__main__":
    main()
