"""Clip augmentation: one augmentation per clip shared by its frames, different between the clips."""

import pytest
import torch

from cl_core.transforms import ClipRecipe, augment_clip_pair, augment_clips, batched


def _textured(n: int, c: int = 3, side: int = 48, seed: int = 0) -> torch.Tensor:
    """(n, c, side, side) uint8 images with structure everywhere (a crop/flip changes them)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, c, 6, 6, generator=g)
    smooth = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=False)
    return (smooth * 255).clamp(0, 255).round().to(torch.uint8)


def _still_clips(n: int, t: int, c: int = 3) -> torch.Tensor:
    """(n, t, c, 48, 48): every clip repeats one image over its t frames."""
    return _textured(n, c)[:, None].expand(n, t, c, 48, 48).contiguous()


@pytest.mark.parametrize("channels", [3, 1])
def test_augment_clip_pair__frames_of_a_clip_share_one_augmentation(channels):
    clips = _still_clips(6, 5, channels)
    out_0, out_1 = augment_clip_pair(clips, None, ClipRecipe(size=24), torch.Generator().manual_seed(0))
    for out in (out_0, out_1):
        assert out.shape == (6, 5, channels, 24, 24) and out.dtype == torch.uint8
        assert torch.equal(out, out[:, :1].expand_as(out))  # all T frames identical


def test_augment_clip_pair__differs_between_clips_and_samples():
    out_0, out_1 = augment_clip_pair(
        _still_clips(6, 4), None, ClipRecipe(size=24), torch.Generator().manual_seed(0)
    )
    for i in range(6):
        assert not torch.equal(out_0[i], out_1[i])
    assert not torch.equal(out_0[0], out_0[1])


def test_augment_clip_pair__identity_recipe_returns_the_clips():
    recipe = ClipRecipe(
        size=48,
        min_scale=1.0,
        ratio=(1.0, 1.0),
        jitter_prob=0.0,
        grayscale_prob=0.0,
        blur_prob=(0.0, 0.0),
        solarize_prob=(0.0, 0.0),
        flip_prob=0.0,
    )
    clips = _still_clips(2, 3)
    out_0, out_1 = augment_clip_pair(clips, clips.clone(), recipe, torch.Generator().manual_seed(0))
    assert torch.equal(out_0, clips) and torch.equal(out_1, clips)


def test_augment_clip_pair__different_frames_get_the_same_ops():
    # The draws do not depend on pixel values: a clip (A, B) must give frame 0 as the clip
    # (A, A) and frame 1 as the clip (B, B) under the same seed.
    a, b = _textured(3, seed=1), _textured(3, seed=2)
    mixed, only_a, only_b = (
        torch.stack(pair, dim=1) for pair in ((a, b), (a, a), (b, b))
    )  # (3, 2, 3, 48, 48)
    recipe = ClipRecipe(size=24)
    outs = [
        augment_clip_pair(x, None, recipe, torch.Generator().manual_seed(3)) for x in (mixed, only_a, only_b)
    ]
    for clip in (0, 1):
        assert torch.equal(outs[0][clip][:, 0], outs[1][clip][:, 0])
        assert torch.equal(outs[0][clip][:, 1], outs[2][clip][:, 1])
        assert not torch.equal(outs[0][clip][:, 0], outs[0][clip][:, 1])


def test_augment_clip_pair__reproducible_from_a_seed():
    clips = _still_clips(4, 3)
    first = augment_clip_pair(clips, clips, ClipRecipe(size=24), torch.Generator().manual_seed(7))
    again = augment_clip_pair(clips, clips, ClipRecipe(size=24), torch.Generator().manual_seed(7))
    other = augment_clip_pair(clips, clips, ClipRecipe(size=24), torch.Generator().manual_seed(8))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])


def test_augment_clips__blur_and_solarize_follow_the_per_clip_probabilities():
    recipe = ClipRecipe(size=24)
    assert (recipe.views[0].blur_prob, recipe.views[1].blur_prob) == (1.0, 0.1)
    assert (recipe.views[0].solarize_prob, recipe.views[1].solarize_prob) == (0.0, 0.2)
    assert recipe.views[0].brightness == pytest.approx(0.8) and recipe.views[0].hue == pytest.approx(0.2)
    with pytest.raises(ValueError):
        augment_clips(torch.zeros(2, 3, 24, 24, dtype=torch.uint8), recipe.views[0], torch.Generator())
    with pytest.raises(ValueError):
        ClipRecipe(size=24, min_scale=0.0)


@pytest.mark.parametrize("chunk_frames", [1, 7, 10_000])  # per frame, chunks across clips, whole batch
@pytest.mark.parametrize("channels", [3, 1])
def test_augment_clips__colour_stage_in_chunks_of_frames_gives_the_whole_batch_result(
    monkeypatch, channels, chunk_frames
):
    g = torch.Generator().manual_seed(3)
    clips = torch.randint(0, 256, (5, 4, channels, 40, 40), dtype=torch.uint8, generator=g)  # distinct frames
    recipe = ClipRecipe(size=24)  # clip 0 always blurred, clip 1 may be solarised: every op runs
    monkeypatch.setattr(batched, "CPU_COLOUR_CHUNK_ELEMENTS", 10**9)
    whole = [augment_clips(clips, p, torch.Generator().manual_seed(1)) for p in recipe.views]
    monkeypatch.setattr(batched, "CPU_COLOUR_CHUNK_ELEMENTS", chunk_frames * channels * 24 * 24)
    for params, expected in zip(recipe.views, whole):
        assert torch.equal(augment_clips(clips, params, torch.Generator().manual_seed(1)), expected)
