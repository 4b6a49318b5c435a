"""Frozen-feature and fine-tuning evaluation: features, weighted kNN, linear probe, label subsets."""

from cl_core.evaluation.features import extract_features
from cl_core.evaluation.finetune import FineTuneSettings, fine_tune_top1
from cl_core.evaluation.knn import knn_predict, knn_top1
from cl_core.evaluation.linear_probe import ProbeResult, linear_probe, linear_probe_top1
from cl_core.evaluation.subsets import balanced_subset

__all__ = [
    "FineTuneSettings",
    "ProbeResult",
    "balanced_subset",
    "extract_features",
    "fine_tune_top1",
    "knn_predict",
    "knn_top1",
    "linear_probe",
    "linear_probe_top1",
]
