"""Instance discrimination with a memory bank: Wu et al., "Unsupervised Feature Learning via
Non-Parametric Instance Discrimination", arXiv 1805.01978; the bank's proximal update of PIRL
(Misra & van der Maaten, arXiv 1912.01991)."""

import torch
from torch import nn
from torch.nn import functional as F

from cl_core.distributed import gather_no_grad
from cl_core.losses import moco_loss
from cl_core.methods.base import Method, MethodOutput
from cl_core.methods.registry import register_method
from cl_core.modules import MemoryBank


@register_method("instdisc")
class InstDisc(Method):
    """Each image is its own class: its embedding is pulled to its memory-bank entry and pushed
    from ``num_negatives`` other entries (InfoNCE, the non-parametric softmax of paper eq. 2
    over the sampled entries, as PIRL's and MoCo's form of the NCE approximation of eq. 4-6).

    Needs the dataset index of each image (``needs_indices``: ``targets`` holds indices in
    ``[0, bank_size)``, not labels). Only the first view is used, as in the paper (one
    augmentation per image and step). PIRL's jigsaw branch is not implemented.

    Departures: one draw of ``num_negatives`` entries per step is shared by the batch (as MoCo's
    queue), where the official lemniscate code draws per sample; InfoNCE instead of NCE; an
    entry's first update writes the embedding (:class:`MemoryBank`), and until then the
    embedding itself (detached) stands in for it as the positive.

    Args:
        backbone: encoder with ``output_dim``.
        projection_dim: embedding dimension (paper: 128, a linear layer then L2 norm).
        bank_size: N, the number of training images (Fashion-MNIST: 60000).
        num_negatives: K entries drawn per step (paper: 4096).
        temperature: tau (paper: 0.07).
        bank_momentum: m of the bank update (paper and PIRL: 0.5).
        gather: update the bank with the embeddings of every rank (keeps the ranks' banks equal).
    """

    needs_indices = True

    def __init__(
        self,
        backbone: nn.Module,
        projection_dim: int = 128,
        bank_size: int = 60000,
        num_negatives: int = 4096,
        temperature: float = 0.07,
        bank_momentum: float = 0.5,
        gather: bool = False,
    ) -> None:
        super().__init__(backbone)
        self.projector = nn.Linear(self.feature_dim, projection_dim)
        self.bank = MemoryBank(bank_size, projection_dim, bank_momentum)
        self.num_negatives = num_negatives
        self.temperature = temperature
        self.gather = gather

    def forward(self, views: list[torch.Tensor], targets: torch.Tensor | None = None) -> MethodOutput:
        self.check_views(views, 1)
        if targets is None:
            raise ValueError("instdisc needs the dataset index of each image: pass targets (b,) indices")
        index = targets.to(self.bank.values.device, torch.long)  # (b,)
        v = F.normalize(self.projector(self.backbone(views[0])), dim=1)  # (b, projection_dim)
        # An entry not yet written holds a random vector: the embedding itself is its positive.
        positives = torch.where(self.bank.seen[index, None], self.bank.values[index], v.detach())  # (b, d)
        negatives = self.bank.values[self.bank.negative_indices(self.num_negatives, self.training)]  # (K, d)
        loss = moco_loss(v, positives, negatives, temperature=self.temperature)
        if self.training:
            if self.gather:
                self.bank.update(gather_no_grad(index), gather_no_grad(v))
            else:
                self.bank.update(index, v)
        return MethodOutput(loss, embeddings=v.detach())
