"""Train a model and keep it: train (or fine-tune), evaluate, save the folder, index it.

The one place where a training run becomes a saved, registered model, shared by ``poisonlab
train`` and the experiment runners (whose poisoned and cached baseline models are saved the same
way). Kept out of :mod:`poisonlab.training`'s package namespace because it pulls in evaluation
and reporting, which plain training does not need.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from poisonlab.data.dataset import Dataset
from poisonlab.evaluation import evaluate
from poisonlab.models.base import PoisonlabModel
from poisonlab.models.checkpoint import ModelCard, save_model
from poisonlab.models.store import ModelStore
from poisonlab.training.config import TrainConfig
from poisonlab.training.loop import TrainResult, train

__all__ = ["TrainedModel", "train_and_save"]


@dataclass(frozen=True)
class TrainedModel:
    """A finished training run and where its model was saved.

    Attributes
    ----------
    result : TrainResult
        The training run (model, history, seconds).
    card : ModelCard
        The saved ``model.json``.
    path : Path
        The model folder.
    test_accuracy : float or None
        Accuracy on the test data, when some was given.
    """

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
    """Train (or fine-tune ``init``), evaluate on ``test_data``, save the folder and index it.

    Parameters
    ----------
    train_data, config
        What to train on and how.
    out_dir
        The model folder to write (``weights.safetensors`` + ``model.json``).
    val_data, test_data
        Optional validation data (per-epoch accuracy) and test data (recorded in the card).
    init, parent_id
        A model to fine-tune and its id, recorded as the new model's parent.
    name, device, progress
        Registry name, torch device, progress bar.
    register, store
        Index the saved model in ``store`` (default: the user's registry).

    Returns
    -------
    TrainedModel
    """
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
