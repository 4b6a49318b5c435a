"""Methods with ``gather=True`` on 2 gloo processes give the loss, the (DDP-averaged) parameter
gradients and the updated state (InstDisc's memory bank, NNCLR's support set) of one process on
the global batch. Methods run in training mode with their BatchNorm layers in eval mode, so BN
uses its running statistics on every rank (SyncBN is the trainer's job); the gathering, the
global sample ids, the gradient scaling and the state updates are what is tested."""

import os
import socket
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cl_core import build_backbone, build_method
from cl_core.distributed import all_ranks

WORLD, LOCAL = 2, 4
METHODS = {
    "simclr": {"hidden_dim": 16, "projection_dim": 8},
    "supcon": {"hidden_dim": 16, "projection_dim": 8},
    "barlow_twins": {"projector_dim": 16},
    "vicreg": {"expander_dim": 16},
    "moco_v3": {"hidden_dim": 16, "projection_dim": 8, "temperature": 0.2},
    "instdisc": {"projection_dim": 8, "bank_size": 16, "num_negatives": 8},
}
#: Methods whose gathered state must match one process's (buffer names); NNCLR's loss uses the
#: local batch as candidates by design, so only its support set is compared.
STATE = {"instdisc": ("bank.values", "bank.seen", "bank.draws"), "nnclr": ("queue.values", "queue.ptr")}
STATE_ONLY = {"nnclr": {"hidden_dim": 16, "projection_dim": 8, "predictor_hidden_dim": 16, "queue_size": 16}}


def _build(name: str, gather: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    params = METHODS.get(name) or STATE_ONLY[name]
    model = build_method(name, build_backbone("tiny_cnn", in_channels=3), gather=gather, **params)
    model.double().train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    return model


def _inputs(name: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Views (global batch) and targets: labels, or InstDisc's dataset indices (distinct)."""
    g = torch.Generator().manual_seed(1)
    views = [torch.randn(WORLD * LOCAL, 3, 12, 12, generator=g, dtype=torch.float64) for _ in range(2)]
    if name == "instdisc":
        return views, torch.tensor([3, 9, 0, 14, 7, 2, 11, 5])
    return views, torch.tensor([0, 1, 0, 2, 1, 1, 2, 0])


def _state(name: str, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    buffers = dict(model.named_buffers())
    return {key: buffers[key].clone() for key in STATE.get(name, ())}


def _loss_and_grads(model, views, targets) -> tuple[float, list[torch.Tensor]]:
    loss = model(views, targets).loss
    loss.backward()
    return float(loss.detach()), [
        p.grad.clone() for p in model.parameters() if p.requires_grad and p.grad is not None
    ]


def _worker(rank: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60))
    try:
        shard = slice(rank * LOCAL, (rank + 1) * LOCAL)
        for name in [*METHODS, *STATE_ONLY]:
            views, targets = _inputs(name)
            model = _build(name, True)
            loss, grads = _loss_and_grads(model, [v[shard] for v in views], targets[shard])
            loss_t = torch.tensor(loss, dtype=torch.float64)
            for t in [loss_t, *grads]:  # what DDP does: average over ranks
                dist.all_reduce(t)
                t /= WORLD
            out[f"{name}_{rank}"] = (float(loss_t), grads, _state(name, model))
        # A non-finite loss on rank 0 only: every rank must see it (the trainer's NaN check).
        out[f"all_ranks_{rank}"] = (all_ranks(torch.tensor(rank == 1)), all_ranks(torch.tensor(True)))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_rank_results() -> dict:
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(_free_port(), out), nprocs=WORLD, join=True)
        return dict(out)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_with_gather__matches_single_process_on_the_global_batch(name, two_rank_results):
    got_loss, got_grads, _ = two_rank_results[f"{name}_0"]
    views, targets = _inputs(name)
    loss, grads = _loss_and_grads(_build(name, False), views, targets)
    assert got_loss == pytest.approx(loss, rel=1e-9)
    assert len(got_grads) == len(grads)
    for got, want in zip(got_grads, grads):
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", sorted(STATE))
def test_gathered_state__is_one_process_state_on_every_rank(name, two_rank_results):
    """InstDisc's bank rows of both ranks' images, NNCLR's support set (rank 0's keys, then
    rank 1's): equal on the ranks and to one process's after the same global batch."""
    views, targets = _inputs(name)
    model = _build(name, True)
    model(views, targets)
    want = _state(name, model)
    written = want["bank.seen"].sum() if name == "instdisc" else want["queue.ptr"]
    assert written == WORLD * LOCAL  # the whole global batch went in
    for rank in range(WORLD):
        got = two_rank_results[f"{name}_{rank}"][2]
        assert got.keys() == want.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=1e-9, atol=1e-12, msg=f"rank {rank} {key}")


def test_all_ranks__is_false_on_every_rank_when_one_rank_says_false(two_rank_results):
    assert [two_rank_results[f"all_ranks_{r}"] for r in range(WORLD)] == [(False, True)] * WORLD
    assert all_ranks(torch.tensor(False)) is False and all_ranks(torch.tensor(True)) is True  # no group
