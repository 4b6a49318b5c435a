"""Decoding, folder listing, augmentation and device views without a Ray cluster."""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from ray.data.block import BlockAccessor

from cl_core.datasets.decode import BadImageError, decode_batch, decode_image, held_out, square_array
from cl_core.transforms import batched, build_recipe, colour_stage, make_views, normalize
from cl_core.transforms.stages import augment_batch, colour_chunk_rows, device_views
from pipelines.config import ConfigError, load_config, normalization, recipe_from_config
from pipelines.data.images import (
    CALL_INPUT_BYTES,
    MAX_TASK_INPUT_BYTES,
    TASKS_PER_SLOT,
    batch_seed,
    cached_calls,
    call_rows,
    rows_per_task,
)
from pipelines.data.readers import block_rows, list_image_folder
from pipelines.data.report import CorpusReport

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def table(batch: dict[str, np.ndarray]):
    """A batch as the Arrow block Ray Data hands ``batch_format="pyarrow"`` UDFs."""
    return BlockAccessor.batch_to_block(batch)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def noise(h: int = 48, w: int = 64, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def halves(w: int, h: int, left: tuple, right: tuple) -> Image.Image:
    image = Image.new("RGB", (w, h), left)
    image.paste(right, (w // 2, 0, w, h))
    return image


# --- decode_image --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("channels", [1, 3])
def test_decode_image__gives_uint8_channels_by_size_squares(fmt, channels):
    out = decode_image(encode(noise(), fmt), 20, channels)
    assert out.dtype == np.uint8 and out.shape == (channels, 20, 20)


def test_decode_image__resizes_the_shorter_side_then_crops_the_centre():
    image = Image.new("RGB", (90, 30), RED)  # 90 x 30: the centre third is white
    image.paste(WHITE, (30, 0, 60, 30))
    out = decode_image(encode(image, "PNG"), 10, 3)  # 30 x 10, then the centre 10 x 10
    assert (out[:, :, 1:-1] == 255).all() and out[1].min() > 200  # red would have green 0


@pytest.mark.parametrize(
    "image, channels, expected",
    [
        (Image.new("RGBA", (30, 20), (255, 0, 0, 0)), 3, WHITE),  # transparent -> white
        (Image.new("RGBA", (30, 20), (255, 0, 0, 255)), 3, RED),  # opaque alpha keeps the colour
        (Image.new("LA", (30, 20), (0, 128)), 1, (127,)),  # half transparent black on white
        (Image.new("L", (30, 20), 77), 3, (77, 77, 77)),  # gray -> 3 equal channels
        (Image.new("RGB", (30, 20), RED), 1, (76,)),  # luma 0.299 * 255
        (Image.fromarray(np.full((20, 30), 65535, dtype=np.uint16)), 1, (255,)),  # 16-bit -> 8-bit
        (Image.fromarray(np.full((20, 30), 257 * 40, dtype=np.uint16)), 1, (40,)),
    ],
)
def test_decode_image__converts_every_mode_with_the_documented_colour(image, channels, expected):
    out = decode_image(encode(image, "PNG"), 8, channels)
    assert out.shape == (channels, 8, 8)
    np.testing.assert_allclose(out[:, 4, 4], expected, atol=1)


def test_decode_image__converts_cmyk_jpeg_and_palette_transparency():
    cmyk = decode_image(encode(Image.new("RGB", (30, 20), RED).convert("CMYK"), "JPEG", quality=95), 8, 3)
    assert cmyk[0].mean() > 200 and cmyk[1:].mean() < 60
    palette = Image.new("P", (30, 20), 0)
    palette.putpalette([0, 0, 0] * 256)
    out = decode_image(encode(palette, "PNG", transparency=0), 8, 3)  # palette entry 0 is transparent
    assert (out == 255).all()


def test_decode_image__follows_exif_orientation():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display = rotate 90 degrees clockwise
    data = encode(halves(40, 20, RED, BLUE), "JPEG", quality=95, exif=exif)
    out = decode_image(data, 20, 3)  # displayed 20 x 40: red on top, blue at the bottom
    assert out[0, 2, 10] > 200 and out[2, 2, 10] < 60
    assert out[2, 17, 10] > 200 and out[0, 17, 10] < 60


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (np.random.default_rng(0).bytes(2000), "not an image"),
        (encode(noise(), "JPEG")[:600], "truncated"),
        (encode(noise(), "PNG")[:3000], "truncated"),
    ],
    ids=["zero-byte", "random-bytes", "truncated-jpeg", "truncated-png"],
)
def test_decode_image__raises_bad_image_error_with_the_reason(data, reason):
    with pytest.raises(BadImageError, match=f"(?i){reason}"):
        decode_image(data, 16, 3)


# --- decode_batch, arrays, keys ------------------------------------------------------------------


def test_decode_batch__marks_bad_files_and_keeps_the_good_ones(tmp_path):
    good, empty, missing = tmp_path / "a.png", tmp_path / "b.jpg", tmp_path / "gone.jpg"
    good.write_bytes(encode(Image.new("RGB", (30, 20), BLUE), "PNG"))
    empty.write_bytes(b"")
    paths = np.array([str(good), str(empty), str(missing)], dtype=object)
    batch = {"path": paths, "key": np.array([7, 8, 9])}
    out = decode_batch(batch, 8, 3)
    assert out["image"].shape == (3, 3, 8, 8) and out["image"].dtype == np.uint8
    assert list(out["error"][:1]) == [""] and "empty" in out["error"][1] and "unreadable" in out["error"][2]
    assert list(out["bad_path"]) == ["", str(empty), str(missing)]
    assert (out["image"][0, 2] == 255).all() and (out["image"][1:] == 0).all()
    assert out["label"].tolist() == [-1, -1, -1] and out["key"].tolist() == [7, 8, 9]


def test_decode_batch__parquet_style_bytes_get_content_keys_and_null_labels_become_minus_one():
    data = encode(noise(), "JPEG")
    batch = {
        "bytes": np.array([data, data, b"junk"], dtype=object),
        "path": np.array(["f.parquet"] * 3),
        "label": np.array([3.0, np.nan, 1.0]),
    }
    out = decode_batch(batch, 8, 1)
    assert out["key"][0] == out["key"][1] != out["key"][2] and (out["key"] >= 0).all()
    assert out["label"].tolist() == [3, -1, 1] and out["label"].dtype == np.int64
    assert out["bad_path"].tolist() == ["", "", "f.parquet"]


def test_square_array__resizes_fashion_mnist_sized_arrays_and_replicates_gray():
    pixels = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    same = square_array(pixels, 28, 3)
    assert same.shape == (3, 28, 28) and all((same[i] == pixels).all() for i in range(3))
    assert square_array(pixels, 32, 1).shape == (1, 32, 32)


def test_held_out__is_deterministic_and_close_to_the_fraction():
    keys = np.random.default_rng(0).integers(0, 2**62, 20_000)
    mask = held_out(keys, 0.1)
    assert abs(mask.mean() - 0.1) < 0.01 and (mask == held_out(keys, 0.1)).all()
    assert not held_out(keys, 0.0).any()


# --- folder listing ------------------------------------------------------------------------------


def test_list_image_folder__recursive_case_insensitive_with_sorted_class_labels(tmp_path):
    for rel in [
        "b_dog/x.JPG",
        "b_dog/deep/y.webp",
        "a_cat/z.png",
        "a_cat/w.Jpeg",
        "a_cat/notes.txt",
        "a_cat/.hidden.jpg",
        ".cache/q.jpg",
    ]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    listing = list_image_folder(tmp_path)
    names = [p.split("/")[-1] for p in listing.paths]
    assert names == ["w.Jpeg", "z.png", "y.webp", "x.JPG"]
    assert listing.classes == ("a_cat", "b_dog") and listing.labels.tolist() == [0, 0, 1, 1]
    assert list_image_folder(tmp_path, labels=False).labels.tolist() == [-1] * 4
    (tmp_path / "top.png").write_bytes(b"x")  # an image directly in the root: unlabelled
    assert list_image_folder(tmp_path).labels.tolist() == [-1] * 5


def test_list_image_folder__empty_or_missing_folder_raises_naming_the_path(tmp_path):
    (tmp_path / "sub").mkdir()
    with pytest.raises(ValueError, match=str(tmp_path)):
        list_image_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_image_folder(tmp_path / "nowhere")


# --- augmentation --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batch() -> dict[str, np.ndarray]:
    images = np.random.default_rng(0).integers(0, 256, (1, 3, 40, 40), dtype=np.uint8).repeat(6, axis=0)
    images.flags.writeable = False  # as Ray Data hands batches out
    return {"image": images, "label": np.arange(6)}  # 6 copies of one image


@pytest.mark.parametrize("colour_on_device", [True, False])
def test_augment_batch__same_seed_same_views_and_samples_draw_their_own_crops(batch, colour_on_device):
    recipe = build_recipe("simclr", size=24, blur_prob=0.0)
    first, again, other = (augment_batch(batch, recipe, colour_on_device, s) for s in (5, 5, 6))
    assert sorted(first) == ["label", "view_0", "view_1"] and first["label"].dtype == np.int64
    for name in ("view_0", "view_1"):
        assert first[name].dtype == np.uint8 and first[name].shape == (6, 3, 24, 24)
        assert (first[name] == again[name]).all() and not (first[name] == other[name]).all()
        views = first[name].reshape(6, -1)
        assert len({v.tobytes() for v in views}) == 6  # copies of one image: distinct crops
    assert not (first["view_0"] == first["view_1"]).all()


@pytest.mark.parametrize("chunk_rows", [4, 6, 100])  # chunks of 4 + 2, one of 6, one of 6
def test_augment_batch__without_device_colour_is_make_views_quantised_chunk_by_chunk(
    batch, monkeypatch, chunk_rows
):
    recipe = build_recipe("byol", size=16)
    monkeypatch.setattr(batched, "CPU_COLOUR_CHUNK_ELEMENTS", chunk_rows * 3 * 16 * 16)
    assert colour_chunk_rows(recipe, 3) == chunk_rows
    out = augment_batch(batch, recipe, colour_on_device=False, seed=3)
    generator, images = torch.Generator().manual_seed(3), torch.from_numpy(batch["image"])
    chunks = [
        make_views(images[i : i + chunk_rows], recipe, generator) for i in range(0, len(images), chunk_rows)
    ]
    for i, view in enumerate(torch.cat(parts) for parts in zip(*chunks)):
        assert out[f"view_{i}"].dtype == np.uint8 and out[f"view_{i}"].shape == (6, 3, 16, 16)
        assert (torch.from_numpy(out[f"view_{i}"]).float() - view * 255).abs().max() <= 0.5 + 1e-4
    views = out["view_0"].reshape(6, -1)
    assert len({v.tobytes() for v in views}) == 6  # copies of one image: each chunk draws its own


def test_colour_chunk_rows__about_two_million_elements_of_the_largest_view():
    assert colour_chunk_rows(build_recipe("simclr", size=224), 3) == 13
    assert colour_chunk_rows(build_recipe("simclr", size=32), 3) == 682
    assert colour_chunk_rows(build_recipe("simclr", size=28), 1) == 2674
    assert colour_chunk_rows(build_recipe("multicrop", global_size=224, local_size=96), 3) == 13
    assert colour_chunk_rows(build_recipe("simclr", size=2048), 3) == 1  # never 0


def test_augment_batch__multicrop_sizes_and_an_empty_batch():
    recipe = build_recipe("multicrop", global_size=16, local_size=8, num_local=2)
    images = np.zeros((0, 1, 20, 20), dtype=np.uint8)
    out = augment_batch({"image": images, "label": np.zeros(0)}, recipe, True, 0)
    assert [out[f"view_{i}"].shape for i in range(4)] == [(0, 1, 16, 16)] * 2 + [(0, 1, 8, 8)] * 2


def test_batch_seed__deterministic_and_sensitive_to_each_input():
    seeds = {batch_seed(0, 1, 2), batch_seed(1, 1, 2), batch_seed(0, 2, 2), batch_seed(0, 1, 3)}
    assert batch_seed(0, 1, 2) == batch_seed(0, 1, 2) and len(seeds) == 4


def test_cached_calls__gather_the_tasks_rows_in_calls_with_their_own_draws():
    images = np.random.default_rng(1).integers(0, 256, (1, 1, 20, 20), dtype=np.uint8).repeat(11, axis=0)
    images.setflags(write=False)  # as ray.get gives it from the object store
    labels = np.arange(11, dtype=np.int64) * 10
    recipe = build_recipe("simclr", size=16, blur_prob=0.0)
    rows = np.array([9, 2, 7, 0, 5, 3, 10])
    chunks = list(cached_calls(images, labels, rows, 3, recipe, True, seed=0))
    assert [c["label"].tolist() for c in chunks] == [[90, 20, 70], [0, 50, 30], [100]]  # the rows' order
    crops = [v.tobytes() for c in chunks for v in c["view_0"]]
    assert len(set(crops)) == 7  # one image: each call draws its own crops (no shared seed across calls)
    assert all(c["view_0"].shape[1:] == (1, 16, 16) and c["view_1"].dtype == np.uint8 for c in chunks)
    again = list(cached_calls(images, labels, rows, 3, recipe, True, seed=0))
    assert all(np.array_equal(x["view_0"], y["view_0"]) for x, y in zip(chunks, again))
    assert list(cached_calls(images, labels, rows[:0], 3, recipe, True, seed=0)) == []


@pytest.mark.parametrize(
    ("num_rows", "slots", "calls"), [(60_000, 1, 3), (60_000, 4, 1), (10_000, 1, 1), (0, 1, 1)]
)
def test_rows_per_task__whole_calls_and_about_tasks_per_slot(num_rows, slots, calls):
    config = load_config(values={})  # Fashion-MNIST: 28 px, 1 channel, 4096-row calls
    assert call_rows(config) == 4096 and rows_per_task(config, num_rows, slots) == 4096 * calls
    if calls > 1:  # at least TASKS_PER_SLOT tasks per slot, fewer than twice as many
        assert TASKS_PER_SLOT <= num_rows / (4096 * calls * slots) < 2 * TASKS_PER_SLOT


@pytest.mark.parametrize(("source", "size", "channels"), [("fashion_mnist", 28, 1), ("image_folder", 224, 3)])
def test_rows_per_task__a_large_corpus_caps_the_task_input(source, size, channels, tmp_path):
    data = {"source": source, "image_size": size, "channels": channels}
    data |= {"path": str(tmp_path)} if source == "image_folder" else {}
    config = load_config(values={"data": data})
    call, image_bytes = call_rows(config), channels * size * size
    rows = rows_per_task(config, 10**8, 1)
    assert call == block_rows(source)  # one call per decoded block (4096 rows at 28 px, 256 at 224)
    assert rows % call == 0 and (rows + call) * image_bytes > MAX_TASK_INPUT_BYTES  # 83 and 6 calls
    assert rows * image_bytes <= MAX_TASK_INPUT_BYTES or rows == call  # a call is never split


@pytest.mark.parametrize("source", ["image_folder", "fashion_mnist", "parquet"])
@pytest.mark.parametrize(
    ("size", "channels"), [(16, 1), (28, 1), (32, 3), (96, 3), (224, 1), (224, 3), (300, 3), (512, 3)]
)
def test_task_rows__about_32_mb_aligned_with_the_decoded_blocks(source, size, channels, tmp_path):
    data = {"source": source, "image_size": size, "channels": channels}
    data |= {} if source == "fashion_mnist" else {"path": str(tmp_path)}
    config = load_config(values={"data": data})
    call, block = call_rows(config), block_rows(source)
    target = min(4096, max(64, CALL_INPUT_BYTES // (channels * size * size)))
    if block is None:  # Parquet: the files decide the blocks; nothing to align with
        assert call == target
    else:  # no call or task straddles two blocks: Ray Data would concatenate them (a copy) for it
        assert call % block == 0 or block % call == 0
        assert target / 2 <= call <= 2 * target
        for rows in (rows_per_task(config, n, slots) for n in (10**4, 10**6) for slots in (1, 3)):
            assert rows % block == 0 or block % rows == 0
    fixed = load_config(values={"data": data, "augment": {"batch_rows": 100}})
    assert call_rows(fixed) == 100  # the user's choice stands


@pytest.mark.parametrize("colour_on_device", [True, False])
def test_device_views__float_normalised_views_and_labels(batch, colour_on_device):
    recipe = build_recipe("simclr", size=24)
    rows = augment_batch(batch, recipe, colour_on_device, seed=1)
    tensors = {k: torch.from_numpy(v) for k, v in rows.items()}
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.2, 0.2)
    generator = torch.Generator().manual_seed(2)
    views, labels = device_views(tensors, recipe, colour_on_device, mean, std, generator)
    assert len(views) == 2 and labels.tolist() == list(range(6))
    for i, view in enumerate(views):
        assert view.dtype == torch.float32 and view.shape == (6, 3, 24, 24)
        x = tensors[f"view_{i}"]
        if not colour_on_device:
            expected = normalize(x.float() / 255, mean, std)
        else:
            generator = torch.Generator().manual_seed(2)
            expected = [
                normalize(colour_stage(tensors[f"view_{j}"], recipe.views[j], generator), mean, std)
                for j in range(i + 1)
            ][i]
        torch.testing.assert_close(view, expected)


# --- config helpers ------------------------------------------------------------------------------


def test_recipe_from_config__sizes_default_to_the_image_size_and_explicit_params_win():
    assert recipe_from_config(load_config(values={"data": {"image_size": 32}})).sizes == (32, 32)
    config = load_config(values={"data": {"image_size": 32}, "augment": {"params": {"size": 24}}})
    assert recipe_from_config(config).sizes == (24, 24)
    dino = load_config(
        values={
            "method": {"name": "dino"},
            "data": {"image_size": 224, "channels": 3},
            "augment": {"recipe": "multicrop", "params": {"num_local": 2}},
        }
    )
    assert recipe_from_config(dino).sizes == (224, 224, 96, 96)
    with pytest.raises(ConfigError, match="larger than data.image_size"):
        load_config(values={"augment": {"params": {"size": 64}}})


def test_normalization__fashion_mnist_imagenet_and_gray_imagenet():
    assert normalization(load_config()) == ((0.2860,), (0.3530,))
    folder = {"source": "image_folder", "path": "/", "channels": 3}
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert normalization(load_config(values={"data": folder})) == imagenet
    (mean,), (std,) = normalization(load_config(values={"data": folder | {"channels": 1}}))
    assert mean == pytest.approx(0.299 * 0.485 + 0.587 * 0.456 + 0.114 * 0.406) and 0.224 < std < 0.229


def test_corpus_report__fraction_and_metrics():
    report = CorpusReport(total=200, bad=3, bad_examples=[("a.jpg", "empty (0 bytes)")])
    assert report.bad_fraction == 0.015 and CorpusReport(0, 0).bad_fraction == 0.0
    assert report.as_metrics() == {"data/bad_files": 3, "data/total_files": 200}
