"""Strict config loading: a YAML file plus ``--set a.b=value`` overrides -> :class:`ExperimentConfig`.

Unknown keys, wrong types and impossible values fail here, before any cluster work, with the key
path and the allowed values. Only plain dicts (``to_dict``) cross process boundaries.
"""

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from pipelines.config.errors import ConfigError
from pipelines.config.schema import ExperimentConfig
from pipelines.config.validate import validate


def _coerce(value: Any, annotation: Any, path: str) -> Any:
    """Check ``value`` against ``annotation`` (int -> float allowed), naming ``path``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], path)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        return _build(annotation, value, path + ".")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float, str, bool) and not (
        isinstance(value, annotation) and not (annotation is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{path}: expected {annotation.__name__}, got {value!r}")
    return value


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"unknown key {prefix}{unknown[0]}; allowed keys: {', '.join(names)}")
    return cls(**{k: _coerce(v, hints[k], prefix + k) for k, v in values.items()})


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain nested dicts (what crosses process boundaries)."""
    return dataclasses.asdict(config)


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (MLflow params, Tune paths)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


class _Loader(yaml.SafeLoader):
    """YAML as people write it: ``1e-3`` is a float (YAML 1.2), not the string PyYAML's YAML 1.1
    rules make of an exponent without a dot."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    """Parse YAML safely (no arbitrary objects), reading ``1e-3`` as a number."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


def apply_override(values: dict[str, Any], assignment: str) -> None:
    """Apply one ``a.b.c=value`` (value parsed as YAML) to nested ``values`` in place."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like key.path=value")
    path, raw = assignment.split("=", 1)
    keys = path.strip().split(".")
    node = values
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {path}: {key} is not a mapping")
    node[keys[-1]] = load_yaml(raw)


def config_from_dict(values: dict[str, Any]) -> ExperimentConfig:
    """Rebuild a config from ``to_dict`` output (inside workers: keys and types are checked,
    paths are not, since they may not exist on that node)."""
    return _build(ExperimentConfig, values)


_HERE = Path(__file__).resolve().parents[1]
#: The shipped experiments: package data in an installed wheel, the checkout's configs/ otherwise.
CONFIGS = next((p for p in (_HERE / "configs", _HERE.parent / "configs") if p.is_dir()), _HERE / "configs")
BASE_KEY = "base"  # a config file's parent: ``base: smoke.yaml`` (relative to the file, then CONFIGS)
REPLACED = (
    "method.params",
    "augment.params",
)  # keywords of one method / recipe: a child's replace the base's


def find_config(path: str | Path, relative_to: Path | None = None) -> Path:
    """``path`` as given (or relative to ``relative_to``), else the shipped config of that name.

    So ``configs/smoke.yaml`` works from a checkout and from an installed package alike.

    Raises:
        FileNotFoundError: neither exists; names the shipped configs.
    """
    path = Path(path).expanduser()
    candidates = [path] if path.is_absolute() else [(relative_to or Path.cwd()) / path, Path.cwd() / path]
    candidates.append(CONFIGS / path.name)
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        shipped = ", ".join(sorted(p.name for p in CONFIGS.glob("*.yaml")))
        raise FileNotFoundError(f"config {path} not found (shipped configs in {CONFIGS}: {shipped})")
    return found.resolve()


def merge(base: dict[str, Any], child: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``child`` over ``base``, mapping by mapping; ``REPLACED`` mappings are taken whole from ``child``."""
    out = dict(base)
    for key, value in child.items():
        path = prefix + key
        if isinstance(value, dict) and isinstance(out.get(key), dict) and path not in REPLACED:
            out[key] = merge(out[key], value, path + ".")
        else:
            out[key] = value
    return out


def read_config_file(path: str | Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's values with its ``base:`` chain merged in (the file's keys win).

    Raises:
        ConfigError: a top level that is not a mapping, or a ``base`` cycle.
    """
    path = find_config(path, seen[-1].parent if seen else None)
    if path in seen:
        raise ConfigError(f"{BASE_KEY}: {path} includes itself ({' -> '.join(map(str, (*seen, path)))})")
    loaded = load_yaml(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    base = loaded.pop(BASE_KEY, None)
    if base is None:
        return loaded
    if not isinstance(base, str):
        raise ConfigError(f"{path}: {BASE_KEY} must be a file name, got {base!r}")
    return merge(read_config_file(path.parent / base, (*seen, path)), loaded)


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, values: dict | None = None
) -> ExperimentConfig:
    """Load and validate a config: YAML file (with its ``base:`` chain) or ``values``, then
    ``overrides`` in order."""
    data: dict[str, Any] = dict(values or {})
    if path is not None:
        data = read_config_file(path)
    for assignment in overrides or []:
        apply_override(data, assignment)
    config = _build(ExperimentConfig, data)
    validate(config)
    return config
