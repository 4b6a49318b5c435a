"""Paths that may be local or on object storage (``s3://``, ``gs://``, any pyarrow filesystem URI).

A local path stays a path (``~`` expanded); a URI goes through ``pyarrow.fs``, whose S3 client
reads credentials, region and ``AWS_ENDPOINT_URL`` (an S3-compatible server) from the usual
environment variables.
"""

import logging
import posixpath
import time
from functools import lru_cache
from pathlib import Path

import pyarrow.fs as pafs

LOG = logging.getLogger(__name__)


def is_uri(path: str | Path) -> bool:
    """True for ``scheme://...`` other than ``file://``."""
    text = str(path)
    return "://" in text and not text.startswith("file://")


@lru_cache(maxsize=16)
def _filesystem(scheme_and_host: str) -> pafs.FileSystem:
    return pafs.FileSystem.from_uri(scheme_and_host)[0]


def resolve(path: str | Path) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path within it) of a local path or a URI."""
    text = str(path)
    if not is_uri(text):
        return pafs.LocalFileSystem(), str(Path(text.removeprefix("file://")).expanduser().resolve())
    scheme, rest = text.split("://", 1)
    bucket = rest.split("/", 1)[0]
    return _filesystem(f"{scheme}://{bucket}"), rest.rstrip("/")


def join(base: str | Path, *parts: str) -> str:
    """``base/part/...`` for a URI, a plain path join otherwise."""
    if is_uri(base):
        return posixpath.join(str(base).rstrip("/"), *parts)
    return str(Path(base).joinpath(*parts))


def read_bytes(path: str | Path) -> bytes:
    fs, where = resolve(path)
    with fs.open_input_stream(where) as stream:
        return stream.readall()


def read_text(path: str | Path) -> str:
    return read_bytes(path).decode()


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file whole: locally via a temporary name and a rename (a reader never sees half of
    it); on object storage one PUT, which is atomic there."""
    fs, where = resolve(path)
    if isinstance(fs, pafs.LocalFileSystem):
        target = Path(where)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
        return
    with fs.open_output_stream(where) as stream:
        stream.write(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def exists(path: str | Path) -> bool:
    fs, where = resolve(path)
    return fs.get_file_info(where).type != pafs.FileType.NotFound


def list_files(root: str | Path, recursive: bool = True) -> list[tuple[str, int]]:
    """(path or URI, size) of every file under ``root``, sorted; hidden entries skipped.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """
    fs, where = resolve(root)
    if fs.get_file_info(where).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"{root} is not a folder")
    infos = fs.get_file_info(pafs.FileSelector(where, recursive=recursive))
    prefix = str(root).split("://", 1)[0] + "://" if is_uri(root) else ""
    out = []
    for info in infos:
        rel = posixpath.relpath(info.path, where)
        if info.type == pafs.FileType.File and not any(part.startswith(".") for part in rel.split("/")):
            out.append((prefix + info.path, info.size))
    return sorted(out)


def list_tree(root: str | Path, workers: int = 16, every_s: float = 10.0) -> list[tuple[str, int]]:
    """``list_files(root)`` with the first-level sub-folders listed in parallel (threads: object
    storage answers a listing 1,000 keys per request, so one folder of 10M files is 10,000 round
    trips in a row; a folder per class lists them side by side). Logs progress (folders, files,
    rate) every ``every_s`` seconds."""
    from concurrent.futures import ThreadPoolExecutor

    fs, where = resolve(root)
    if fs.get_file_info(where).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"{root} is not a folder")
    top = fs.get_file_info(pafs.FileSelector(where, recursive=False))
    prefix = str(root).split("://", 1)[0] + "://" if is_uri(root) else ""
    hidden = [info for info in top if posixpath.basename(info.path).startswith(".")]
    files = [(prefix + i.path, i.size) for i in top if i.type == pafs.FileType.File and i not in hidden]
    folders = [prefix + i.path for i in top if i.type == pafs.FileType.Directory and i not in hidden]
    started = last = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(folders)))) as pool:
        for done, listed in enumerate(pool.map(list_files, folders), 1):
            files += listed
            if time.monotonic() - last >= every_s:
                last, rate = time.monotonic(), len(files) / (time.monotonic() - started)
                LOG.warning(
                    "listing %s: %d/%d folders, %d files, %.0f files/s",
                    root,
                    done,
                    len(folders),
                    len(files),
                    rate,
                )
    LOG.warning("listed %s: %d files in %.1f s", root, len(files), time.monotonic() - started)
    return sorted(files)
