"""LARS against a loop re-derivation, schedules, parameter groups and the optimizer factory."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim import SGD, AdamW

from cl_core.optim import (
    LARS,
    build_optimizer,
    ema_momentum,
    ema_momentum_schedule,
    scale_lr,
    split_decay_groups,
    teacher_temperature,
    teacher_temperature_schedule,
    warmup_cosine,
    weight_decay_schedule,
)


def _reference_lars_step(p, g, v, lr, momentum, wd, eta, eps, exclude):
    """One LARS step on flat python lists, per arXiv 1708.03888 / Barlow Twins' LARS."""
    d = list(g) if exclude else [gi + wd * pi for gi, pi in zip(g, p)]
    if not exclude:
        p_norm = math.sqrt(sum(x * x for x in p))
        d_norm = math.sqrt(sum(x * x for x in d))
        if p_norm > 0 and d_norm > 0:
            d = [x * eta * p_norm / (d_norm + eps) for x in d]
    v = [momentum * vi + di for vi, di in zip(v, d)]
    return [pi - lr * vi for pi, vi in zip(p, v)], v


def test_lars__matches_loop_reference():
    gen = torch.Generator().manual_seed(0)
    shapes = [((3, 4), False), ((5,), False), ((4,), True), ((2, 3), True)]
    params = [nn.Parameter(torch.randn(s, generator=gen, dtype=torch.float64)) for s, _ in shapes]
    with torch.no_grad():
        params[1].zero_()  # zero norm: trust ratio 1
    lr, momentum, wd, eta, eps = 0.3, 0.9, 0.05, 0.02, 1e-8
    groups = [{"params": params[:2]}, {"params": params[2:], "lars_exclude": True}]
    optimizer = LARS(groups, lr=lr, momentum=momentum, weight_decay=wd, trust_coefficient=eta, eps=eps)
    ref = [(p.detach().flatten().tolist(), [0.0] * p.numel(), ex) for p, (_, ex) in zip(params, shapes)]
    for _ in range(5):
        grads = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        optimizer.step()
        ref = [
            (*_reference_lars_step(rp, g.flatten().tolist(), rv, lr, momentum, wd, eta, eps, ex), ex)
            for (rp, rv, ex), g in zip(ref, grads)
        ]
        for p, (rp, _, _) in zip(params, ref):
            torch.testing.assert_close(p.detach().flatten(), torch.tensor(rp, dtype=torch.float64))


def test_lars__excluded_group_equals_sgd_with_momentum_without_weight_decay():
    gen = torch.Generator().manual_seed(1)
    init = torch.randn(6, generator=gen)
    a, b = nn.Parameter(init.clone()), nn.Parameter(init.clone())
    lars = LARS([{"params": [a], "lars_exclude": True}], lr=0.1, momentum=0.9, weight_decay=0.5)
    sgd = SGD([b], lr=0.1, momentum=0.9)
    for _ in range(4):
        grad = torch.randn(6, generator=gen)
        a.grad, b.grad = grad.clone(), grad.clone()
        lars.step()
        sgd.step()
    torch.testing.assert_close(a.detach(), b.detach())
    with pytest.raises(ValueError, match="lr"):
        LARS([a], lr=-1.0)


def test_warmup_cosine__warmup_endpoints_and_monotonic():
    s = warmup_cosine(1.0, 0.0, total_steps=20, warmup_steps=5, warmup_start=0.1)
    assert s.shape == (20,) and s.dtype == np.float64
    assert s[0] == 0.1 and s[5] == 1.0
    assert np.all(np.diff(s[:6]) > 0) and np.all(np.diff(s[5:]) < 0)


def test_warmup_cosine__cosine_endpoints_are_exactly_base_and_final():
    s = warmup_cosine(0.3, 0.1, total_steps=7)
    assert len(s) == 7 and s[0] == 0.3 and s[-1] == 0.1
    assert s[3] == pytest.approx(0.2)  # cosine midpoint
    assert warmup_cosine(0.5, 0.0, total_steps=1).tolist() == [0.5]


@pytest.mark.parametrize(
    "kwargs", [dict(total_steps=0), dict(total_steps=5, warmup_steps=6), dict(total_steps=5, warmup_steps=-1)]
)
def test_warmup_cosine__bad_args_raise(kwargs):
    with pytest.raises(ValueError):
        warmup_cosine(1.0, 0.0, **kwargs)


def test_ema_momentum__base_at_start_final_at_end_and_schedule_matches():
    assert ema_momentum(0.996, 0.0) == pytest.approx(0.996, abs=1e-15)
    assert ema_momentum(0.996, 1.0) == 1.0
    assert ema_momentum(0.9, 0.5, final=0.99) == pytest.approx(0.945)
    s = ema_momentum_schedule(0.99, 10)
    assert s.shape == (10,) and np.all(np.diff(s) > 0)
    assert all(s[i] == ema_momentum(0.99, i / 10) for i in range(10))
    with pytest.raises(ValueError):
        ema_momentum(0.996, 1.5)


def test_teacher_temperature__linear_warmup_then_constant():
    assert teacher_temperature(0.0, 0.04, 0.07, 0.3) == pytest.approx(0.04)
    assert teacher_temperature(0.15, 0.04, 0.07, 0.3) == pytest.approx(0.055)
    assert teacher_temperature(0.3, 0.04, 0.07, 0.3) == 0.07
    assert teacher_temperature(1.0, 0.04, 0.07, 0.3) == 0.07
    assert teacher_temperature(0.0, 0.04, 0.07, 0.0) == 0.07
    s = teacher_temperature_schedule(10, 0.04, 0.07, 0.3)
    assert all(s[i] == teacher_temperature(i / 10, 0.04, 0.07, 0.3) for i in range(10))
    with pytest.raises(ValueError):
        teacher_temperature(0.5, warmup_fraction=1.5)


def test_scale_lr__rules():
    assert scale_lr(0.3, 4096) == pytest.approx(4.8)
    assert scale_lr(0.3, 512, reference_batch=128) == pytest.approx(1.2)
    assert scale_lr(0.075, 4096, rule="sqrt") == pytest.approx(4.8)
    assert scale_lr(0.1, 4096, rule="none") == 0.1
    with pytest.raises(ValueError, match="linear, sqrt, none"):
        scale_lr(0.1, 256, rule="cubic")
    with pytest.raises(ValueError):
        scale_lr(0.1, 0)


def _small_model() -> nn.Module:
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    model[2].weight.requires_grad_(False)  # frozen: skipped
    return model


def test_split_decay_groups__biases_and_norms_get_no_decay():
    model = _small_model()
    decay, no_decay = split_decay_groups(model, 0.1)
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(decay["params"]) == {id(model[0].weight)}
    assert ids(no_decay["params"]) == ids([model[0].bias, model[1].weight, model[1].bias, model[2].bias])
    assert (decay["weight_decay"], decay["lars_exclude"]) == (0.1, False)
    assert (no_decay["weight_decay"], no_decay["lars_exclude"]) == (0.0, True)
    trainable = sum(p.requires_grad for p in model.parameters())
    assert len(decay["params"]) + len(no_decay["params"]) == trainable == 5


@pytest.mark.parametrize("name, cls", [("lars", LARS), ("sgd", SGD), ("adamw", AdamW)])
def test_build_optimizer__builds_each_optimizer_over_the_groups(name, cls):
    model = _small_model()
    optimizer = build_optimizer(model, name, lr=0.1, weight_decay=0.01)
    assert isinstance(optimizer, cls)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]
    model(torch.randn(8, 4)).pow(2).mean().backward()
    optimizer.step()


def test_build_optimizer__unknown_name_lists_allowed_values():
    with pytest.raises(ValueError, match="lars, sgd, adamw"):
        build_optimizer(_small_model(), "adam", lr=0.1, weight_decay=0.0)


def test_weight_decay_schedule__cosine_from_base_to_final_or_none_when_fixed():
    schedule = weight_decay_schedule(0.04, 0.4, 11)
    assert schedule[0] == 0.04 and schedule[-1] == 0.4
    assert schedule[5] == pytest.approx((0.04 + 0.4) / 2)  # the cosine's midpoint
    assert np.all(np.diff(schedule) > 0)
    assert weight_decay_schedule(0.04, None, 11) is None
