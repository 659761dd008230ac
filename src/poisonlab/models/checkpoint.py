"""Saved models: a folder with ``weights.safetensors`` and ``model.json``.

``model.json`` records the architecture spec, class names, normalisation, training config,
the training data's content hash, the parent model (for fine-tunes), metrics, creation time and
the poisonlab version, plus the sha256 of the weights file. Loading recomputes that hash and
refuses a model whose weights changed since it was saved (tamper detection).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from poisonlab import __version__
from poisonlab.models.base import PoisonlabModel
from poisonlab.models.registry import build_model
from poisonlab.reprs import concise_repr

if TYPE_CHECKING:
    from poisonlab.data.dataset import Dataset

WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "model.json"


class ModelCard(BaseModel):
    """The contents of ``model.json``."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    spec: dict
    class_names: list[str]
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    train_config: dict | None = None
    dataset_name: str | None = None
    dataset_hash: str | None = None
    parent_id: str | None = None
    metrics: dict = Field(default_factory=dict)
    created_at: str
    poisonlab_version: str
    notes: str = ""

    @property
    def arch(self) -> str:
        return str(self.spec.get("arch"))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.spec["input_shape"])  # type: ignore[return-value]

    def __repr__(self) -> str:
        # pydantic's repr prints the whole spec, config and per-epoch history
        return concise_repr(
            self,
            id=self.id,
            name=self.name,
            classes=len(self.class_names),
            dataset=self.dataset_name,
            parent_id=self.parent_id,
            test_accuracy=self.metrics.get("test_accuracy"),
        )

    __str__ = __repr__


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model(
    model: PoisonlabModel,
    out_dir: str | Path,
    *,
    class_names: list[str] | tuple[str, ...],
    name: str | None = None,
    train_config: dict | None = None,
    dataset_name: str | None = None,
    dataset_hash: str | None = None,
    parent_id: str | None = None,
    metrics: dict | None = None,
    notes: str = "",
) -> ModelCard:
    """Write ``model`` to ``out_dir`` (created if missing) and return its card.

    The model id is ``<arch>-<first 12 hex digits of the weights sha256>``.
    """
    if len(class_names) != model.num_classes:
        raise ValueError(f"model has {model.num_classes} classes, got {len(class_names)} class names")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = out / WEIGHTS_FILE
    save_file(state, str(weights), metadata={"arch": model.arch})
    digest = file_sha256(weights)
    card = ModelCard(
        id=f"{model.arch}-{digest[:12]}",
        name=name or out.name,
        spec=model.spec(),
        class_names=list(class_names),
        weights_sha256=digest,
        train_config=train_config,
        dataset_name=dataset_name,
        dataset_hash=dataset_hash,
        parent_id=parent_id,
        metrics=metrics or {},
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        poisonlab_version=__version__,
        notes=notes,
    )
    write_card(card, out)
    return card


def write_card(card: ModelCard, model_dir: str | Path) -> None:
    """(Re)write ``model.json`` atomically (e.g. to add metrics after an evaluation)."""
    path = Path(model_dir) / CARD_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card.model_dump(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_card(model_dir: str | Path) -> ModelCard:
    path = Path(model_dir) / CARD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"not a saved model: {Path(model_dir)} has no {CARD_FILE}")
    try:
        return ModelCard.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        raise ValueError(f"corrupt {path}: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}") from exc


def load_model(model_dir: str | Path, *, verify: bool = True) -> tuple[PoisonlabModel, ModelCard]:
    """Load a saved model (in eval mode, on CPU) and its card.

    Raises
    ------
    FileNotFoundError
        The folder or one of its files is missing.
    ValueError
        The weights' sha256 differs from the one recorded (tampered or corrupt), or the weights
        do not fit the recorded architecture.
    """
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"weights file missing: {weights}")
    if verify:
        digest = file_sha256(weights)
        if digest != card.weights_sha256:
            raise ValueError(
                f"weights of {model_dir} do not match model.json (sha256 {digest[:12]}... != "
                f"{card.weights_sha256[:12]}...): the model was modified after it was saved"
            )
    model = build_model(card.spec)
    try:
        state = load_file(str(weights))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError) as exc:
        raise ValueError(f"cannot load weights of {model_dir}: {str(exc).splitlines()[0]}") from exc
    return model.eval(), card


def model_to(model: PoisonlabModel, device: torch.device) -> PoisonlabModel:
    return model.to(device, memory_format=torch.channels_last)


def check_model_fits(card: ModelCard, data: Dataset) -> None:
    """Raise ValueError unless ``data`` has the model's input shape and class names.

    Parameters
    ----------
    card
        The saved model's card.
    data
        The data it is about to see (trained on, evaluated on, scanned with).
    """
    if tuple(card.input_shape) != tuple(data.image_shape):
        raise ValueError(
            f"model {card.id} expects images {tuple(card.input_shape)}, {data.name} has {data.image_shape}"
        )
    if tuple(card.class_names) != tuple(data.class_names):
        raise ValueError(
            f"model {card.id} classes {card.class_names} differ from {data.name}'s {list(data.class_names)}"
        )
