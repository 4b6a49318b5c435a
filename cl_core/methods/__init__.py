"""SSL methods. Adding one is one file plus one line in the import list below."""

from cl_core.methods import (  # noqa: F401  (explicit import list: each registers itself)
    barlow_twins,
    byol,
    cvrl,
    dino,
    instdisc,
    moco,
    moco_v3,
    nnclr,
    simclr,
    simsiam,
    supcon,
    swav,
    triplet,
    vicreg,
)
from cl_core.methods.base import Method, MethodOutput
from cl_core.methods.registry import available_methods, build_method, method_class, register_method

__all__ = ["Method", "MethodOutput", "available_methods", "build_method", "method_class", "register_method"]
