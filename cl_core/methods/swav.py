"""SwAV: Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments", arXiv 2006.09882."""

import torch
from torch import nn
from torch.nn import functional as F

from cl_core.distributed import gather_no_grad
from cl_core.losses import swav_loss
from cl_core.methods.base import Method, MethodOutput
from cl_core.methods.registry import register_method
from cl_core.modules import FeatureQueue, projection_mlp
from cl_core.modules.multicrop import encode_crops


@register_method("swav")
class SwAV(Method):
    """Swapped prediction of Sinkhorn-Knopp codes over learnable prototypes, multi-crop.

    Views: the first ``num_assign`` are the global crops whose codes are predicted.
    Defaults follow the official main_swav.py flags.

    Args:
        backbone: encoder with ``output_dim``.
        hidden_dim: projector hidden width (2048).
        projection_dim: feature dim before the prototypes (128).
        num_prototypes: K (3000).
        num_assign: crops used for assignments (2).
        temperature: 0.1.
        epsilon: Sinkhorn regularisation (0.05).
        sinkhorn_iterations: 3.
        queue_length: stored embeddings per assigned crop, 0 for none (official: 3840 for
            small batches).
        queue_start_fraction: fraction of training before the queue is used (official: 15 of
            800 epochs ~ 0.02).
        freeze_prototypes_fraction: fraction of training with frozen prototypes (official:
            the first epoch; 0.01 = 1 of 100 epochs).
        gather: Sinkhorn sums and the queue over every rank.
    """

    sync_batchnorm_by_default = True  # official main_swav.py: --sync_bn pytorch (its default)

    multi_crop = True
    may_skip_parameters = True

    def __init__(
        self,
        backbone: nn.Module,
        hidden_dim: int = 2048,
        projection_dim: int = 128,
        num_prototypes: int = 3000,
        num_assign: int = 2,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        queue_length: int = 0,
        queue_start_fraction: float = 0.02,
        freeze_prototypes_fraction: float = 0.01,
        gather: bool = False,
    ) -> None:
        super().__init__(backbone)
        self.projector = projection_mlp(self.feature_dim, hidden_dim, projection_dim, num_layers=2)
        self.prototypes = nn.Linear(projection_dim, num_prototypes, bias=False)
        self._normalize_prototypes()
        self.queues = nn.ModuleList(
            [FeatureQueue(queue_length, projection_dim, init="zeros") for _ in range(num_assign)]
            if queue_length > 0
            else []
        )
        self.num_assign = num_assign
        self.loss_args = (temperature, epsilon, sinkhorn_iterations)
        self.queue_start_fraction = queue_start_fraction
        self.freeze_prototypes_fraction = freeze_prototypes_fraction
        self.gather = gather

    @torch.no_grad()
    def _normalize_prototypes(self) -> None:
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def forward(self, views: list[torch.Tensor], targets: torch.Tensor | None = None) -> MethodOutput:
        self.check_views(views, max(2, self.num_assign))
        progress = float(self.progress)
        z = [F.normalize(self.projector(f), dim=1) for f in encode_crops(self.backbone, views)]
        w = self.prototypes.weight  # (K, projection_dim)
        if progress < self.freeze_prototypes_fraction:
            w = w.detach()
        scores = [zi @ w.T for zi in z]  # n_crops x (b, K)
        queue_scores = None
        if (
            self.queues
            and progress >= self.queue_start_fraction
            and all(q.filled == q.size for q in self.queues)
        ):
            queue_scores = [q.values @ w.detach().T for q in self.queues]  # num_assign x (Q, K)
        temperature, epsilon, iterations = self.loss_args
        loss = swav_loss(scores, self.num_assign, temperature, epsilon, iterations, queue_scores, self.gather)
        if self.training:
            for queue, zi in zip(self.queues, z):
                queue.push(gather_no_grad(zi) if self.gather else zi)
        return MethodOutput(loss, embeddings=z[0].detach())

    def after_optimizer_step(self, progress: float) -> None:
        super().after_optimizer_step(progress)
        self._normalize_prototypes()  # official: normalised before every iteration
