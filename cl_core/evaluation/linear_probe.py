"""Linear probe on frozen features: multinomial logistic regression fitted with full-batch L-BFGS.

The protocol of SimCLR's transfer evaluation (arXiv 2002.05709, appendix "Transfer learning":
an L2-regularised multinomial logistic regression optimised with L-BFGS on frozen features) and
CLIP's linear probes (arXiv 2103.00020, appendix A.3: sklearn's L-BFGS logistic regression).
Fitting to convergence keeps the result independent of an LR schedule.
"""

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
    generator = torch.Generator().manual_seed(seed)
    head = nn.Linear(x_train.shape[1], num_classes)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.01)
        head.bias.zero_()
    head.to(device)
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
