"""Training runs (trainer): start one in the background, follow its progress and outcome."""

from __future__ import annotations

from fastapi import APIRouter, Query

from poisonlab.defenses import DEFENSES
from poisonlab.service import runs
from poisonlab.service.auth import role_rank
from poisonlab.service.deps import (
    JsonContent,
    SessionDep,
    SettingsDep,
    TrainerDep,
    WorkerDep,
    WriteSessionDep,
)
from poisonlab.service.errors import ServiceError
from poisonlab.service.routers.common import errors
from poisonlab.service.schemas import RunIn, RunOut, row_id

router = APIRouter(prefix="/v1/training-runs", tags=["training"])
RunId = row_id("training run")


@router.post("", status_code=202, response_model=RunOut, responses=errors(401, 403, 415, 422, 429))
def start_run(
    actor: TrainerDep,
    _json: JsonContent,
    session: WriteSessionDep,
    worker: WorkerDep,
    settings: SettingsDep,
    body: RunIn | None = None,
) -> RunOut:
    """Queue a run: snapshot -> validation + defenses -> fine-tune -> gates -> promote or alert.

    429 ``queue_full`` when the service or the key has as many queued runs as it may.
    """
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
    run = runs.create_run(
        session,
        actor=actor,
        params=params,
        max_queued=settings.max_queued_runs,
        max_queued_per_key=settings.max_queued_runs_per_key,
    )
    session.commit()  # the worker reads the run from the database: commit before handing it over
    worker.submit(run.id)
    return RunOut.model_validate(run)


@router.get("", response_model=list[RunOut], responses=errors(401, 403, 422))
def list_runs(_actor: TrainerDep, session: SessionDep, limit: int = Query(50, ge=1, le=500)) -> list[RunOut]:
    return [RunOut.model_validate(r) for r in runs.list_runs(session, limit=limit)]


@router.get("/{run_id}", response_model=RunOut, responses=errors(401, 403, 404, 422))
def get_run(_actor: TrainerDep, session: SessionDep, run_id: RunId) -> RunOut:
    return RunOut.model_validate(runs.get_run(session, run_id))


@router.post("/{run_id}/cancel", response_model=RunOut, responses=errors(401, 403, 404, 409, 422))
def cancel_run(actor: TrainerDep, session: WriteSessionDep, run_id: RunId) -> RunOut:
    """Cancel a queued run (its requester or an admin); 409 once it has started."""
    run = runs.cancel_run(session, run_id, actor=actor)
    session.commit()
    return RunOut.model_validate(run)
