"""``poisonlab run --seeds N --resume``: keep the poisoned models a stopped run already trained.

A 5-seed chapter row fine-tunes one model per seed (minutes to half an hour each on two cores);
a run stopped after three seeds leaves their models under ``models/seed-<seed>`` but no
``results.json``. Resuming reloads each such model instead of training it again, but only when
it is the model this run would train: the same resolved training config, the same poisoned
training set (content hash: the attack is rebuilt from the seed and hashed) and the same parent
(the seed's clean model, or none for a retrain). Any difference is an error naming it, never a
silent mix of two experiments. The poison, the measurements and the robustness checks are
recomputed for every seed (seconds to minutes); only the poisoned model's training is skipped (a
``mitigation`` block's fine-tunes run again). With ``--overwrite`` as well, a finished run's
results are recomputed from its saved models. Each resumed seed's record
keeps the run that trained it (``resumed_from``: run id, time, commit), since that commit may
differ from the one of the run that writes ``results.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from poisonlab.data.dataset import Dataset
from poisonlab.models.base import PoisonlabModel
from poisonlab.models.checkpoint import load_model
from poisonlab.provenance import claim_run_dir, holds_run, read_run_json
from poisonlab.training.config import TrainConfig

__all__ = ["SavedSeedModel", "claim_seed_dirs", "seed_model_dir", "saved_seed_model"]


def seed_model_dir(out_dir: Path, seed: int) -> Path:
    """Where a run saves the poisoned model of ``seed``."""
    return out_dir / "models" / f"seed-{seed}"


def claim_seed_dirs(out_dir: Path, seeds: list[int], *, overwrite: bool, resume: bool) -> None:
    """Refuse, before any work, a seed folder that holds a model, unless the run replaces
    (``overwrite``) or reuses (``resume``, checked later by :func:`saved_seed_model`) it.

    Raises
    ------
    FileExistsError
        A seed folder holds a model and neither flag is set.
    """
    for seed in seeds:
        folder = seed_model_dir(out_dir, seed)
        if not (resume and holds_run(folder)):
            claim_run_dir(folder, overwrite=overwrite)


@dataclass(frozen=True)
class SavedSeedModel:
    """A poisoned model found in a seed folder and checked against the run.

    Attributes
    ----------
    model : PoisonlabModel
        The model, in eval mode.
    model_id : str
        Its registry id (``model.json``).
    history : list of dict
        Its per-epoch history when the card kept one (runs before it did: empty).
    trained_by : dict
        ``run_id``, ``created_at`` and ``commit`` of the run that trained it (its ``run.json``).
    """

    model: PoisonlabModel
    model_id: str
    history: list[dict]
    trained_by: dict


def saved_seed_model(
    folder: Path, train_config: TrainConfig, data: Dataset, parent_id: str | None
) -> SavedSeedModel | None:
    """The model saved in ``folder`` if it is the one a run would train; None when there is none.

    Parameters
    ----------
    folder : Path
        The seed's model folder (:func:`seed_model_dir`).
    train_config : TrainConfig
        The resolved training config the run would use for this seed.
    data : Dataset
        The poisoned training set the run would train on.
    parent_id : str or None
        The model it would fine-tune (None: trained from scratch).

    Raises
    ------
    ValueError
        The saved model differs from the run in its training config, training data or parent, or
        its weights do not match its card.
    FileNotFoundError
        The folder holds a ``run.json`` or ``model.json`` but not the weights.
    """
    if not holds_run(folder):
        return None
    model, card = load_model(folder)
    wanted = {
        "training config": train_config.model_dump(mode="json"),
        "training data (content hash)": data.content_hash,
        "parent model": parent_id,
    }
    saved = {
        "training config": card.train_config,
        "training data (content hash)": card.dataset_hash,
        "parent model": card.parent_id,
    }
    for what, expected in wanted.items():
        if saved[what] != expected:
            raise ValueError(
                f"cannot resume: {folder} holds a model trained with another {what} than this run "
                f"would use ({_short(saved[what])} != {_short(expected)}); move it away, or pass "
                "--overwrite to train it again"
            )
    record = read_run_json(folder) or {}
    trained_by = {key: record.get(key) for key in ("run_id", "created_at", "commit")}
    return SavedSeedModel(model, card.id, list(card.metrics.get("history", [])), trained_by)


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
