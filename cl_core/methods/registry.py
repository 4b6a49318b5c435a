"""Method registry: one decorator; a second registration of a name raises."""

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

_REGISTRY: dict[str, type[nn.Module]] = {}
T = TypeVar("T", bound=type[nn.Module])


def register_method(name: str) -> Callable[[T], T]:
    """Class decorator that registers a method under ``name``."""

    def decorator(cls: T) -> T:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered by {_REGISTRY[name].__qualname__}")
        cls.method_name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def available_methods() -> list[str]:
    """Registered method names, sorted."""
    return sorted(_REGISTRY)


def method_class(name: str) -> type[nn.Module]:
    """The class registered under ``name``; an unknown name lists the allowed ones."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; allowed: {', '.join(available_methods())}")
    return _REGISTRY[name]


def build_method(name: str, backbone: nn.Module, **hparams: Any) -> nn.Module:
    """Build method ``name`` around ``backbone`` with keyword hyper-parameters.

    An unknown hyper-parameter raises ``TypeError`` naming it (from the constructor).
    """
    return method_class(name)(backbone, **hparams)
