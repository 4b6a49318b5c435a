"""DINO self-distillation loss with a centred, sharpened teacher."""

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cl_core.distributed import all_reduce_sum, world_size


class DINOLoss(nn.Module):
    """DINO: Caron et al., arXiv 2104.14294, eq. 3 and Algorithm 1; official dino ``DINOLoss``.

    Cross-entropy between the centred, sharpened teacher distribution of each global crop and
    the student distribution of every other crop, averaged over those pairs. The ``center``
    buffer is an EMA of the teacher's batch mean, updated after the loss in training mode.

    Args:
        out_dim: K, the head's output dimension.
        student_temperature: tau_s (0.1).
        center_momentum: m in ``center = m * center + (1 - m) * batch_mean`` (0.9).
        gather: the batch mean for the center is taken over every rank.
    """

    center: Tensor

    def __init__(
        self,
        out_dim: int,
        student_temperature: float = 0.1,
        center_momentum: float = 0.9,
        gather: bool = False,
    ) -> None:
        super().__init__()
        self.student_temperature = student_temperature
        self.center_momentum = center_momentum
        self.gather = gather
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(
        self, student_outputs: list[Tensor], teacher_outputs: list[Tensor], teacher_temperature: float
    ) -> Tensor:
        """Loss over (teacher crop i, student crop v != i) pairs.

        Args:
            student_outputs: one (b, K) per crop, global crops first.
            teacher_outputs: one (b, K) per global crop.
            teacher_temperature: tau_t for this step (a schedule, 0.04 to 0.07).

        Returns:
            Scalar loss.
        """
        with torch.no_grad():
            center = self.center.to(teacher_outputs[0].dtype)  # (1, K)
            teacher = [F.softmax((t - center) / teacher_temperature, dim=1) for t in teacher_outputs]
        student = [F.log_softmax(s / self.student_temperature, dim=1) for s in student_outputs]
        terms = [
            -(t * s).sum(dim=1).mean()  # (b,) -> ()
            for i, t in enumerate(teacher)
            for v, s in enumerate(student)
            if v != i
        ]
        loss = torch.stack(terms).mean()
        if self.training:
            self.update_center(teacher_outputs)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_outputs: list[Tensor]) -> None:
        """EMA of the teacher batch mean (official ``update_center``)."""
        teacher = torch.cat(teacher_outputs).to(self.center.dtype)  # (n_global * b, K)
        total = teacher.sum(dim=0, keepdim=True)  # (1, K)
        count = teacher.shape[0]
        if self.gather:
            total, count = all_reduce_sum(total), count * world_size()
        self.center.mul_(self.center_momentum).add_(total / count, alpha=1 - self.center_momentum)
