"""Training: one :func:`train` function, typed configs and presets."""

from poisonlab.training.config import (
    PRESETS,
    AugmentConfig,
    LookaheadConfig,
    ModelConfig,
    TrainConfig,
    airbench_recipe,
    chapter_fast_recipe,
    chapter_finetune,
    chapter_recipe,
    default_recipe,
    digits_recipe,
    fast_recipe,
    load_train_config,
    resolve_train_config,
)
from poisonlab.training.loop import EpochStats, TrainResult, train

__all__ = [
    "PRESETS",
    "AugmentConfig",
    "EpochStats",
    "LookaheadConfig",
    "ModelConfig",
    "TrainConfig",
    "TrainResult",
    "airbench_recipe",
    "chapter_fast_recipe",
    "chapter_finetune",
    "chapter_recipe",
    "default_recipe",
    "digits_recipe",
    "fast_recipe",
    "load_train_config",
    "resolve_train_config",
    "train",
]
