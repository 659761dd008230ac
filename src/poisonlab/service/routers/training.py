"""Training runs (trainer): start one in the background, follow its progress and outcome."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request

from poisonlab.defenses import DEFENSES
from poisonlab.service import runs
from poisonlab.service.audit import Actor
from poisonlab.service.auth import require, role_rank
from poisonlab.service.errors import ServiceError
from poisonlab.service.routers.common import errors, service
from poisonlab.service.schemas import RunIn, RunOut

router = APIRouter(prefix="/v1/training-runs", tags=["training"])


@router.post("", status_code=202, response_model=RunOut, responses=errors(401, 403, 422))
def start_run(
    request: Request, body: RunIn | None = None, actor: Actor = Depends(require("trainer"))
) -> RunOut:
    """Queue a run: snapshot -> validation + defenses -> fine-tune -> gates -> promote or alert."""
    body = body or RunIn()
    params = body.model_dump(exclude_none=True)
    if body.defenses is not None:
        if role_rank(actor.role or "viewer") < role_rank("admin"):
            raise ServiceError(403, "forbidden", "only an admin may change a run's defenses")
        unknown = sorted(set(body.defenses) - set(DEFENSES))
        if unknown or len(set(body.defenses)) != len(body.defenses):
            raise ServiceError(
                422, "invalid_input", f"defenses: unknown or repeated names {unknown or body.defenses}"
            )
    state = service(request)
    run = runs.create_run(state.db, actor=actor, params=params)
    state.worker.submit(run.id)
    return RunOut.model_validate(run)


@router.get("", response_model=list[RunOut], responses=errors(401, 403, 422))
def list_runs(
    request: Request, limit: int = Query(50, ge=1, le=500), _actor: Actor = Depends(require("trainer"))
) -> list[RunOut]:
    return [RunOut.model_validate(r) for r in runs.list_runs(service(request).db, limit=limit)]


@router.get("/{run_id}", response_model=RunOut, responses=errors(401, 403, 404, 422))
def get_run(
    request: Request, run_id: int = Path(ge=1, le=2**62), _actor: Actor = Depends(require("trainer"))
) -> RunOut:
    try:
        return RunOut.model_validate(runs.get_run(service(request).db, run_id))
    except LookupError as exc:
        raise ServiceError(404, "not_found", exc.args[0]) from None
