"""Frozen-feature evaluation: feature extraction, weighted kNN, linear probe."""

from cl_core.evaluation.features import extract_features
from cl_core.evaluation.knn import knn_predict, knn_top1
from cl_core.evaluation.linear_probe import linear_probe_top1

__all__ = ["extract_features", "knn_predict", "knn_top1", "linear_probe_top1"]
