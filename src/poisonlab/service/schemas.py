"""Request and response bodies of the HTTP API (they make the OpenAPI schema precise).

Text that a request stores (key and source names, review notes, public keys) may not hold control
characters: a NUL is refused by PostgreSQL (a 500 instead of a 422) and the others only disguise
what an audit entry or a listing shows.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands timezone-aware columns back naive; every time the service writes is UTC.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


UTCTime = Annotated[datetime, AfterValidator(_utc)]
#: C0 controls but tab, line feed and carriage return, DEL, and the invisible bidirectional marks
#: and overrides (U+061C, U+200E-F, U+202A-E, U+2066-9) that make a name display as another
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def no_control(value: str) -> str:
    """``value`` unchanged; ValueError naming the first control or bidirectional character."""
    found = _CONTROL.search(value)
    if found:
        raise ValueError(f"must not contain control characters, got {found.group()!r} at {found.start()}")
    return value


#: a request string without control characters (see the module docstring)
Text = Annotated[str, AfterValidator(no_control)]


def _decimal_id(value: object) -> object:
    # pydantic's lax int reads "+1", " 1" and "1_0" too: a row id in a path is digits only, so
    # that one row has one URL (an audit entry or a cache keyed by path names it one way)
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("must be a row id: decimal digits only")
    return value


def row_id(what: str) -> Any:
    """The type of a ``{..._id}`` path parameter naming a database row: 1 to 2**62, digits only."""
    return Annotated[int, BeforeValidator(_decimal_id), Path(ge=1, le=2**62, description=f"{what} id")]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorOut(BaseModel):
    detail: str = Field(description="what is wrong, in words")
    code: str = Field(description="machine-readable problem name, e.g. bad_image, unknown_label")


class Prediction(BaseModel):
    label: int = Field(description="predicted class index")
    class_name: str
    probabilities: dict[str, float] = Field(description="class name -> probability")


class PredictionOut(Prediction):
    model_version: str
    input_note: str | None = Field(
        None,
        description="set when the upload is far from what the model was trained on (much larger "
        "than its input, so shrunk a lot): every input gets an answer, even one unlike any class",
    )


class BatchPredictionOut(BaseModel):
    model_version: str
    predictions: list[Prediction]


class InstancesIn(BaseModel):
    """The chapter's ``/predict_multiple`` body: images as nested pixel lists (H, W, C) in [0, 255]."""

    instances: list[Any] = Field(min_length=1)


class ContributionOut(_Out):
    id: int
    contributor: str
    source: str | None
    sha256: str
    size_bytes: int
    label: int
    label_name: str
    signature: str | None
    status: Literal["pending", "accepted", "quarantined", "rejected"]
    reason: str
    created_at: UTCTime
    updated_at: UTCTime


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # JSON's true or "3" is not 3
    note: Text = Field("", max_length=500)


class ModelOut(_Out):
    id: str
    status: Literal["serving", "retired", "candidate", "rejected"]
    parent_id: str | None
    metrics: dict[str, Any]
    data_snapshot_hash: str | None
    training_run_id: int | None
    created_at: UTCTime
    served_at: UTCTime | None


class ModelDetailOut(ModelOut):
    class_names: list[str]
    input_shape: list[int]
    reference_distribution: dict[str, Any] | None
    lineage: list[str] = Field(description="this model and its ancestors, newest first")


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # JSON's true or "3" is not 3
    epochs: int | None = Field(None, ge=1, le=200, description="fine-tuning epochs (default: the service's)")
    defenses: list[Annotated[str, Field(max_length=100), AfterValidator(no_control)]] | None = Field(
        None, max_length=20, description="override the configured defenses (admin only); [] runs none"
    )


class RunOut(_Out):
    id: int
    requested_by: str
    status: Literal["queued", "running", "promoted", "rejected", "skipped", "failed", "cancelled"]
    step: str
    params: dict[str, Any]
    snapshot_hash: str | None
    base_model_id: str | None
    candidate_model_id: str | None
    report: dict[str, Any]
    error: str
    attempts: int = Field(0, description="times a server process claimed it (2: requeued once after a crash)")
    created_at: UTCTime
    finished_at: UTCTime | None


class AuditOut(_Out):
    id: int
    at: UTCTime
    actor: str
    role: str | None
    action: str
    target: str
    outcome: str


class AlertOut(_Out):
    id: int
    kind: str
    severity: str
    message: str
    model_id: str | None
    details: dict[str, Any]
    created_at: UTCTime
    resolved_at: UTCTime | None


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # JSON's true or "3" is not 3
    name: Text = Field(min_length=1, max_length=100)
    role: Literal["viewer", "contributor", "trainer", "admin"]


class KeyOut(_Out):
    id: int
    name: str
    role: str
    prefix: str
    created_at: UTCTime
    revoked_at: UTCTime | None


class KeyCreatedOut(KeyOut):
    key: str = Field(description="the API key; shown only in this response")


class SourceIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # JSON's true or "3" is not 3
    name: Text = Field(min_length=1, max_length=100)
    public_key_pem: Text = Field(min_length=1, max_length=10_000)


class SourceOut(_Out):
    id: int
    name: str
    fingerprint: str
    public_key_pem: str
    created_at: UTCTime


class MeOut(BaseModel):
    name: str
    role: str


class HealthOut(BaseModel):
    """Liveness for anyone: nothing that identifies the model or the software."""

    status: Literal["ok", "no_model"]


class StatusOut(HealthOut):
    """What is serving, for a caller with a key."""

    model_version: str | None = Field(description="the serving model's version id")
    service_version: str = Field(description="the poisonlab version running the service")
