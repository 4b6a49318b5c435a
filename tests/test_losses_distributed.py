"""Two gloo processes on CPU give the same loss, gradients and statistics as one process on the
global batch (the check lightly lacked: issue #1977, a 1/world_size gradient bug).

Each rank holds 4 of the 8 samples (both views of each), embeds them with a shared linear
"encoder" W, computes its loss with ``gather=True`` and backpropagates; W.grad and the loss are
then averaged over ranks, as DDP does. The reference runs ``gather=False`` on the rows of both
ranks concatenated in rank order.
"""

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn import functional as F

from cl_core.losses import DINOLoss, barlow_twins_loss, info_nce, sinkhorn_knopp, swav_loss, vicreg_loss

WORLD, LOCAL, D_IN, D = 2, 4, 5, 6
TIMEOUT_S = 120.0
Tensors = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Case:
    """embed: (W, views of the shard, first global sample index) -> per-row tensors.
    run: (per-row tensors, gather) -> (loss or None, extra statistic or None).
    replicated: the extra is the same on every rank (else it is per row)."""

    embed: Callable[[torch.Tensor, Tensors, int], Tensors]
    run: Callable[[Tensors, bool], tuple[torch.Tensor | None, torch.Tensor | None]]
    replicated: bool = False


def _two_views(w: torch.Tensor, views: Tensors, offset: int) -> Tensors:
    return views[0] @ w, views[1] @ w  # (b, D) each


def _simclr_rows(w: torch.Tensor, views: Tensors, offset: int) -> Tensors:
    ids = torch.arange(views[0].shape[0]) + offset  # global sample ids
    return torch.cat([views[0] @ w, views[1] @ w]), torch.cat([ids, ids])  # (2b, D), (2b,)


def _three_crops(w: torch.Tensor, views: Tensors, offset: int) -> Tensors:
    return tuple(F.normalize(v @ w, dim=1) for v in views)  # 3 x (b, D)


def _dino(t: Tensors, gather: bool) -> tuple[torch.Tensor, torch.Tensor]:
    criterion = DINOLoss(D, gather=gather).double().train()
    criterion.center.copy_(torch.linspace(-0.5, 0.5, D))
    teacher = [2.0 * t[0].detach(), 2.0 * t[1].detach()]
    loss = criterion(list(t), teacher, 0.04)
    return loss, criterion.center.clone()


CASES = {
    "info_nce": Case(_simclr_rows, lambda t, g: (info_nce(t[0], t[1], 0.2, gather=g), None)),
    "barlow_twins": Case(_two_views, lambda t, g: (barlow_twins_loss(t[0], t[1], 5e-3, gather=g), None)),
    # scaled down so the variance hinge is active for some dimensions
    "vicreg": Case(_two_views, lambda t, g: (vicreg_loss(0.3 * t[0], 0.3 * t[1], gather=g), None)),
    "sinkhorn": Case(_three_crops, lambda t, g: (None, sinkhorn_knopp(t[0], 0.05, 3, gather=g))),
    "swav": Case(_three_crops, lambda t, g: (swav_loss(list(t), 2, 0.1, gather=g), None)),
    "dino": Case(_three_crops, _dino, replicated=True),
}


def _inputs() -> tuple[torch.Tensor, Tensors]:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(D_IN, D, generator=g, dtype=torch.float64)
    views = tuple(torch.randn(WORLD * LOCAL, D_IN, generator=g, dtype=torch.float64) for _ in range(3))
    return w, views


def _evaluate(case: Case, shards: list[tuple[int, Tensors]], gather: bool) -> dict[str, torch.Tensor | None]:
    """Embed each (first global sample index, views) shard, concatenate the rows in order, run
    the case; return the loss, W.grad and the extra statistic."""
    w = _inputs()[0].requires_grad_()
    parts = [case.embed(w, shard, first) for first, shard in shards]
    rows = tuple(torch.cat(columns) for columns in zip(*parts))
    loss, extra = case.run(rows, gather)
    if loss is not None:
        loss.backward()
    return {"loss": None if loss is None else loss.detach(), "grad": w.grad, "extra": extra}


def _shard(views: Tensors, rank: int) -> tuple[int, Tensors]:
    return rank * LOCAL, tuple(v[rank * LOCAL : (rank + 1) * LOCAL] for v in views)


def _mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x / WORLD


def _all_rows(x: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(x) for _ in range(WORLD)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60))
    try:
        views = _inputs()[1]
        results = {}
        for name, case in CASES.items():
            out = _evaluate(case, [_shard(views, rank)], gather=True)
            results[name] = {
                "loss": None if out["loss"] is None else _mean_over_ranks(out["loss"]),
                "grad": None if out["grad"] is None else _mean_over_ranks(out["grad"]),  # DDP's mean
                "extra": None if out["extra"] is None else _all_rows(out["extra"]),
            }
        if rank == 0:
            torch.save(results, Path(out_dir) / "results.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out_dir = tmp_path_factory.mktemp("gloo")
    ctx = mp.start_processes(
        _worker, args=(_free_port(), str(out_dir)), nprocs=WORLD, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + TIMEOUT_S
    while not ctx.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in ctx.processes:
                process.kill()
            pytest.fail(f"2-process gloo run did not finish within {TIMEOUT_S} s")
    return torch.load(out_dir / "results.pt")


@pytest.mark.parametrize("name", list(CASES))
def test_gather__two_gloo_ranks_match_one_process_on_the_global_batch(
    name: str, two_rank_results: dict
) -> None:
    case, got = CASES[name], two_rank_results[name]
    views = _inputs()[1]
    expected = _evaluate(case, [_shard(views, r) for r in range(WORLD)], gather=False)
    for key in ("loss", "grad"):
        assert (got[key] is None) == (expected[key] is None)
        if expected[key] is not None:
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6)
    if expected["extra"] is not None:
        reference = expected["extra"].repeat(WORLD, 1) if case.replicated else expected["extra"]
        torch.testing.assert_close(got["extra"], reference, rtol=0, atol=1e-6)


def test_gather__without_a_process_group_is_the_single_process_loss() -> None:
    views = _inputs()[1]
    for case in CASES.values():
        alone = _evaluate(case, [(0, views)], gather=True)
        plain = _evaluate(case, [(0, views)], gather=False)
        for key in ("loss", "grad", "extra"):
            if plain[key] is not None:
                torch.testing.assert_close(alone[key], plain[key])
