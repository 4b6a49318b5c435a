"""The streamed image path without Ray: the per-epoch permutation, decoding at the file's own
aspect ratio, crops of the whole image, task sizing."""

import io
import math

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from cl_core.datasets.decode import BadImageError, decode_shrunk
from cl_core.datasets.permutation import epoch_key, permute
from cl_core.transforms import build_recipe
from cl_core.transforms.stages import augment_images
from pipelines.config import load_config
from pipelines.data.stream import decode_side, epoch_files, files_per_task


@pytest.mark.parametrize("n", [1, 2, 3, 10, 257, 4096, 10_007])
def test_permute__is_a_bijection_of_range_n_for_every_key(n):
    for key in (0, 1, epoch_key(7, 3)):
        assert np.array_equal(np.sort(permute(np.arange(n), n, key)), np.arange(n))


def test_permute__keys_give_different_orders_and_positions_are_consistent():
    n = 1000
    orders = [permute(np.arange(n), n, epoch_key(0, epoch)) for epoch in range(4)]
    for a in range(4):
        for b in range(a + 1, 4):
            assert (orders[a] != orders[b]).mean() > 0.95
    assert np.array_equal(
        permute(np.arange(300, 600), n, epoch_key(0, 2)), orders[2][300:600]
    )  # a task's slice
    # near-uniform: each item lands in each tenth of the positions about equally often over keys
    where = np.stack([np.argsort(permute(np.arange(n), n, k)) for k in range(200)])  # (keys, items)
    counts = np.bincount((where[:, :100] * 10 // n).ravel(), minlength=10)
    expected = 200 * 100 / 10
    assert ((counts - expected) ** 2 / expected).sum() < 30  # chi-square, 9 dof: p ~ 4e-4


def test_permute__rejects_positions_outside_the_range():
    with pytest.raises(ValueError, match="positions must be < n=5"):
        permute(np.array([5]), 5, 0)


def test_epoch_files__the_tasks_of_an_epoch_cover_the_listing_once():
    listing = pa.table({"path": [f"f{i}" for i in range(103)], "label": np.arange(103)})
    per_task = files_per_task(103, slots=2)
    tasks = math.ceil(103 / per_task)
    for epoch in (0, 1):
        seen = np.concatenate(
            [epoch_files(listing, t, per_task, 5, epoch).column("label") for t in range(tasks)]
        )
        assert sorted(seen.tolist()) == list(range(103))
    first = epoch_files(listing, 0, per_task, 5, 0).column("label").to_pylist()
    assert first == epoch_files(listing, 0, per_task, 5, 0).column("label").to_pylist()  # a resume: same
    assert first != epoch_files(listing, 0, per_task, 5, 1).column("label").to_pylist()


def test_files_per_task__small_corpora_still_give_every_slot_several_tasks():
    assert files_per_task(10_000_000, slots=64) == 256
    assert files_per_task(600, slots=2) == 75 and files_per_task(3, slots=4) == 1


def _jpeg(w: int, h: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG")
    return buf.getvalue()


def test_decode_shrunk__keeps_the_aspect_ratio_and_caps_the_shorter_side():
    image = decode_shrunk(_jpeg(640, 480), 3, 256)
    assert image.dtype == np.uint8 and image.shape == (3, 256, 341)
    assert decode_shrunk(_jpeg(100, 60), 1, 256).shape == (1, 60, 100)  # small: unchanged
    with pytest.raises(BadImageError, match="empty"):
        decode_shrunk(b"", 3, 256)


def test_decode_side__keeps_the_smallest_crops_resolution_up_to_max_side():
    config = load_config(values={"data": {"image_size": 32}, "augment": {"params": {"min_scale": 0.25}}})
    recipe = build_recipe("simclr", size=32, min_scale=0.25)
    assert decode_side(config, recipe) == 64  # 32 / sqrt(0.25), below the default cap 2 x 32
    strict = load_config(values={"data": {"image_size": 32, "max_side": 40}})
    assert decode_side(strict, build_recipe("simclr", size=32, min_scale=0.08)) == 40


def test_augment_images__crops_the_whole_image_of_any_size_deterministically():
    # left half black, right half white: full-image crops (scale 1, ratio 1 on a square) keep both
    half = np.zeros((3, 40, 40), np.uint8)
    half[:, :, 20:] = 255
    wide = np.full((3, 30, 90), 128, np.uint8)
    recipe = build_recipe("none", size=16)  # crops and flips only: scale (1, 1), ratio (1, 1)
    out = augment_images([half, wide], np.array([3, 4]), recipe, True, seed=0)
    assert out["view_0"].shape == (2, 3, 16, 16) and out["label"].tolist() == [3, 4]
    first = out["view_0"][0, 0]
    assert {int(first[:, 0].max()), int(first[:, -1].min())} in (
        {0, 255},
        {255, 0},
    )  # both halves, maybe flipped
    assert (out["view_0"][1] == 128).all()  # a centred square of the uniform wide image
    again = augment_images([half, wide], np.array([3, 4]), recipe, True, seed=0)
    assert all(np.array_equal(out[k], again[k]) for k in out)
    full = augment_images([half, wide], np.array([3, 4]), build_recipe("simclr", size=16), False, seed=1)
    assert full["view_1"].shape == (2, 3, 16, 16) and full["view_1"].dtype == np.uint8


def test_auto_cache__decodes_once_only_when_the_squares_fit_the_stores_share(tmp_path, monkeypatch, caplog):
    from pipelines.data import build

    for c in range(2):
        (tmp_path / f"c{c}").mkdir()
        for i in range(50):
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / f"c{c}" / f"{i}.png")
    values = {
        "data": {"source": "image_folder", "path": str(tmp_path), "cache": "auto", "holdout_fraction": 0.0}
    }
    config = load_config(values=values)  # 100 files x 1 x 28 x 28 = 78,400 bytes decoded
    monkeypatch.setattr(build.ray, "cluster_resources", lambda: {"object_store_memory": 78_400 / 0.3 + 1})
    assert build.auto_cache(config) == "memory"
    monkeypatch.setattr(build.ray, "cluster_resources", lambda: {"object_store_memory": 78_400 / 0.3 - 1})
    assert build.auto_cache(config) == "none"
    assert "100 files decode to 0.0 GB" in caplog.text and "streamed (none)" in caplog.text


def test_sample_crop_boxes__per_image_sizes_match_the_scalar_draws_and_fit_each_image():
    import torch

    from cl_core.transforms.crops import sample_crop_boxes

    params = build_recipe("simclr", size=16, min_scale=0.08).views[0]
    same = sample_crop_boxes(50, 40, 60, params, torch.Generator().manual_seed(3))
    tensors = torch.full((50,), 40), torch.full((50,), 60)
    assert torch.equal(same, sample_crop_boxes(50, *tensors, params, torch.Generator().manual_seed(3)))
    h, w = torch.tensor([40, 7, 300, 1, 90] * 20), torch.tensor([60, 300, 7, 1, 90] * 20)
    boxes = sample_crop_boxes(100, h, w, params, torch.Generator().manual_seed(4))
    top, left, bh, bw = boxes.unbind(dim=1)
    assert bool(((top >= 0) & (left >= 0) & (bh >= 1) & (bw >= 1)).all())
    assert bool(((top + bh <= h) & (left + bw <= w)).all())  # inside each image, fallbacks too
