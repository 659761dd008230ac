"""Train a model and keep it: train (or fine-tune), evaluate, save the folder, index it.

The one place where a training run becomes a saved, registered model, shared by ``poisonlab
train`` and the experiment runners (whose poisoned and cached baseline models are saved the same
way). Every model folder gets a ``run.json`` (:mod:`poisonlab.provenance`: run id, time, versions,
commit, command line, the config as given) and one registry entry per run; a folder that holds a
run already is refused before any training unless ``overwrite=True``. Kept out of
:mod:`poisonlab.training`'s package namespace because it pulls in evaluation and reporting, which
plain training does not need.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poisonlab.data.dataset import Dataset
from poisonlab.evaluation import evaluate
from poisonlab.models.base import PoisonlabModel
from poisonlab.models.checkpoint import ModelCard, save_model
from poisonlab.models.store import ModelStore
from poisonlab.provenance import claim_run_dir, new_run_id, run_record, write_run_json
from poisonlab.reprs import concise_repr
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
    test_tta_accuracy : float or None
        The same with the test-time augmentation of the recipe
        (:meth:`~poisonlab.training.options.TrainConfig.test_time_augmentation`); None when the
        recipe has none or no test data was given.
    run_id : str
        The run's id, in ``run.json`` and in the registry.
    """

    result: TrainResult
    card: ModelCard
    path: Path
    test_accuracy: float | None
    run_id: str = ""
    test_tta_accuracy: float | None = None

    def __repr__(self) -> str:
        # the default would print the whole network and every epoch of the history
        return concise_repr(
            self,
            run_id=self.run_id,
            model_id=self.card.id,
            path=self.path,
            test_accuracy=self.test_accuracy,
            test_tta_accuracy=self.test_tta_accuracy,
        )


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
    overwrite: bool = False,
    given_config: Any = None,
    run_info: Mapping[str, Any] | None = None,
) -> TrainedModel:
    """Train (or fine-tune ``init``), evaluate on ``test_data``, save the folder and index it.

    The card's metrics hold ``test_accuracy`` (plain predictions) and, when the recipe trained
    with flips or shifts, ``test_tta_accuracy`` with the matching test-time augmentation (both
    from one pass over the test data).

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
        Index the saved model in ``store`` (default: the user's registry) as a new run.
    overwrite
        Replace a run already saved in ``out_dir``; without it such a folder is refused before
        training starts.
    given_config
        The config as the user gave it (a YAML file's contents, the command's options), for
        ``run.json``; default the resolved training config.
    run_info
        Further JSON-ready fields for ``run.json``.

    Returns
    -------
    TrainedModel

    Raises
    ------
    FileExistsError
        ``out_dir`` holds a run and ``overwrite`` is False.
    """
    claim_run_dir(out_dir, overwrite=overwrite)
    result = train(train_data, config, model=init, val_data=val_data, device=device, progress=progress)
    metrics: dict = {"train_seconds": round(result.seconds, 2), "epochs": config.epochs}
    if result.final_val_accuracy is not None:
        metrics["val_accuracy"] = result.final_val_accuracy
    test_acc = tta_acc = None
    if test_data is not None:
        tta = config.test_time_augmentation()
        evaluation = evaluate(result.model, test_data, device=device, tta=tta)
        test_acc, tta_acc = evaluation.accuracy, evaluation.tta_accuracy
        metrics["test_accuracy"] = test_acc
        if tta is not None:
            metrics["test_tta_accuracy"] = tta_acc
            metrics["tta"] = {"flip": tta.flip, "translate": tta.translate}
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
    run_id = _write_provenance(out_dir, card, train_data, config, given_config, run_info)
    if register:
        (store or ModelStore()).register(card, out_dir, run_id=run_id)
    return TrainedModel(
        result=result,
        card=card,
        path=Path(out_dir),
        test_accuracy=test_acc,
        run_id=run_id,
        test_tta_accuracy=tta_acc,
    )


def _write_provenance(
    out_dir: str | Path,
    card: ModelCard,
    data: Dataset,
    config: TrainConfig,
    given_config: Any,
    run_info: Mapping[str, Any] | None,
) -> str:
    """Write the model folder's ``run.json`` after the model itself; return the new run id."""
    resolved = config.model_dump(mode="json")
    extra = {"model_id": card.id, "parent_id": card.parent_id, "dataset": data.name}
    extra |= {"dataset_hash": data.content_hash, "train_config": resolved, "metrics": card.metrics}
    record = run_record(
        "train",
        config=resolved if given_config is None else given_config,
        run_id=new_run_id(),
        extra={**extra, **dict(run_info or {})},
    )
    write_run_json(out_dir, record)
    return str(record["run_id"])
