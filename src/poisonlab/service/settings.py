"""Configuration of the ImRecS service: one frozen, validated value built once per process.

Every knob an operator may turn lives here (storage locations, the serving model, input limits,
the data-signing policy, the training pipeline's defenses and gate thresholds, the prediction
shift monitor), so that :func:`poisonlab.service.app.create_app` is a pure function of it and the
tests can build as many independent services as they like.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from poisonlab.data.images import MAX_IMAGE_PIXELS
from poisonlab.models.store import poisonlab_home

DEFAULT_DEFENSES = ("duplicates", "confident_learning", "spectral_signatures")
MiB = 1 << 20


def default_data_dir() -> Path:
    """``$POISONLAB_HOME/imrecs`` (``~/.cache/poisonlab/imrecs`` by default)."""
    return poisonlab_home() / "imrecs"


def sqlite_url(data_dir: str | Path) -> str:
    """The default database: ``imrecs.sqlite`` inside the data folder."""
    return f"sqlite:///{Path(data_dir).resolve() / 'imrecs.sqlite'}"


class ServiceSettings(BaseModel):
    """Everything :func:`~poisonlab.service.app.create_app` needs.

    Parameters
    ----------
    data_dir : Path
        Holds the content-addressed file store (``blobs/``), fine-tuned models (``models/``) and,
        by default, the SQLite database.
    db_url : str, optional
        SQLAlchemy URL; ``sqlite:///<data_dir>/imrecs.sqlite`` by default. A
        ``postgresql+psycopg://...`` URL works unchanged (the service issues no SQLite-only SQL).
    model_ref : str, optional
        The initial serving model (a model folder or a ``poisonlab models`` registry id), used when
        the database does not name a serving model yet; afterwards promotions and rollbacks decide.
    max_body_bytes : int
        Largest request body accepted; enforced while the body streams in (413 beyond it).
    max_pixels : int
        Largest image (width x height) decoded; checked from the header before decoding.
    max_batch : int
        Most images in one ``/v1/predict/batch`` request.
    unsigned_policy : {"quarantine", "pending", "reject"}
        What an unsigned contribution gets: quarantined for review (default), queued for the
        next training run like signed data, or refused with 422.
    unknown_source_policy : {"quarantine", "reject"}
        What a contribution naming an unregistered source gets (without a signature to check).
    defenses : tuple of str
        ``poisonlab.defenses`` registry names the training pipeline runs over each snapshot.
    inference_workers, inference_batch
        Threads running forward passes and the most images per pass; concurrent requests are
        batched together (:mod:`poisonlab.service.batching`).
    base_dataset, base_data_dir
        The trusted data the serving model was trained on (``digits`` or ``cifar10``); ``None``
        takes the serving model card's ``dataset_name``. Its train split is the fine-tuning base,
        its validation split the canary pool and shift reference, its test split the gate set.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Field(default_factory=default_data_dir)
    db_url: str | None = None
    model_ref: str | None = None
    max_body_bytes: int = Field(16 * MiB, ge=1024, le=1 << 31)
    max_pixels: int = Field(MAX_IMAGE_PIXELS, ge=64, le=MAX_IMAGE_PIXELS * 4)
    max_batch: int = Field(1024, ge=1, le=100_000)
    unsigned_policy: Literal["quarantine", "pending", "reject"] = "quarantine"
    unknown_source_policy: Literal["quarantine", "reject"] = "quarantine"
    defenses: tuple[str, ...] = DEFAULT_DEFENSES
    base_dataset: str | None = None
    base_data_dir: Path | None = None
    finetune_epochs: int = Field(3, ge=1, le=200)
    finetune_lr: float | None = Field(None, gt=0, le=10)
    max_accuracy_drop: float = Field(0.02, ge=0, le=1)
    canaries_per_class: int = Field(5, ge=1, le=1000)
    sensitivity_spike: float = Field(0.5, gt=0, le=1)
    shift_window: int = Field(500, ge=10, le=1_000_000)
    shift_min_count: int = Field(200, ge=10)
    shift_check_every: int = Field(50, ge=1)
    shift_tv_threshold: float = Field(0.25, gt=0, le=1)
    shift_alpha: float = Field(1e-3, gt=0, lt=1)
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    #: fp32 unless asked: predictions and pipeline scores must not depend on the host's CPU
    precision: Literal["fp32", "bf16"] = "fp32"
    inference_workers: int = Field(default_factory=lambda: min(2, os.cpu_count() or 1), ge=1, le=64)
    inference_batch: int = Field(64, ge=1, le=4096)
    seed: int = Field(0, ge=0)

    @field_validator("defenses")
    @classmethod
    def _known_defenses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from poisonlab.defenses import DEFENSES

        known = set(DEFENSES)  # iterating the names does not import the defense modules
        unknown = [name for name in value if name not in known]
        if unknown:
            raise ValueError(f"unknown defenses {unknown}; expected names from {sorted(DEFENSES)}")
        if len(set(value)) != len(value):
            raise ValueError(f"each defense may be listed once, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ServiceSettings:
        if self.shift_min_count > self.shift_window:
            raise ValueError(
                f"shift_min_count ({self.shift_min_count}) cannot exceed shift_window ({self.shift_window})"
            )
        return self

    @property
    def database_url(self) -> str:
        return self.db_url or sqlite_url(self.data_dir)

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"
