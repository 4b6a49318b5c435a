"""DINO: Caron et al., "Emerging Properties in Self-Supervised Vision Transformers",
arXiv 2104.14294."""

import torch
from torch import nn

from cl_core.losses import DINOLoss
from cl_core.methods.base import Method, MethodOutput
from cl_core.methods.registry import register_method
from cl_core.modules import ema_update, frozen_copy
from cl_core.modules.dino_head import DINOHead
from cl_core.modules.multicrop import encode_crops
from cl_core.optim.schedules import ema_momentum, teacher_temperature


@register_method("dino")
class DINO(Method):
    """Self-distillation: the student matches the centred, sharpened EMA teacher across crops.

    Views: the first ``num_global`` are global crops (seen by the teacher), the rest local.
    Defaults follow the official main_dino.py flags.

    Args:
        backbone: encoder with ``output_dim``.
        out_dim: prototypes K (official default 65536).
        hidden_dim: head MLP width (2048).
        bottleneck_dim: head bottleneck (256).
        num_global: number of global crops (2).
        base_momentum: teacher EMA momentum start (0.996), cosine to 1.
        student_temperature: 0.1.
        teacher_temperature: final teacher temperature (official flag default 0.04).
        warmup_teacher_temperature: start of the linear warmup (0.04).
        teacher_warmup_fraction: fraction of training spent warming up (official: 0 epochs).
        center_momentum: 0.9.
        freeze_last_layer_fraction: fraction of training with the last layer frozen (official:
            1 epoch; 0.01 = 1 of 100 epochs).
        gather: average the center over every rank.
    """

    sync_batchnorm_by_default = True  # official main_dino.py converts models with BN to SyncBN

    multi_crop = True
    may_skip_parameters = True

    def __init__(
        self,
        backbone: nn.Module,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_global: int = 2,
        base_momentum: float = 0.996,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.04,
        warmup_teacher_temperature: float = 0.04,
        teacher_warmup_fraction: float = 0.0,
        center_momentum: float = 0.9,
        freeze_last_layer_fraction: float = 0.01,
        gather: bool = False,
    ) -> None:
        super().__init__(backbone)
        self.head = DINOHead(self.feature_dim, out_dim, hidden_dim, bottleneck_dim)
        self.teacher_backbone = frozen_copy(self.backbone)
        self.teacher_head = frozen_copy(self.head)
        self.criterion = DINOLoss(out_dim, student_temperature, center_momentum, gather=gather)
        self.num_global = num_global
        self.base_momentum = base_momentum
        self.teacher_temps = (warmup_teacher_temperature, teacher_temperature, teacher_warmup_fraction)
        self.freeze_last_layer_fraction = freeze_last_layer_fraction

    def forward(self, views: list[torch.Tensor], targets: torch.Tensor | None = None) -> MethodOutput:
        self.check_views(views, max(2, self.num_global))
        progress = float(self.progress)
        freeze = progress < self.freeze_last_layer_fraction
        feats = encode_crops(self.backbone, views)  # n_crops x (b, feature_dim)
        embedded = [self.head.bottleneck(f) for f in feats]  # n_crops x (b, bottleneck_dim)
        student = [self.head.prototypes(h, freeze_last_layer=freeze) for h in embedded]  # n_crops x (b, K)
        with torch.no_grad():
            teacher_feats = encode_crops(self.teacher_backbone, views[: self.num_global])
            teacher = [self.teacher_head(f) for f in teacher_feats]  # num_global x (b, K)
        warmup_temp, temp, warmup_fraction = self.teacher_temps
        t_temp = teacher_temperature(progress, warmup_temp, temp, warmup_fraction)
        loss = self.criterion(student, teacher, t_temp)
        # The head's bottleneck is DINO's projector embedding (the K scores are prototype logits).
        metrics = {"teacher_temperature": t_temp}
        return MethodOutput(loss, metrics=metrics, embeddings=embedded[0].detach())

    def after_optimizer_step(self, progress: float) -> None:
        super().after_optimizer_step(progress)
        momentum = ema_momentum(self.base_momentum, progress)
        ema_update(self.teacher_backbone, self.backbone, momentum)
        ema_update(self.teacher_head, self.head, momentum)
