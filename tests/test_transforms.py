"""View recipes: seeding, crop-box distribution, ops vs torchvision, probabilities, shapes, errors."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import RandomResizedCrop

from cl_core.transforms import (
    RECIPES,
    ViewParams,
    ViewRecipe,
    build_recipe,
    colour_ops,
    colour_stage,
    geometric_stage,
    make_views,
    normalize,
    reference_views,
    sample_crop_boxes,
)
from cl_core.transforms.crops import resized_crops
from cl_core.transforms.jitter import JITTER_OPS, apply_jitter, draw_jitter

stats = pytest.importorskip("scipy.stats")

#: A view with every random op off: colour_stage must then be the identity.
PLAIN = dict(jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a busy 2-core machine two spinning OpenMP threads ran 40x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_images(b: int = 8, c: int = 3, h: int = 40, w: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=gen(seed))


def smooth_images(b: int = 4, c: int = 3, h: int = 64, w: int = 80) -> torch.Tensor:
    """Low-frequency images, where different antialiasing filters must nearly agree."""
    coarse = torch.rand(b, c, h // 8, w // 8, generator=gen(1)) * 255
    smooth = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    return smooth.clamp(0, 255).round().byte()


# --- seeding -------------------------------------------------------------------------------------


def test_make_views__same_seed_gives_identical_views_and_another_seed_different_ones():
    images, recipe = random_images(), build_recipe("byol", size=24)
    first, again, other = (make_views(images, recipe, gen(s)) for s in (0, 0, 1))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not any(torch.equal(a, b) for a, b in zip(first, other))


def test_reference_views__same_seed_gives_identical_views_and_leaves_global_rng_alone():
    images, recipe = random_images(b=4), build_recipe("simclr", size=24)
    state = torch.get_rng_state()
    first, again, other = (reference_views(images, recipe, seed=s) for s in (0, 0, 1))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])


def test_sample_crop_boxes__differ_between_samples_of_a_batch():
    boxes = sample_crop_boxes(64, 100, 120, ViewParams(size=32), gen())
    assert boxes.shape == (64, 4) and boxes.dtype == torch.int64
    assert torch.unique(boxes, dim=0).shape[0] > 60


# --- crop boxes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("h, w, scale", [(200, 300, (0.08, 1.0)), (150, 150, (0.3, 0.6))])
def test_sample_crop_boxes__area_fraction_stays_in_the_scale_range_except_the_fallback(h, w, scale):
    params = ViewParams(size=32, min_scale=scale[0], max_scale=scale[1])
    top, left, ch, cw = sample_crop_boxes(5000, h, w, params, gen()).T
    fraction = (ch * cw).double() / (h * w)
    fallback = (top == (h - ch) // 2) & (left == (w - cw) // 2) & (fraction > scale[1] + 0.02)
    inside = fraction[~fallback]
    assert inside.min() >= scale[0] - 0.01 and inside.max() <= scale[1] + 0.01
    assert ((top >= 0) & (left >= 0) & (top + ch <= h) & (left + cw <= w)).all()
    assert fallback.double().mean() < 0.05


@pytest.mark.parametrize(
    "h, w, scale, ratio", [(64, 96, (0.08, 1.0), (3 / 4, 4 / 3)), (60, 60, (0.2, 1.0), (1 / 3, 3.0))]
)
def test_sample_crop_boxes__match_torchvision_get_params_in_distribution(h, w, scale, ratio):
    n = 6000
    ours = sample_crop_boxes(n, h, w, ViewParams(size=32, min_scale=scale[0], ratio=ratio), gen()).double()
    torch.manual_seed(0)
    dummy = torch.empty(1, h, w)
    theirs = [RandomResizedCrop.get_params(dummy, list(scale), list(ratio)) for _ in range(n)]
    theirs = torch.tensor(theirs).double()

    def features(boxes: torch.Tensor) -> dict[str, np.ndarray]:
        top, left, ch, cw = boxes.T
        return {
            "log_ratio": torch.log(cw / ch).numpy(),
            "scale": (ch * cw / (h * w)).numpy(),
            "centre_y": ((top + ch / 2) / h).numpy(),
            "centre_x": ((left + cw / 2) / w).numpy(),
        }

    for name, (a, b) in {k: (v, features(theirs)[k]) for k, v in features(ours).items()}.items():
        assert stats.ks_2samp(a, b).pvalue > 1e-3, name


# --- geometric stage -----------------------------------------------------------------------------


@pytest.mark.parametrize("antialias", [True, False])
def test_geometric_stage__full_crop_without_flip_equals_a_plain_resize(antialias):
    images = random_images(b=4, h=40, w=60)
    params = ViewParams(size=28, min_scale=1.0, max_scale=1.0, ratio=(1.5, 1.5), flip_prob=0.0)
    out = geometric_stage(images, params, gen(), antialias=antialias)
    expected = F.interpolate(images.float(), size=(28, 28), mode="bilinear", antialias=antialias)
    assert out.dtype == torch.uint8 and out.shape == (4, 3, 28, 28)
    assert (out.float() - expected.round()).abs().max() <= 1


def test_geometric_stage__flip_prob_one_flips_exactly():
    images, base = random_images(), dict(size=20, min_scale=0.3)
    plain = geometric_stage(images, ViewParams(**base, flip_prob=0.0), gen())
    flipped = geometric_stage(images, ViewParams(**base, flip_prob=1.0), gen())
    assert torch.equal(flipped, plain.flip(-1))


def test_resized_crops__batched_roi_align_path_agrees_with_the_per_sample_path():
    images = smooth_images()
    boxes = sample_crop_boxes(4, 64, 80, ViewParams(size=24, min_scale=0.2), gen())
    loop_exact = resized_crops(images, boxes, 24, antialias=False, batched=False).float()
    roi_exact = resized_crops(images, boxes, 24, antialias=False, batched=True).float()
    assert (loop_exact - roi_exact).abs().max() <= 1
    loop_aa = resized_crops(images, boxes, 24, antialias=True, batched=False).float()
    roi_aa = resized_crops(images, boxes, 24, antialias=True, batched=True).float()
    assert (loop_aa - roi_aa).abs().mean() < 2.0


# --- colour ops vs torchvision --------------------------------------------------------------------

OPS = {
    "brightness": (colour_ops.adjust_brightness, TF.adjust_brightness, (0.2, 1.8)),
    "contrast": (colour_ops.adjust_contrast, TF.adjust_contrast, (0.2, 1.8)),
    "saturation": (colour_ops.adjust_saturation, TF.adjust_saturation, (0.0, 1.8)),
    "hue": (colour_ops.adjust_hue, TF.adjust_hue, (-0.5, 0.5)),
}


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("c", [1, 3])
def test_colour_op__matches_torchvision_per_sample_with_the_same_factor(name, c):
    ours, theirs, (lo, hi) = OPS[name]
    x = torch.rand(6, c, 12, 14, generator=gen())
    factor = torch.linspace(lo, hi, 6)
    expected = torch.stack([theirs(img, float(f)) for img, f in zip(x, factor)])
    assert torch.allclose(ours(x, factor), expected, atol=1e-5)


def test_grayscale_solarize_and_blur__match_torchvision():
    x = torch.rand(4, 3, 30, 30, generator=gen())
    gray = TF.rgb_to_grayscale(x, num_output_channels=3)
    assert torch.allclose(colour_ops.to_grayscale(x), gray, atol=1e-6)
    assert torch.equal(colour_ops.solarize(x, 0.5), TF.solarize(x, 0.5))
    sigma = torch.tensor([0.1, 0.7, 1.3, 2.0])
    expected = torch.stack([TF.gaussian_blur(img, [9, 9], [float(s)] * 2) for img, s in zip(x, sigma)])
    assert torch.allclose(colour_ops.gaussian_blur(x, sigma, 9), expected, atol=1e-5)


def test_blur_kernel_size__is_ten_percent_of_the_side_and_odd_as_simclr():
    assert [colour_ops.blur_kernel_size(s) for s in (224, 96, 32, 28, 8)] == [23, 9, 3, 3, 1]


def test_colour_jitter__equals_torchvision_ops_applied_in_each_samples_drawn_order():
    params = ViewParams(size=16, jitter_prob=0.7, brightness=0.5, contrast=0.5, saturation=0.5, hue=0.2)
    x = torch.rand(32, 3, 10, 10, generator=gen())
    draws = draw_jitter(32, params, gen(3))
    theirs = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    expected = x.clone()
    for i in range(32):
        for op_id in draws.order[i].tolist() if draws.apply[i] else []:
            expected[i] = theirs[op_id](expected[i], float(draws.factors[i, op_id]))
    assert len(JITTER_OPS) == 4
    assert torch.allclose(apply_jitter(x.clone(), params, draws), expected, atol=1e-5)


def test_draw_jitter__op_order_is_a_uniform_random_permutation_per_sample():
    order = draw_jitter(4800, ViewParams(size=8), gen()).order
    assert torch.equal(order.sort(dim=1).values, torch.arange(4).expand(4800, 4))
    counts = torch.unique(order, dim=0, return_counts=True)[1]
    assert counts.numel() == 24 and stats.chisquare(counts.numpy()).pvalue > 1e-3


# --- probabilities -------------------------------------------------------------------------------


def is_gray(x: torch.Tensor) -> torch.Tensor:
    return (x[:, 0] == x[:, 1]).all(dim=(1, 2)) & (x[:, 1] == x[:, 2]).all(dim=(1, 2))


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_colour_stage__grayscale_applies_with_probability_p(p):
    images = random_images(b=2000, h=6, w=6)
    out = colour_stage(images, ViewParams(size=6, **{**PLAIN, "grayscale_prob": p}), gen())
    assert abs(is_gray(out).double().mean().item() - p) < 0.04


@pytest.mark.parametrize("field", ["jitter_prob", "blur_prob", "solarize_prob"])
@pytest.mark.parametrize("p", [0.0, 0.6, 1.0])
def test_colour_stage__each_op_applies_with_probability_p(field, p):
    images = random_images(b=1500, h=10, w=10)  # size=30 below: a 3-tap blur kernel
    params = ViewParams(
        size=30, **{**PLAIN, field: p}, brightness=0.5, contrast=0, saturation=0, hue=0, blur_sigma=(1.0, 2.0)
    )
    changed = (colour_stage(images, params, gen()) != images.float() / 255).flatten(1).any(dim=1)
    assert abs(changed.double().mean().item() - p) < 0.05
    if p in (0.0, 1.0):
        assert changed.all() if p == 1.0 else not changed.any()


def test_geometric_stage__flips_with_probability_p():
    images, base = random_images(b=2000, h=8, w=8), dict(size=8, min_scale=1.0, ratio=(1.0, 1.0))
    plain = geometric_stage(images, ViewParams(**base, flip_prob=0.0), gen())
    maybe = geometric_stage(images, ViewParams(**base, flip_prob=0.3), gen())
    assert abs((maybe != plain).flatten(1).any(dim=1).double().mean().item() - 0.3) < 0.04


def test_none_recipe__is_a_deterministic_centre_square_resize():
    images = random_images(b=3, h=40, w=60)
    out = make_views(images, build_recipe("none", size=20), gen(5))[0]
    square = images[:, :, :, 10:50].float()
    expected = F.interpolate(square, size=(20, 20), mode="bilinear", antialias=True) / 255
    assert out.shape == (3, 3, 20, 20) and out.dtype == torch.float32
    assert (out * 255 - expected * 255).abs().max() <= 1.0
    assert torch.equal(out, make_views(images, build_recipe("none", size=20), gen(9))[0])


# --- shapes, channels, dtypes --------------------------------------------------------------------

RECIPE_CASES = [
    ("simclr", {}),
    ("byol", {}),
    ("moco_v2", {}),
    ("none", {}),
    ("multicrop", {"method": "dino"}),
    ("multicrop", {"method": "swav"}),
]


def sizes_for(name: str) -> dict:
    if name == "multicrop":
        return {"global_size": 24, "local_size": 12}
    return {"size": 24}


@pytest.mark.parametrize("name, kwargs", RECIPE_CASES)
@pytest.mark.parametrize("c", [1, 3])
def test_make_views__keep_channels_and_give_each_views_size_and_dtype(name, kwargs, c):
    recipe = build_recipe(name, **sizes_for(name), **kwargs)
    images = random_images(b=4, c=c, h=32, w=36)
    floats = make_views(images, recipe, gen())
    crops = make_views(images, recipe, gen(), colour=False)
    assert [v.shape for v in floats] == [(4, c, s, s) for s in recipe.sizes] == [v.shape for v in crops]
    assert all(v.dtype == torch.float32 and v.min() >= 0 and v.max() <= 1 for v in floats)
    assert all(v.dtype == torch.uint8 for v in crops)


@pytest.mark.parametrize("method, num_local", [("dino", 8), ("swav", 6)])
def test_multicrop__gives_global_views_first_then_the_methods_default_number_of_locals(method, num_local):
    recipe = build_recipe("multicrop", method=method)
    assert recipe.num_global == 2 and len(recipe.views) == 2 + num_local
    assert recipe.sizes == (224, 224) + (96,) * num_local
    dino = build_recipe("multicrop").views
    blur_and_solarize = (dino[0].blur_prob, dino[1].blur_prob, dino[1].solarize_prob, dino[2].blur_prob)
    assert blur_and_solarize == (1.0, 0.1, 0.2, 0.5)
    assert (dino[0].min_scale, dino[2].min_scale, dino[2].max_scale) == (0.4, 0.05, 0.4)


def test_make_views__match_reference_views_in_distribution():
    images = smooth_images(b=300, h=40, w=40)
    recipe = build_recipe("byol", size=32)
    ours, theirs = make_views(images, recipe, gen()), reference_views(images, recipe, seed=0)
    for view, (a, b) in enumerate(zip(ours, theirs)):
        for stat in (lambda v: v.mean(dim=(1, 2, 3)), lambda v: v.std(dim=1).mean(dim=(1, 2))):
            assert stats.ks_2samp(stat(a).numpy(), stat(b).numpy()).pvalue > 1e-3, view
        assert abs(is_gray(a).double().mean() - is_gray(b).double().mean()) < 0.1


def test_colour_stage__blur_strength_matches_reference_views_in_distribution():
    images = random_images(b=200, h=64, w=64)
    full = dict(min_scale=1.0, ratio=(1.0, 1.0), flip_prob=0.0)
    params = ViewParams(size=64, **full, **{**PLAIN, "blur_prob": 1.0})
    recipe = ViewRecipe(views=(params,), num_global=1)
    ours, theirs = make_views(images, recipe, gen())[0], reference_views(images, recipe, seed=0)[0]

    def roughness(v: torch.Tensor) -> np.ndarray:
        return (v[..., 1:] - v[..., :-1]).abs().mean(dim=(1, 2, 3)).numpy()

    assert stats.ks_2samp(roughness(ours), roughness(theirs)).pvalue > 1e-3


def test_normalize__matches_torchvision_normalize():
    x = torch.rand(2, 3, 5, 5, generator=gen())
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    assert torch.allclose(normalize(x, mean, std), TF.normalize(x, list(mean), list(std)), atol=1e-6)
    with pytest.raises(ValueError, match="3 values"):
        normalize(x, (0.5,), (0.5,))


# --- validation ----------------------------------------------------------------------------------


INVALID = [
    ("size", 0),
    ("min_scale", 0.0),
    ("max_scale", 1.5),
    ("flip_prob", 1.2),
    ("jitter_prob", -0.1),
    ("hue", 0.6),
    ("ratio", (2.0, 1.0)),
    ("blur_sigma", (0.0, 1.0)),
    ("solarize_threshold", 300),
    ("brightness", -1.0),
]


@pytest.mark.parametrize("field, value", INVALID)
def test_view_params__invalid_value_raises_an_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        ViewParams(**{"size": 8, field: value})


def test_view_recipe__rejects_num_global_outside_the_views():
    with pytest.raises(ValueError, match="num_global"):
        ViewRecipe(views=(ViewParams(size=8),), num_global=2)


def test_build_recipe__unknown_name_lists_the_allowed_names():
    with pytest.raises(ValueError, match="moco_v2") as info:
        build_recipe("mocov3")
    assert all(name in str(info.value) for name in RECIPES)


@pytest.mark.parametrize(
    "name, kwargs, field",
    [
        ("simclr", {"strength": 3.0}, "strength"),
        ("multicrop", {"method": "byol"}, "method"),
        ("multicrop", {"num_local": -1}, "num_local"),
        ("none", {"num_views": 0}, "num_views"),
    ],
)
def test_recipe_builders__reject_invalid_arguments_by_name(name, kwargs, field):
    with pytest.raises(ValueError, match=field):
        build_recipe(name, **kwargs)


def test_simclr__uses_the_papers_colour_distortion_scaled_by_strength():
    view = build_recipe("simclr", strength=0.5).views[0]
    got = (view.brightness, view.contrast, view.saturation, view.hue, view.jitter_prob, view.grayscale_prob)
    assert all(math.isclose(a, b) for a, b in zip(got, (0.4, 0.4, 0.4, 0.1, 0.8, 0.2)))
