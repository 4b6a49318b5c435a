"""Self-supervised losses: stateless functions, plus small modules where state is needed."""

from cl_core.losses.barlow_twins import barlow_twins_loss
from cl_core.losses.dino import DINOLoss
from cl_core.losses.info_nce import info_nce
from cl_core.losses.moco import moco_loss
from cl_core.losses.moco_v3 import moco_v3_loss
from cl_core.losses.negative_cosine import negative_cosine
from cl_core.losses.nnclr import nearest_neighbour, nnclr_loss
from cl_core.losses.swav import sinkhorn_knopp, swav_loss
from cl_core.losses.triplet import mine_negatives, mined_triplet_loss, triplet_loss
from cl_core.losses.vicreg import vicreg_loss

__all__ = [
    "DINOLoss",
    "barlow_twins_loss",
    "info_nce",
    "mine_negatives",
    "mined_triplet_loss",
    "moco_loss",
    "moco_v3_loss",
    "nearest_neighbour",
    "negative_cosine",
    "nnclr_loss",
    "sinkhorn_knopp",
    "swav_loss",
    "triplet_loss",
    "vicreg_loss",
]
