"""WebDataset-style tar shards: ``<key>.<jpg|jpeg|png|webp>`` plus ``<key>.cls`` per sample, and the
``shards.json`` index that ``python -m pipelines.shard`` writes beside them."""

import io
import json
import posixpath
import tarfile

from pipelines import storage
from pipelines.data.readers import IMAGE_EXTENSIONS

INDEX = "shards.json"


def load_index(root: str) -> tuple[list[str], list[int], tuple[str, ...]]:
    """(shard paths or URIs, sample counts, classes) of the shards under ``root``.

    Raises:
        FileNotFoundError: no ``shards.json`` under ``root`` (how to make one is in the message).
        ValueError: an index that is not for tar shards.
    """
    where = storage.join(root, INDEX)
    if not storage.exists(where):
        raise FileNotFoundError(
            f"{where} not found: data.source tar_shards reads the index that "
            f"`python -m pipelines.shard SRC {root}` writes beside the shards"
        )
    index = json.loads(storage.read_text(where))
    if index.get("format") != "tar":
        raise ValueError(f"{where}: format {index.get('format')!r}; data.source tar_shards reads 'tar'")
    shards = index["shards"]
    return (
        [storage.join(root, s["name"]) for s in shards],
        [int(s["count"]) for s in shards],
        tuple(index["classes"]),
    )


def read_samples(data: bytes) -> list[tuple[str, bytes, int]]:
    """(key, encoded image, label) of every sample of a tar shard, in the shard's order; a sample
    without a ``.cls`` member has label -1, a member that is not an image or label is ignored."""
    images, labels, order = {}, {}, []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, ext = posixpath.splitext(member.name)
            payload = tar.extractfile(member).read()
            if ext.lower() in IMAGE_EXTENSIONS:
                images[key] = payload
                order.append(key)
            elif ext == ".cls":
                labels[key] = int(payload.decode().strip() or -1)
    return [(key, images[key], labels.get(key, -1)) for key in order]
