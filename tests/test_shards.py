"""The sharding tool and the tar shard format, Ray-free: round trips, class-mixed shards, the index,
and local storage paths."""

import io
import json
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines import storage
from pipelines.data.shards import load_index, read_samples
from pipelines.shard import main as shard_main
from pipelines.shard import write_shards


@pytest.fixture
def class_folder(tmp_path):
    """4 classes x 10 PNGs, each image's pixels encode (class, index)."""
    root = tmp_path / "src"
    for c in range(4):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(10):
            Image.fromarray(np.full((8, 8), c * 50 + i, np.uint8)).save(root / f"c{c}" / f"{i}.png")
    return root


def test_write_shards__tar_round_trip_keeps_every_image_and_label_and_mixes_classes(
    class_folder, tmp_path, capsys
):
    index = write_shards(str(class_folder), str(tmp_path / "out"), shard_size=15, fmt="tar", seed=3)
    assert [s["count"] for s in index["shards"]] == [15, 15, 10] and index["classes"] == [
        "c0",
        "c1",
        "c2",
        "c3",
    ]
    uris, counts, classes = load_index(str(tmp_path / "out"))
    assert counts == [15, 15, 10] and classes == ("c0", "c1", "c2", "c3")
    seen = {}
    for uri in uris:
        samples = read_samples(storage.read_bytes(uri))
        assert len({label for _, _, label in samples}) >= 2  # a class-sorted folder gives mixed shards
        for key, data, label in samples:
            pixel = int(np.asarray(Image.open(io.BytesIO(data)))[0, 0])
            seen[key] = (label, pixel)
    assert len(seen) == 40
    assert all(pixel // 50 == label for label, pixel in seen.values())  # bytes and label of one file
    assert "40/40 images, 3 shards" in capsys.readouterr().out  # progress lines


def test_write_shards__parquet_shards_and_the_cli(class_folder, tmp_path):
    index = shard_main([str(class_folder), str(tmp_path / "pq"), "--shard-size", "25", "--format", "parquet"])
    assert [s["count"] for s in index["shards"]] == [25, 15]
    table = pq.read_table(tmp_path / "pq" / "shard-000000.parquet")
    assert table.column_names == ["image", "label", "key"] and table.num_rows == 25
    assert json.loads((tmp_path / "pq" / "shards.json").read_text())["format"] == "parquet"
    with pytest.raises(ValueError, match="format 'parquet'; data.source tar_shards reads 'tar'"):
        load_index(str(tmp_path / "pq"))


def test_load_index__a_folder_without_index_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"python -m pipelines.shard SRC"):
        load_index(str(tmp_path))


def test_read_samples__labels_default_to_minus_one_and_stray_members_are_ignored():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("a.jpg", b"x"), ("a.cls", b"7"), ("b.png", b"y"), ("notes.txt", b"z")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert read_samples(buf.getvalue()) == [("a", b"x", 7), ("b", b"y", -1)]


def test_storage__local_paths_write_whole_files_and_list_trees(tmp_path):
    storage.write_text(tmp_path / "a" / "x.txt", "1")
    storage.write_bytes(str(tmp_path / "b" / "c" / "y.bin"), b"22")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "z").write_text("3")
    listed = storage.list_tree(tmp_path)
    assert [(p.removeprefix(str(tmp_path)), n) for p, n in listed] == [("/a/x.txt", 1), ("/b/c/y.bin", 2)]
    assert storage.list_tree(tmp_path) == storage.list_files(tmp_path)
    assert (
        not list(tmp_path.rglob("*.tmp"))
        and storage.exists(tmp_path / "a")
        and not storage.exists("/no/such")
    )
    assert storage.join("s3://bucket/runs/", "x", "y") == "s3://bucket/runs/x/y" and storage.is_uri(
        "s3://b/k"
    )
    assert not storage.is_uri("file:///tmp/x") and not storage.is_uri("/tmp/x")
