"""What every method shares: its output type and the post-step hook contract."""

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class MethodOutput:
    """What ``forward`` returns.

    Attributes:
        loss: scalar to backpropagate.
        metrics: detached scalars for logging (names without a prefix, e.g. "loss_invariance").
        embeddings: detached (b, d) embeddings of the first view, used by collapse monitors.
    """

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    embeddings: torch.Tensor | None = None


class Method(nn.Module):
    """Base class: owns ``backbone`` (the encoder to export) and a ``progress`` buffer.

    Subclasses implement ``forward(views, targets=None) -> MethodOutput`` (DDP synchronises
    gradients in ``forward``, so the loss must come from it) and may override
    ``after_optimizer_step`` (EMA updates). ``progress`` in [0, 1] is the fraction of training
    done; it is a buffer so checkpoints carry it and schedules inside methods resume exactly.
    """

    #: methods that need labels in ``forward`` (SupCon) set this.
    needs_targets: bool = False
    #: methods whose ``forward`` takes each image's dataset index (0 <= index < N) in ``targets``
    #: instead of its label (InstDisc's memory bank) set this; the data pipelines then pass it.
    needs_indices: bool = False
    #: methods whose papers normalise over the global batch (SyncBN in the official code, or
    #: cross-replica BN on TPUs) set this: ``train.sync_batchnorm: null`` turns SyncBN on for them
    #: when training on several GPUs.
    sync_batchnorm_by_default: bool = False
    #: methods that accept global + local crops of different sizes (SwAV, DINO) set this.
    multi_crop: bool = False
    #: methods that leave some parameters out of the graph in some steps (frozen prototypes or
    #: last layer) set this; DDP then needs ``find_unused_parameters=True``.
    may_skip_parameters: bool = False
    #: methods whose views are clips (b, c, t, h, w) for a video backbone (CVRL) set this.
    video: bool = False

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("progress", torch.zeros((), dtype=torch.float64))

    @property
    def feature_dim(self) -> int:
        return int(self.backbone.output_dim)

    def after_optimizer_step(self, progress: float) -> None:
        """Called by the trainer after every optimizer step with the new training progress."""
        self.progress.fill_(progress)

    @staticmethod
    def check_views(views: list[torch.Tensor], minimum: int) -> None:
        """Raise a clear error when a method receives fewer views than it needs."""
        if len(views) < minimum:
            raise ValueError(f"expected at least {minimum} views, got {len(views)}")
