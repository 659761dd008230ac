"""Library-level workflows the CLI (and later the service) call: train-and-save, load-and-evaluate.

They hold the orchestration so that the command-line layer stays a thin translation of options.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from poisonlab.data.dataset import Dataset
from poisonlab.evaluation import evaluate
from poisonlab.models.base import PoisonlabModel
from poisonlab.models.checkpoint import ModelCard, load_model, save_model
from poisonlab.models.store import ModelStore, resolve_model_path
from poisonlab.training import TrainConfig, TrainResult, default_recipe, load_train_config, train
from poisonlab.training.config import PRESETS, validate_train_settings


def resolve_train_config(
    *, dataset: str, config_path: str | Path | None = None, preset: str | None = None, **overrides: object
) -> TrainConfig:
    """A config file, else a named preset, else the dataset's default; then non-None overrides.

    ``overrides`` are top-level :class:`TrainConfig` fields (``epochs``, ``batch_size``, ``lr``,
    ``seed``, ...); ``arch`` sets ``model.arch``.
    """
    if config_path is not None and preset is not None:
        raise ValueError("give either a config file or a preset, not both")
    if config_path is not None:
        cfg = load_train_config(config_path)
    elif preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
        cfg = PRESETS[preset]()
    else:
        cfg = default_recipe(dataset)
    data = cfg.model_dump()
    arch = overrides.pop("arch", None)
    if arch is not None:
        data["model"]["arch"] = arch
    data.update({k: v for k, v in overrides.items() if v is not None})
    return validate_train_settings(data)


@dataclass(frozen=True)
class TrainedModel:
    result: TrainResult
    card: ModelCard
    path: Path
    test_accuracy: float | None


def train_and_save(
    train_data: Dataset,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    val_data: Dataset | None = None,
    test_data: Dataset | None = None,
    init: PoisonlabModel | None = None,
    parent_id: str | None = None,
    name: str | None = None,
    device: str = "auto",
    progress: bool = True,
    register: bool = True,
    store: ModelStore | None = None,
) -> TrainedModel:
    """Train (or fine-tune ``init``), evaluate on ``test_data``, save the folder and index it."""
    result = train(train_data, config, model=init, val_data=val_data, device=device, progress=progress)
    metrics: dict = {"train_seconds": round(result.seconds, 2), "epochs": config.epochs}
    if result.final_val_accuracy is not None:
        metrics["val_accuracy"] = result.final_val_accuracy
    test_acc = None
    if test_data is not None:
        test_acc = evaluate(result.model, test_data, device=device).accuracy
        metrics["test_accuracy"] = test_acc
    card = save_model(
        result.model,
        out_dir,
        class_names=train_data.class_names,
        name=name,
        train_config=config.model_dump(mode="json"),
        dataset_name=train_data.name,
        dataset_hash=train_data.content_hash,
        parent_id=parent_id,
        metrics=metrics,
    )
    if register:
        (store or ModelStore()).register(card, out_dir)
    return TrainedModel(result=result, card=card, path=Path(out_dir), test_accuracy=test_acc)


def load_model_ref(
    ref: str | Path, store: ModelStore | None = None
) -> tuple[PoisonlabModel, ModelCard, Path]:
    """Load a model from a folder path or a registry id / name; verifies its weights hash."""
    path = resolve_model_path(ref, store)
    model, card = load_model(path)
    return model, card, path


def check_model_fits(card: ModelCard, data: Dataset) -> None:
    """Raise ValueError unless ``data`` has the model's input shape and class names."""
    if tuple(card.input_shape) != tuple(data.image_shape):
        raise ValueError(
            f"model {card.id} expects images {tuple(card.input_shape)}, {data.name} has {data.image_shape}"
        )
    if tuple(card.class_names) != tuple(data.class_names):
        raise ValueError(
            f"model {card.id} classes {card.class_names} differ from {data.name}'s {list(data.class_names)}"
        )
