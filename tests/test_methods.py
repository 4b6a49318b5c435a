"""Every registered method tests itself: build with the tiny backbone, forward, backward, the
post-step hook, and a state_dict round-trip that restores queues, centers and prototypes."""

import inspect

import pytest
import torch

from cl_core import available_methods, build_backbone, build_method
from cl_core.losses import info_nce, moco_v3_loss
from cl_core.methods import method_class, register_method
from cl_core.methods.base import Method
from cl_core.optim.schedules import ema_momentum

# Small sizes for any constructor argument of these names; a new method gets them for free.
SMALL = {
    "queue_size": 48,
    "queue_length": 24,
    "num_prototypes": 10,
    "out_dim": 40,
    "bank_size": 64,
    "num_negatives": 16,
}


def small_hparams(name: str) -> dict:
    params = inspect.signature(method_class(name).__init__).parameters
    hparams = {p: 16 for p in params if p.endswith("_dim")}
    hparams.update({p: v for p, v in SMALL.items() if p in params})
    if "queue_start_fraction" in params:
        hparams["queue_start_fraction"] = 0.0
    return hparams


def build(name: str, seed: int = 0) -> Method:
    torch.manual_seed(seed)
    backbone = "tiny_cnn3d" if method_class(name).video else "tiny_cnn"
    return build_method(name, build_backbone(backbone, in_channels=3), **small_hparams(name))


def make_views(method: Method, b: int = 8, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Two (b, 3, 16, 16) views (clips: (b, 3, 4, 16, 16)), plus two 8 px locals for multi-crop."""
    g = torch.Generator().manual_seed(seed)
    shape = (b, 3, 4, 16, 16) if method.video else (b, 3, 16, 16)
    views = [torch.randn(*shape, generator=g) for _ in range(2)]
    if method.multi_crop:
        views += [torch.randn(b, 3, 8, 8, generator=g) for _ in range(2)]
    targets = torch.arange(b) % 3
    return views, targets


def non_gradient_state(method: Method) -> dict[str, torch.Tensor]:
    """Buffers and frozen parameters: EMA targets, queues, centers, progress."""
    state = {k: v.detach().clone() for k, v in method.named_buffers()}
    state.update({k: p.detach().clone() for k, p in method.named_parameters() if not p.requires_grad})
    return state


def test_available_methods__lists_the_thirteen_image_methods_and_cvrl():
    expected = {"simclr", "moco", "byol", "simsiam", "swav", "dino", "vicreg", "barlow_twins", "supcon"}
    expected |= {"nnclr", "moco_v3", "instdisc", "triplet", "cvrl"}
    assert set(available_methods()) == expected


def test_register_method__rejects_a_second_registration_of_a_name():
    with pytest.raises(ValueError, match="already registered"):
        register_method("simclr")(type("Other", (Method,), {}))


def test_build_method__unknown_name_lists_allowed_names():
    with pytest.raises(ValueError, match="allowed: .*simclr"):
        build_method("simclrr", build_backbone("tiny_cnn"))


@pytest.mark.parametrize("name", available_methods())
def test_method__forward_backward_reaches_every_trainable_parameter(name):
    method = build(name)
    views, targets = make_views(method)
    out = method(views, targets)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    trainable = [(k, p) for k, p in method.named_parameters() if p.requires_grad]
    missing = [k for k, p in trainable if p.grad is None]
    # SwAV/DINO freeze prototypes / the last layer at progress 0 (paper: first epoch).
    allowed = {"prototypes.weight", "head.last_direction"}
    assert set(missing) <= allowed, missing
    assert out.embeddings is not None and out.embeddings.shape[0] == views[0].shape[0]


@pytest.mark.parametrize("name", available_methods())
def test_method__post_step_hook_moves_targets_and_queues_and_progress(name):
    method = build(name)
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5)
    method.after_optimizer_step(0.5)  # past SwAV/DINO's frozen first part
    before = non_gradient_state(method)
    views, targets = make_views(method)
    method(views, targets).loss.backward()
    optimizer.step()
    method.after_optimizer_step(0.75)
    after = non_gradient_state(method)
    assert float(after["progress"]) == 0.75
    moved: dict[str, bool] = {}
    for key in before:
        if key.endswith("ptr"):
            size = after[key.replace("ptr", "values")].shape[0]
            assert int(after[key]) == (int(before[key]) + views[0].shape[0]) % size
        prefix = key.split(".")[0]
        if prefix.startswith(("key_", "target_", "teacher_")) and before[key].is_floating_point():
            moved[prefix] = moved.get(prefix, False) or not torch.equal(before[key], after[key])
    # Every EMA target module moved (a bias feeding a BN can legitimately keep a zero gradient).
    assert all(moved.values()), moved


@pytest.mark.parametrize("name", available_methods())
def test_method__state_dict_round_trip_restores_every_tensor(name):
    trained = build(name, seed=0)
    optimizer = torch.optim.SGD([p for p in trained.parameters() if p.requires_grad], lr=0.1)
    for step in range(2):
        views, targets = make_views(trained, seed=step)
        trained(views, targets).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        trained.after_optimizer_step((step + 1) / 10)
    restored = build(name, seed=1)
    restored.load_state_dict(trained.state_dict())
    for (k, a), (_, b) in zip(trained.state_dict().items(), restored.state_dict().items()):
        assert torch.equal(a, b), k
    trained.eval(), restored.eval()
    views, targets = make_views(trained, seed=7)
    with torch.no_grad():
        torch.testing.assert_close(trained(views, targets).loss, restored(views, targets).loss)


def test_moco__queue_holds_the_normalised_keys_of_the_last_batch():
    method = build("moco")
    views, _ = make_views(method)
    method(views)
    keys = torch.nn.functional.normalize(method.key_projector(method.key_backbone(views[1])), dim=1)
    torch.testing.assert_close(method.queue.values[: views[0].shape[0]], keys)
    assert int(method.queue.ptr) == views[0].shape[0]


def test_moco__eval_mode_forward_leaves_the_queue_alone():
    method = build("moco").eval()
    before = method.queue.values.clone()
    method(make_views(method)[0])
    assert torch.equal(before, method.queue.values)


@pytest.mark.parametrize("name,target", [("byol", "target_backbone"), ("dino", "teacher_backbone")])
def test_ema_methods__target_follows_the_cosine_momentum_formula(name, target):
    method = build(name)
    online = [p.detach().clone() for p in method.backbone.parameters()]
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.add_(1.0)
    old = [p.detach().clone() for p in getattr(method, target).parameters()]
    method.after_optimizer_step(0.25)
    m = ema_momentum(method.base_momentum, 0.25)
    for t_old, o, t_new in zip(old, online, getattr(method, target).parameters()):
        torch.testing.assert_close(t_new, m * t_old + (1 - m) * (o + 1.0))


def test_cvrl__equals_info_nce_over_video_ids_of_both_clips():
    method = build("cvrl")
    views, _ = make_views(method, b=6)
    videos = torch.tensor([0, 1, 1, 2, 3, 3])  # two pairs each of videos 1 and 3
    method.eval()
    with torch.no_grad():
        z = method.projector(method.backbone(torch.cat(views)))
        expected = info_nce(z, videos.repeat(2), temperature=0.1)
        torch.testing.assert_close(method(views, videos).loss, expected)
        # Without ids every pair is its own video: SimCLR's NT-Xent ids.
        torch.testing.assert_close(
            method(views).loss, info_nce(z, torch.arange(6).repeat(2), temperature=0.1)
        )


def test_cvrl__rejects_image_views_with_a_shape_error():
    method = build("cvrl")
    with pytest.raises(RuntimeError):
        method([torch.randn(4, 3, 16, 16)] * 2)


def test_supcon__without_labels_raises_a_clear_error():
    method = build("supcon")
    with pytest.raises(ValueError, match="needs labels"):
        method(make_views(method)[0])


def test_swav__prototypes_stay_unit_norm_after_a_step():
    method = build("swav")
    optimizer = torch.optim.SGD(method.parameters(), lr=1.0)
    method.after_optimizer_step(0.5)  # past the freezing period
    views, _ = make_views(method)
    method(views).loss.backward()
    optimizer.step()
    method.after_optimizer_step(0.6)
    torch.testing.assert_close(method.prototypes.weight.norm(dim=1), torch.ones(10))


def test_swav__uses_the_queue_once_it_is_full():
    method = build("swav")
    method.after_optimizer_step(0.5)
    for seed in range(3):  # b = 8, queue_length = 24: full after 3 batches
        method(make_views(method, seed=seed + 1)[0])
    views, _ = make_views(method)
    assert all(int(q.filled) == q.size for q in method.queues)
    with_queue = method(views).loss
    method.queues = torch.nn.ModuleList()
    without_queue = method(views).loss
    assert not torch.allclose(with_queue, without_queue)


def test_nnclr__queue_holds_the_normalised_first_view_projections():
    method = build("nnclr")
    views, _ = make_views(method)
    method(views)
    with torch.no_grad():
        z1 = method.projector(method.backbone(torch.cat(views)))[: views[0].shape[0]]
    torch.testing.assert_close(method.queue.values[:8], torch.nn.functional.normalize(z1, dim=1))
    assert int(method.queue.filled) == 8


def test_moco_v3__loss_is_the_symmetric_sum_over_the_momentum_keys():
    method = build("moco_v3").eval()
    views, _ = make_views(method)
    with torch.no_grad():
        q1, q2 = (method.predictor(method.projector(method.backbone(v))) for v in views)
        k1, k2 = (method.key_projector(method.key_backbone(v)) for v in views)
        expected = moco_v3_loss(q1, k2, 1.0) + moco_v3_loss(q2, k1, 1.0)
        torch.testing.assert_close(method(views).loss, expected)


def test_instdisc__without_indices_raises_and_a_step_writes_the_bank_rows_of_its_indices():
    method = build("instdisc")
    views, _ = make_views(method)
    with pytest.raises(ValueError, match="dataset index"):
        method(views)
    index = torch.tensor([5, 9, 0, 63, 17, 2, 40, 33])
    before = method.bank.values.clone()
    out = method(views, index)
    untouched = torch.ones(64, dtype=torch.bool)
    untouched[index] = False
    torch.testing.assert_close(method.bank.values[index], out.embeddings)  # first visit: written
    assert torch.equal(method.bank.values[untouched], before[untouched])
    assert method.bank.seen.sum() == 8


def test_supcon__in_variant_changes_the_loss_and_a_bad_variant_raises():
    torch.manual_seed(0)
    backbone = build_backbone("tiny_cnn", in_channels=3)
    out_method = build_method("supcon", backbone, hidden_dim=16, projection_dim=16)
    in_method = build_method("supcon", backbone, hidden_dim=16, projection_dim=16, variant="in")
    in_method.load_state_dict(out_method.state_dict())
    views, targets = make_views(out_method)
    with torch.no_grad():  # training mode: batch statistics (at init, eval-mode outputs nearly coincide)
        assert float(in_method(views, targets).loss) < float(out_method(views, targets).loss)
    with pytest.raises(ValueError, match="variant"):
        build_method("supcon", backbone, variant="mid")


def test_triplet__rejects_an_unknown_mining():
    with pytest.raises(ValueError, match="mining"):
        build_method("triplet", build_backbone("tiny_cnn"), mining="easy")


def test_dino__embeddings_are_the_heads_normalised_bottleneck():
    method = build("dino")
    views, _ = make_views(method)
    out = method(views)
    assert out.embeddings.shape == (8, 16)  # bottleneck_dim
    torch.testing.assert_close(out.embeddings.norm(dim=1), torch.ones(8))


def test_sync_batchnorm_by_default__is_set_for_the_methods_whose_papers_use_global_bn():
    flagged = {m for m in available_methods() if method_class(m).sync_batchnorm_by_default}
    expected = {"moco", "moco_v3", "simclr", "byol", "nnclr", "simsiam", "swav", "dino", "vicreg"}
    assert flagged == expected | {"barlow_twins"}
