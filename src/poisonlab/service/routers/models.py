"""The model registry: list and inspect (viewer), promote and roll back (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from poisonlab.models.checkpoint import read_card
from poisonlab.service import versions
from poisonlab.service.audit import Actor
from poisonlab.service.auth import require
from poisonlab.service.errors import ServiceError
from poisonlab.service.routers.common import errors, service
from poisonlab.service.schemas import ModelDetailOut, ModelOut

router = APIRouter(prefix="/v1/models", tags=["models"])
ModelId = Annotated[str, Path(min_length=1, max_length=100, description="model version id")]


@router.get("", response_model=list[ModelOut], responses=errors(401, 403))
def list_models(request: Request, _actor: Actor = Depends(require("viewer"))) -> list[ModelOut]:
    return [ModelOut.model_validate(v) for v in versions.list_versions(service(request).db)]


@router.get("/{model_id}", response_model=ModelDetailOut, responses=errors(401, 403, 404, 422))
def get_model(request: Request, model_id: ModelId, _actor: Actor = Depends(require("viewer"))):
    db = service(request).db
    try:
        row = versions.get_version(db, model_id)
    except LookupError as exc:
        raise ServiceError(404, "not_found", exc.args[0]) from None
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
        lineage=[v.id for v in versions.lineage(db, model_id)],
    )


def _switch(request: Request, call) -> ModelOut:
    state = service(request)
    try:
        row = call(state.db)
    except LookupError as exc:
        raise ServiceError(404, "not_found", exc.args[0]) from None
    except (ValueError, OSError) as exc:
        raise ServiceError(409, "conflict", str(exc)) from None
    state.server.reload()
    return ModelOut.model_validate(row)


@router.post("/rollback", response_model=ModelOut, responses=errors(401, 403, 409))
def rollback(request: Request, actor: Actor = Depends(require("admin"))) -> ModelOut:
    """Serve the previously served model again."""

    def call(db):
        return versions.promote(db, versions.rollback_target(db).id, actor=actor, action="models.rollback")

    return _switch(request, call)


@router.post("/{model_id}/promote", response_model=ModelOut, responses=errors(401, 403, 404, 409, 422))
def promote(
    request: Request,
    model_id: ModelId,
    force: bool = Query(False, description="promote even a model that failed a gate"),
    actor: Actor = Depends(require("admin")),
) -> ModelOut:
    return _switch(request, lambda db: versions.promote(db, model_id, actor=actor, force=force))
