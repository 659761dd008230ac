"""Models trained once and reused: the clean baseline and every model trained from scratch.

A matrix retrains a model per attack and per mitigation, a run retrains its clean baseline for
every config, and the clean-label benchmark pre-trains its surrogate; on a CPU each is minutes,
so each (training data, training config) pair is trained once and kept under
``$POISONLAB_HOME/baselines``. Several processes may share the folder (the workers of a grid on
Ray, :mod:`poisonlab.experiments.executor`): a model missing from the cache is trained under a
per-key file lock, so a second process that needs it meanwhile waits and loads it instead of
training it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from poisonlab.data.dataset import Dataset, Splits
from poisonlab.models.base import PoisonlabModel
from poisonlab.models.checkpoint import load_model, read_card, write_card
from poisonlab.models.store import ModelStore, poisonlab_home
from poisonlab.training.config import TrainConfig
from poisonlab.training.loop import TRAINING_REVISION
from poisonlab.training.save import train_and_save

__all__ = ["baseline_key", "cached_model", "clean_baseline"]


def baseline_key(train: Dataset, config: TrainConfig) -> str:
    """Cache key of a model: training data hash + full training config (incl. model) + the
    training code's :data:`~poisonlab.training.loop.TRAINING_REVISION`.

    Parameters
    ----------
    train
        The training set (its content hash is used, not its name).
    config
        The complete training config.

    Returns
    -------
    str
        16 hex digits.
    """
    fields = {
        "data": train.content_hash,
        "config": config.model_dump(mode="json"),
        "revision": TRAINING_REVISION,
    }
    blob = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_model(
    splits: Splits,
    config: TrainConfig,
    *,
    device: str,
    progress: bool,
    name: str,
    cache_dir: Path | None = None,
) -> tuple[PoisonlabModel, str, list, bool]:
    """The model trained from scratch on ``splits.train`` with ``config``, trained once and reused.

    Models are cached under ``$POISONLAB_HOME/baselines/<key>`` where the key hashes the training
    data and the full config (:func:`baseline_key`), so a clean baseline, a poisoned model or a
    model retrained after mitigation is each trained only once.

    Parameters
    ----------
    splits
        Training data (``train``), validation data for the history, test data for the card.
    config
        The training config.
    device, progress
        Torch device and progress bar of a training run.
    name
        Registry name of a newly trained model.
    cache_dir
        Where models are kept (default ``$POISONLAB_HOME/baselines``).

    Returns
    -------
    tuple
        The model, its id, its training history (empty when loaded from the cache) and whether it
        came from the cache.
    """
    folder = (cache_dir or poisonlab_home() / "baselines") / baseline_key(splits.train, config)
    with _key_lock(folder):  # never half-written: a process that trains it holds the lock
        if (folder / "model.json").is_file():  # another process may have trained it meanwhile
            return _load(folder)
        return _train(splits, config, folder, device=device, progress=progress, name=name)


def _load(folder: Path) -> tuple[PoisonlabModel, str, list, bool]:
    model, card = load_model(folder)
    return model, card.id, card.metrics.get("history", []), True


@contextlib.contextmanager
def _key_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock for the model folder ``folder`` (``<cache>/.locks/<key>``) across
    processes; without ``fcntl`` (Windows) the block runs unlocked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - one process per cache there
        yield
        return
    locks = folder.parent / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with (locks / folder.name).open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _train(
    splits: Splits, config: TrainConfig, folder: Path, *, device: str, progress: bool, name: str
) -> tuple[PoisonlabModel, str, list, bool]:
    trained = train_and_save(
        splits.train,
        config,
        folder,
        val_data=splits.val,
        test_data=splits.test,
        device=device,
        progress=progress,
        name=name,
        store=ModelStore(),
    )
    history = [h.__dict__ for h in trained.result.history]
    card = read_card(folder)
    # the history goes into the card so that a cache hit can still draw accuracy curves
    write_card(card.model_copy(update={"metrics": {**card.metrics, "history": history}}), folder)
    return trained.result.model, trained.card.id, history, False


def clean_baseline(
    splits: Splits, config: TrainConfig, *, device: str, progress: bool, cache_dir: Path | None = None
) -> tuple[PoisonlabModel, str, list, bool]:
    """The clean model for (data, config), trained once and reused by every experiment.

    See :func:`cached_model` for the parameters and the returned tuple.
    """
    return cached_model(
        splits,
        config,
        device=device,
        progress=progress,
        name=f"baseline-{splits.train.name}",
        cache_dir=cache_dir,
    )
