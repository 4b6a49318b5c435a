"""Experiment configuration: schema, strict loading, validation, and what a config means for the data."""

from pipelines.config.errors import ConfigError
from pipelines.config.load import apply_override, config_from_dict, flatten, load_config, load_yaml, to_dict
from pipelines.config.recipes import clip_recipe_from_config, normalization, recipe_from_config
from pipelines.config.schema import (
    AugmentConfig,
    BackboneConfig,
    CheckpointConfig,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    MethodConfig,
    PlacementConfig,
    ScalingConfig,
    TrackingConfig,
    TrainConfig,
    VideoConfig,
)

__all__ = [
    "AugmentConfig",
    "BackboneConfig",
    "CheckpointConfig",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "MethodConfig",
    "PlacementConfig",
    "ScalingConfig",
    "TrackingConfig",
    "TrainConfig",
    "VideoConfig",
    "apply_override",
    "clip_recipe_from_config",
    "config_from_dict",
    "flatten",
    "load_config",
    "load_yaml",
    "normalization",
    "recipe_from_config",
    "to_dict",
]
