"""The model registry: list and inspect (viewer), promote and roll back (admin)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Path, Query
from sqlalchemy.orm import Session

from poisonlab.models.checkpoint import read_card
from poisonlab.service import registry
from poisonlab.service.db import ModelVersion
from poisonlab.service.deps import AdminDep, ServerDep, SessionDep, ViewerDep, WriteSessionDep
from poisonlab.service.errors import ServiceError
from poisonlab.service.routers.common import errors
from poisonlab.service.schemas import ModelDetailOut, ModelOut
from poisonlab.service.serving import ModelServer

router = APIRouter(prefix="/v1/models", tags=["models"])
# ids are compared in SQL: no control characters (PostgreSQL refuses a NUL with an error, a 500)
ModelId = Annotated[
    str, Path(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$", description="model version id")
]


@router.get("", response_model=list[ModelOut], responses=errors(401, 403))
def list_models(_actor: ViewerDep, session: SessionDep) -> list[ModelOut]:
    return [ModelOut.model_validate(v) for v in registry.list_versions(session)]


@router.get("/{model_id}", response_model=ModelDetailOut, responses=errors(401, 403, 404, 422))
def get_model(_actor: ViewerDep, session: SessionDep, model_id: ModelId):
    row = registry.get_version(session, model_id)
    try:
        card = read_card(row.path)
        names, shape = list(card.class_names), list(card.input_shape)
    except (OSError, ValueError):  # the folder went away: still show what the database knows
        names, shape = [], []
    return ModelDetailOut(
        **ModelOut.model_validate(row).model_dump(),
        class_names=names,
        input_shape=shape,
        reference_distribution=row.reference_distribution,
        lineage=[v.id for v in registry.lineage(session, model_id)],
    )


def _switch(session: Session, server: ModelServer, call: Callable[[], ModelVersion]) -> ModelOut:
    """Run a promotion or rollback, commit it, then load the new serving model."""
    try:
        row = call()
    except (ValueError, OSError) as exc:  # refused: a gate failure, tampered or missing weights
        raise ServiceError(409, "conflict", str(exc)) from None
    session.commit()  # the server reads the serving row from the database: commit first
    server.reload()
    return ModelOut.model_validate(row)


@router.post("/rollback", response_model=ModelOut, responses=errors(401, 403, 409))
def rollback(actor: AdminDep, session: WriteSessionDep, server: ServerDep) -> ModelOut:
    """Serve the previously served model again."""

    def call() -> ModelVersion:
        target = registry.rollback_target(session)
        return registry.promote(session, target.id, actor=actor, action="models.rollback")

    return _switch(session, server, call)


@router.post("/{model_id}/promote", response_model=ModelOut, responses=errors(401, 403, 404, 409, 422))
def promote(
    actor: AdminDep,
    session: WriteSessionDep,
    server: ServerDep,
    model_id: ModelId,
    force: bool = Query(False, description="promote even a model that failed a gate"),
) -> ModelOut:
    return _switch(session, server, lambda: registry.promote(session, model_id, actor=actor, force=force))
