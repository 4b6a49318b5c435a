"""cl_core: self-supervised learning in pure PyTorch.

Losses, methods, backbones, view recipes, schedules, LARS, kNN / linear-probe evaluation and
a single-process trainer. Importable without Ray or MLflow.
"""

from cl_core.backbones import VIDEO_BACKBONES, available_backbones, build_backbone, memory_format
from cl_core.methods import Method, MethodOutput, available_methods, build_method, register_method

__all__ = [
    "VIDEO_BACKBONES",
    "Method",
    "MethodOutput",
    "available_backbones",
    "available_methods",
    "build_backbone",
    "build_method",
    "memory_format",
    "register_method",
]
__version__ = "0.1.0"
