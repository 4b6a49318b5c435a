"""Sweep spaces (``tune_spaces/*.yaml``): loading and validation before any trial starts. Ray-free.

A space file names its base config, the metric and mode, the sample count, the ASHA settings
and the search space. Each space key is a config path with one domain::

    method.params.temperature: {loguniform: [0.05, 0.5]}   # also: uniform, randint [low, high)
    augment.params.strength: {choice: [0.25, 0.5, 1.0]}    # grid: every value in every sample
    recipe:                                                # *_set: a label, each option a mapping
      choice_set:                                          # of config paths set together
        - {method.name: simclr, augment.recipe: simclr}

Validation: every path must exist in the config (``method.params.*`` / ``augment.params.*`` are
free-form and checked by :func:`pipelines.config.validate.validate`), and every value the space can
produce must give a valid config: every combination of the discrete values and of both ends of
each continuous range is loaded with :func:`pipelines.config.load_config`.
"""

import difflib
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.config import ConfigError, ExperimentConfig, flatten, load_config, load_yaml, to_dict
from pipelines.config.load import find_config

DISCRETE = ("choice", "grid", "choice_set", "grid_set")
CONTINUOUS = ("uniform", "loguniform", "randint")
FREE_FORM = ("method.params.", "augment.params.")  # constructor keywords, checked by validate()
MAX_COMBINATIONS = 2000  # beyond this, each value is checked alone against the base config
SPACE_KEYS = (
    "base_config",
    "overrides",
    "metric",
    "mode",
    "num_samples",
    "scheduler",
    "max_concurrent_trials",
    "space",
)
SCHEDULER_KEYS = ("type", "max_t", "grace_period", "reduction_factor")


@dataclass(frozen=True)
class AshaSettings:
    """ASHA on ``train/epoch``: rungs at grace_period * reduction_factor^k up to max_t (epochs)."""

    max_t: int | None = None  # None: the config's train.epochs
    grace_period: int = 1
    reduction_factor: float = 2.0


@dataclass(frozen=True)
class SweepSpace:
    name: str
    base_config: Path
    space: dict[str, dict[str, Any]]  # config path (or *_set label) -> {domain: arguments}
    overrides: tuple[str, ...] = ()  # ``--set``-style, applied to the base config first
    metric: str = "eval/knn_top1"
    mode: str = "max"
    num_samples: int = 1
    scheduler: AshaSettings = field(default_factory=AshaSettings)
    max_concurrent_trials: int | None = None  # None: derived from cluster resources


def _unknown(path: str, allowed: list[str], where: str) -> ConfigError:
    return ConfigError(f"{where}: unknown key {path!r}; allowed keys: {', '.join(allowed)}")


def load_space(path: str | Path) -> SweepSpace:
    """Read a space file (strict keys; ``base_config`` relative to the file, the current directory,
    or a shipped config of that name)."""
    path = Path(path)
    raw = load_yaml(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    for key in raw:
        if key not in SPACE_KEYS:
            raise _unknown(key, list(SPACE_KEYS), str(path))
    for key in ("base_config", "space"):
        if key not in raw:
            raise ConfigError(f"{path}: {key} is required")
    sched = raw.get("scheduler") or {}
    for key in sched:
        if key not in SCHEDULER_KEYS:
            raise _unknown(key, list(SCHEDULER_KEYS), f"{path}: scheduler")
    if sched.get("type", "asha") != "asha":
        raise ConfigError(f"scheduler.type: {sched['type']!r} is not allowed; allowed values: asha")
    base = find_config(raw["base_config"], path.parent)
    if not isinstance(raw["space"], dict) or not raw["space"]:
        raise ConfigError(f"{path}: space must be a non-empty mapping of config path -> domain")
    return SweepSpace(
        name=path.stem,
        base_config=base,
        space=dict(raw["space"]),
        overrides=tuple(raw.get("overrides") or ()),
        metric=raw.get("metric", "eval/knn_top1"),
        mode=raw.get("mode", "max"),
        num_samples=raw.get("num_samples", 1),
        scheduler=AshaSettings(**{k: v for k, v in sched.items() if k != "type"}),
        max_concurrent_trials=raw.get("max_concurrent_trials"),
    )


def allowed_paths() -> list[str]:
    """Every config path (leaves and sections) of :class:`ExperimentConfig`."""
    leaves = flatten(to_dict(ExperimentConfig()))
    sections = {".".join(p.split(".")[:i]) for p in leaves for i in range(1, p.count(".") + 1)}
    return sorted(set(leaves) | sections)


def check_path(path: str, where: str) -> None:
    """Raise unless ``path`` exists in the config; the error lists nearby allowed keys."""
    allowed = allowed_paths()
    if path in allowed or (path.startswith(FREE_FORM) and path.count(".") >= 2):
        return
    section = path.rsplit(".", 1)[0] if "." in path else ""
    siblings = [
        p for p in allowed if section and p.startswith(section + ".") and p.count(".") == path.count(".")
    ]
    near = list(dict.fromkeys(difflib.get_close_matches(path, allowed, n=5, cutoff=0.6) + siblings))
    raise ConfigError(
        f"{where}: unknown config path {path!r}; nearby allowed keys: "
        f"{', '.join(near or [p for p in allowed if '.' not in p])}"
    )


def _domain(label: str, spec: Any) -> tuple[str, Any]:
    where = f"space.{label}"
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(
            f"{where}: expected one domain mapping, e.g. {{choice: [...]}}; allowed domains: "
            f"{', '.join(DISCRETE + CONTINUOUS)}"
        )
    kind, args = next(iter(spec.items()))
    if kind not in DISCRETE + CONTINUOUS:
        raise ConfigError(
            f"{where}: unknown domain {kind!r}; allowed domains: {', '.join(DISCRETE + CONTINUOUS)}"
        )
    if not isinstance(args, list) or not args:
        raise ConfigError(f"{where}.{kind}: expected a non-empty list, got {args!r}")
    if kind in CONTINUOUS:
        ok = len(args) == 2 and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)
        if not ok or not args[0] < args[1] or (kind == "loguniform" and args[0] <= 0):
            raise ConfigError(
                f"{where}.{kind}: expected [low, high] numbers with low < high"
                f"{' and low > 0' if kind == 'loguniform' else ''}, got {args!r}"
            )
    if kind.endswith("_set") and not all(isinstance(a, dict) and a for a in args):
        raise ConfigError(f"{where}.{kind}: each option must be a non-empty mapping of config path -> value")
    return kind, args


def domain_values(label: str, spec: Any) -> list[Any]:
    """The values to validate: every discrete value, both ends of a range (randint: high - 1)."""
    kind, args = _domain(label, spec)
    if kind == "randint":
        return [args[0], args[1] - 1]
    return list(args)


def trial_overrides(space: dict[str, dict[str, Any]], sampled: dict[str, Any]) -> list[str]:
    """``--set``-style overrides for one trial's sampled values (a ``*_set`` option expands).

    Args:
        space: ``SweepSpace.space`` (a plain dict: it crosses to the trial processes).
        sampled: label -> the trial's value (a mapping of paths for a ``*_set`` label).
    """
    out: list[str] = []
    for label, value in sampled.items():
        kind, _ = _domain(label, space[label])
        items = value.items() if kind.endswith("_set") else [(label, value)]
        out.extend(format_override(path, v) for path, v in items)
    return out


def format_override(path: str, value: Any) -> str:
    """``path=value`` with the value as flow YAML that reads back equal (1e-05 stays a float)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    text = text.removesuffix("...").strip()
    if load_yaml(text) != value:
        raise ConfigError(f"{path}: value {value!r} does not round-trip through YAML")
    return f"{path}={text}"


def _paths(label: str, spec: Any) -> list[str]:
    kind, args = _domain(label, spec)
    return sorted({p for option in args for p in option}) if kind.endswith("_set") else [label]


def _combinations(space: SweepSpace) -> list[dict[str, Any]]:
    """Every combination of the values to validate, or each value alone when there are too many."""
    values = {label: domain_values(label, spec) for label, spec in space.space.items()}
    total = 1
    for options in values.values():
        total *= len(options)
    if total <= MAX_COMBINATIONS:
        return [dict(zip(values, combo)) for combo in itertools.product(*values.values())]
    return [{label: v} for label, options in values.items() for v in options]


def validate_space(space: SweepSpace, overrides: list[str] | None = None) -> ExperimentConfig:
    """Check the space against its base config (plus ``overrides``); returns the base config.

    Raises:
        ConfigError: an unknown path (naming it and nearby allowed keys), a bad domain or
            setting, or a value of the space that gives an invalid config (naming the path).
    """
    overrides = list(space.overrides) + list(overrides or [])
    base = load_config(space.base_config, overrides)
    _validate_settings(space, base)
    for label, spec in space.space.items():
        for path in _paths(label, spec):
            check_path(path, f"space.{label}")
    for combo in _combinations(space):
        try:
            load_config(space.base_config, overrides + trial_overrides(space.space, combo))
        except ConfigError as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in combo.items())
            raise ConfigError(f"{exc} (space values: {shown})") from None
    return base


def _validate_settings(space: SweepSpace, base: ExperimentConfig) -> None:
    def require(ok: bool, path: str, message: str) -> None:
        if not ok:
            raise ConfigError(f"{space.name}: {path}: {message}")

    require(
        space.metric.startswith("eval/"),
        "metric",
        f"{space.metric!r} is not allowed: sweeps optimise an "
        "evaluation metric (eval/knn_top1, the video retrieval monitor), never the training loss",
    )
    require(space.mode in ("max", "min"), "mode", f"{space.mode!r} is not allowed; allowed values: max, min")
    require(
        isinstance(space.num_samples, int) and space.num_samples >= 1, "num_samples", "must be an int >= 1"
    )
    mct = space.max_concurrent_trials
    require(
        mct is None or (isinstance(mct, int) and mct >= 1), "max_concurrent_trials", "must be >= 1 or null"
    )
    sched, epochs = space.scheduler, base.train.epochs
    max_t = epochs if sched.max_t is None else sched.max_t
    require(
        isinstance(sched.grace_period, int) and 1 <= sched.grace_period <= max_t,
        "scheduler.grace_period",
        f"must be an int in [1, max_t={max_t}], got {sched.grace_period!r}",
    )
    require(max_t <= epochs, "scheduler.max_t", f"must be <= train.epochs ({epochs}), got {max_t}")
    require(
        sched.reduction_factor > 1, "scheduler.reduction_factor", f"must be > 1, got {sched.reduction_factor}"
    )
    if space.metric.startswith("eval/"):
        require(
            base.eval.every_epochs == 1,
            "eval.every_epochs",
            f"must be 1 so ASHA sees {space.metric} every epoch, got {base.eval.every_epochs}",
        )


def max_t(space: SweepSpace, base: ExperimentConfig) -> int:
    """ASHA's max_t in epochs (default: the base config's train.epochs)."""
    return base.train.epochs if space.scheduler.max_t is None else space.scheduler.max_t


def trial_count(space: SweepSpace) -> int:
    """Trials the sweep runs: ``num_samples`` times every combination of its grids (Tune's
    ``grid_search``; a ``choice`` or a range draws one value per sample)."""
    grids = [
        len(args) for dom in space.space.values() for d, args in dom.items() if d in ("grid", "grid_set")
    ]
    return space.num_samples * math.prod(grids)
