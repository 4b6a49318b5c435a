"""MLP projection / prediction heads."""

from torch import nn


def projection_mlp(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    num_layers: int = 2,
    norm_layer: type[nn.Module] | None = nn.BatchNorm1d,
    last_norm: nn.Module | None = None,
) -> nn.Sequential:
    """Linear -> norm -> ReLU blocks followed by a last Linear (and optional last norm).

    Args:
        in_dim: input features.
        hidden_dim: width of the hidden layers.
        out_dim: output features.
        num_layers: number of Linear layers (>= 1).
        norm_layer: normalisation class after each hidden Linear, or None.
        last_norm: a module applied after the last Linear (SimSiam's BN without affine).

    Returns:
        The head, mapping (b, in_dim) to (b, out_dim).
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers.append(nn.Linear(dim, hidden_dim, bias=norm_layer is None))
        if norm_layer is not None:
            layers.append(norm_layer(hidden_dim))
        layers.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=last_norm is None))
    if last_norm is not None:
        layers.append(last_norm)
    return nn.Sequential(*layers)
