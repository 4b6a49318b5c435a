"""Training loops: one epoch of steps (used by Ray Train workers) and a single-process
pretrainer on a tensor dataset."""

from cl_core.training.loop import Batch, NonFiniteLossError, StepSchedules, train_steps, unwrap
from cl_core.training.pretrain import LabelledSplit, PretrainSettings, knn_monitor, pretrain

__all__ = [
    "Batch",
    "LabelledSplit",
    "NonFiniteLossError",
    "PretrainSettings",
    "StepSchedules",
    "knn_monitor",
    "pretrain",
    "train_steps",
    "unwrap",
]
