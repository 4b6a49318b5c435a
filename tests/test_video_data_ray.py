"""build_video_datasets on a local Ray: clip-pair rows, bad-file accounting, disjoint monitor splits."""

import numpy as np
import pytest

from cl_core.video import write_video
from pipelines.config import ExperimentConfig, config_from_dict, to_dict

LENGTHS = (40, 48, 56)  # frames of the three good videos
STEP = 4  # frame i is a flat gray of level STEP * i (survives resizing, cropping and H.264)


def _gray_counter(n: int) -> np.ndarray:
    return np.repeat((STEP * np.arange(n, dtype=np.uint8))[:, None, None, None], 48 * 64 * 3).reshape(
        n, 48, 64, 3
    )


@pytest.fixture(scope="module")
def video_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for i, n in enumerate(LENGTHS):
        dst = root / "clips" / f"v{i}.mp4" if i else root / f"v{i}.mp4"
        write_video(dst, _gray_counter(n), keyframe_interval=6)
    (root / "corrupt.mkv").write_bytes(np.random.default_rng(0).bytes(5000))
    data = (root / "v0.mp4").read_bytes()
    (root / "half.mp4").write_bytes(data[: len(data) // 2])
    values = to_dict(ExperimentConfig())
    values["data"] |= {
        "source": "video_folder",
        "path": str(root),
        "image_size": 32,
        "channels": 3,
        "max_bad_fraction": 0.5,
    }
    values["video"] |= {
        "frames": 4,
        "stride": 2,
        "pairs_per_video": 3,
        "holdout_fraction": 0.2,
        "eval_clips_per_video": 2,
        "index_path": str(root.parent / "index.parquet"),
    }
    return config_from_dict(values)


def _rows(ds) -> dict[str, np.ndarray]:
    batches = list(ds.iter_batches(batch_size=None))
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def test_build_video_datasets__pairs_labels_bad_files_and_disjoint_monitor(ray_local, video_config):
    from pipelines.data.video import build_video_datasets

    datasets = build_video_datasets(video_config)
    assert (datasets.report.total, datasets.report.bad) == (5, 2)
    assert {p.rsplit("/", 1)[-1] for p, _ in datasets.report.bad_examples} == {"corrupt.mkv", "half.mp4"}
    assert datasets.num_train_rows == 9
    train = _rows(datasets.train)
    for key in ("clip_0", "clip_1"):
        assert train[key].shape == (9, 4, 3, 32, 32) and train[key].dtype == np.uint8
    assert train["label"].dtype == np.int64 and sorted(train["label"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    again = _rows(datasets.train)
    assert not np.array_equal(train["clip_0"], again["clip_0"])  # a new epoch draws new pairs
    bank, queries = _rows(datasets.eval_train), _rows(datasets.eval_test)
    assert bank["clip"].shape == (6, 4, 3, 32, 32) and queries["clip"].shape == (6, 4, 3, 32, 32)
    # videos sorted by path: clips/v1.mp4 (48), clips/v2.mp4 (56), v0.mp4 (40); train_end = L - 0.2 L
    ends = {0: 48 - 10, 1: 56 - 11, 2: 40 - 8}
    for rows, held_out in ((bank, False), (queries, True)):
        frames = np.rint(rows["clip"].astype(float).mean(axis=(2, 3, 4)) / STEP).astype(int)  # (n, T) indices
        assert (np.diff(frames, axis=1) == 2).all()
        for label, clip in zip(rows["label"], frames):
            assert (clip >= ends[label]).all() if held_out else (clip < ends[label]).all()


def test_clip_pairs__a_video_failing_at_training_time_is_skipped(tmp_path):
    from cl_core.transforms import ClipRecipe
    from pipelines.data.video import _clip_pairs

    write_video(tmp_path / "good.mp4", _gray_counter(30), keyframe_interval=6)
    (tmp_path / "gone.mp4").write_bytes(b"not a video")
    batch = {
        "path": np.array([str(tmp_path / "good.mp4"), str(tmp_path / "gone.mp4")], dtype=object),
        "train_end": np.array([24, 24]),
        "keyframes": np.array([[0, 6, 12, 18, 24], []], dtype=object),
        "video_id": np.array([0, 1]),
        "key": np.array([0, 1]),
    }
    clip = {"frames": 4, "stride": 2, "distance_power": 1.0}
    out = _clip_pairs(batch, clip, ClipRecipe(size=16), short_side=18, channels=1, train_seed=0)
    assert out["clip_0"].shape == (1, 4, 1, 16, 16) and out["label"].tolist() == [0]


def test_build_index__reprobes_only_new_or_changed_files(tmp_path, monkeypatch):
    import pipelines.data.video_index as video_index

    write_video(tmp_path / "a.mp4", _gray_counter(12))
    write_video(tmp_path / "b.mkv", _gray_counter(10), codec="ffv1")
    (tmp_path / "c.webm").write_bytes(b"\x00" * 100)
    (tmp_path / "notes.txt").write_text("not a video")
    index_path = tmp_path / "idx" / "index.parquet"
    first = video_index.build_index(tmp_path, index_path)
    assert first.column_names == video_index.SCHEMA.names and first.num_rows == 3
    assert first["decodable"].to_pylist() == [True, True, False] and first["frames"].to_pylist()[:2] == [
        12,
        10,
    ]
    probed = []
    monkeypatch.setattr(
        video_index,
        "probe",
        lambda p, **kw: probed.append(p.name) or video_index.VideoInfo(5, 25.0, 0.2, 64, 48, (0,), True),
    )
    write_video(tmp_path / "a.mp4", _gray_counter(14))  # changed: new size and mtime
    write_video(tmp_path / "d.mp4", _gray_counter(8))  # new
    second = video_index.build_index(tmp_path, index_path)
    assert sorted(probed) == ["a.mp4", "d.mp4"] and second.num_rows == 4
    frames = dict(zip(second["path"].to_pylist(), second["frames"].to_pylist()))
    assert (
        frames[str(tmp_path / "b.mkv")] == 10 and frames[str(tmp_path / "a.mp4")] == 5
    )  # reused / re-probed
