"""Linear probe on frozen features: multinomial logistic regression fitted with full-batch L-BFGS.

The protocol of SimCLR's transfer evaluation (arXiv 2002.05709, appendix "Transfer learning":
an L2-regularised multinomial logistic regression optimised with L-BFGS on frozen features) and
CLIP's linear probes (arXiv 2103.00020, appendix A.3: sklearn's L-BFGS logistic regression).
Fitting to convergence keeps the result independent of an LR schedule.
"""

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def _standardise(train: Tensor, test: Tensor) -> tuple[Tensor, Tensor]:
    mean = train.mean(dim=0, keepdim=True)  # (1, d)
    std = train.std(dim=0, unbiased=False, keepdim=True).clamp_min(1e-6)  # (1, d)
    return (train - mean) / std, (test - mean) / std


def _objective(head: nn.Linear, x: Tensor, y: Tensor, weight_decay: float, batch_size: int) -> Tensor:
    """Mean cross-entropy + ``weight_decay / 2 * ||W||^2``; gradients accumulated chunk by chunk."""
    total = x.new_zeros(())
    for start in range(0, x.shape[0], batch_size):
        logits = head(x[start : start + batch_size])  # (b, C)
        loss = F.cross_entropy(logits, y[start : start + batch_size], reduction="sum") / x.shape[0]
        loss.backward()
        total += loss.detach()
    penalty = 0.5 * weight_decay * head.weight.pow(2).sum()  # bias not penalised
    penalty.backward()
    return total + penalty.detach()


def linear_probe_top1(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int | None = None,
    epochs: int = 100,
    lr: float = 1.0,
    weight_decay: float = 1e-4,
    batch_size: int = 65536,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> float:
    """Fit ``nn.Linear(d, C)`` on standardised train features and return top-1 on the test split.

    Features are standardised with the train split's per-dimension mean and std. The objective,
    mean cross-entropy + ``weight_decay / 2 * ||W||^2`` (bias unpenalised), is sklearn's
    ``LogisticRegression(C=1 / (weight_decay * n))`` scaled by ``1 / n``; L-BFGS with a strong
    Wolfe line search minimises it. Deterministic for a given ``seed`` on a given device.

    Args:
        train_features: (n, d).
        train_labels: (n,) integers.
        test_features: (m, d).
        test_labels: (m,) integers.
        num_classes: C; default one more than the largest label in either split.
        epochs: L-BFGS iterations (each a full pass over the train split, plus line-search passes).
        lr: L-BFGS initial step length (1 is the natural scale with a line search).
        weight_decay: L2 coefficient on the weight.
        batch_size: rows per forward chunk when accumulating the full-batch gradient (memory only).
        seed: seeds the initial weights.
        device: where the fit runs.

    Returns:
        Test top-1 accuracy in [0, 1].
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    x_train, x_test = _standardise(train_features.float().to(device), test_features.float().to(device))
    y_train = train_labels.long().to(device)
    head = _initial_head(x_train.shape[1], num_classes, seed).to(device)
    optimizer = torch.optim.LBFGS(
        head.parameters(), lr=lr, max_iter=epochs, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        return _objective(head, x_train, y_train, weight_decay, batch_size)

    optimizer.step(closure)
    with torch.no_grad():
        predictions = head(x_test).argmax(dim=1).cpu()  # (m,)
    return int((predictions == test_labels.cpu().long()).sum()) / test_labels.numel()


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of :func:`linear_probe`: test top-1, and what the held-out split chose."""

    top1: float
    weight_decay: float
    iterations: int
    val_top1: float


def linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int | None = None,
    val_fraction: float = 0.1,
    weight_decays: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
    max_iterations: int = 200,
    check_every: int = 10,
    patience: int = 3,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> ProbeResult:
    """Linear probe whose L2 strength and length are chosen on a held-out part of the train split.

    A class-balanced ``val_fraction`` of the train rows is held out; the rest is standardised (its
    own mean and std) and fitted as in :func:`linear_probe_top1` for each weight decay, with the
    held-out top-1 checked every ``check_every`` L-BFGS iterations and the fit stopped after
    ``patience`` checks without a gain (early stopping). The head with the best held-out top-1
    (ties: fewer iterations, then the smaller weight decay) is scored once on the test split.
    The test split never takes part in a choice.
    """
    from cl_core.evaluation.subsets import balanced_subset

    if not 0.0 < val_fraction < 1.0 or check_every < 1 or max_iterations < check_every:
        raise ValueError(
            f"need 0 < val_fraction < 1 and 1 <= check_every <= max_iterations, "
            f"got {val_fraction}, {check_every}, {max_iterations}"
        )
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    val = torch.zeros(train_labels.numel(), dtype=torch.bool)
    val[balanced_subset(train_labels, val_fraction, seed)] = True
    x_fit, x_val = _standardise(
        train_features[~val].float().to(device), train_features[val].float().to(device)
    )
    _, x_test = _standardise(train_features[~val].float().to(device), test_features.float().to(device))
    y_fit, y_val = train_labels[~val].long().to(device), train_labels[val].long().cpu()

    best: tuple[float, int, float, dict] | None = None  # (val top-1, -iterations, -wd, head state)
    for wd in weight_decays:
        head = _initial_head(x_fit.shape[1], num_classes, seed).to(device)
        optimizer = torch.optim.LBFGS(
            head.parameters(), lr=1.0, max_iter=check_every, history_size=20, line_search_fn="strong_wolfe"
        )
        stale = 0
        for done in range(check_every, max_iterations + 1, check_every):
            optimizer.step(lambda: _closure(optimizer, head, x_fit, y_fit, wd))
            with torch.no_grad():
                top1 = float((head(x_val).argmax(dim=1).cpu() == y_val).float().mean())
            key = (top1, -done, -wd)
            if best is None or key > best[:3]:
                best = (*key, {k: v.clone() for k, v in head.state_dict().items()})
                stale = 0
            else:
                stale += 1
                if stale >= patience:
                    break
    assert best is not None
    head = nn.Linear(x_fit.shape[1], num_classes).to(device)
    head.load_state_dict(best[3])
    with torch.no_grad():
        predictions = head(x_test).argmax(dim=1).cpu()  # (m,)
    top1 = int((predictions == test_labels.cpu().long()).sum()) / test_labels.numel()
    return ProbeResult(top1=top1, weight_decay=-best[2], iterations=-best[1], val_top1=best[0])


def _initial_head(dim: int, num_classes: int, seed: int) -> nn.Linear:
    generator = torch.Generator().manual_seed(seed)
    head = nn.Linear(dim, num_classes)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.01)
        head.bias.zero_()
    return head


def _closure(
    optimizer: torch.optim.Optimizer, head: nn.Linear, x: Tensor, y: Tensor, weight_decay: float
) -> Tensor:
    optimizer.zero_grad(set_to_none=True)
    return _objective(head, x, y, weight_decay, 65536)
