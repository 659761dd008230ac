"""Contributions: submit (contributor), list and inspect (trainer), release and reject (admin)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from poisonlab.service import contributions as lib
from poisonlab.service.audit import Actor
from poisonlab.service.deps import (
    AdminDep,
    ContributorDep,
    JsonContent,
    MetricsDep,
    PolicyDep,
    ServingDep,
    SessionDep,
    SettingsDep,
    StateDep,
    StoreDep,
    TrainerDep,
    WriteSessionDep,
)
from poisonlab.service.routers.common import BINARY, errors, form_file, form_text, multipart_body, read_form
from poisonlab.service.schemas import ContributionOut, ReviewIn, row_id

router = APIRouter(prefix="/v1/contributions", tags=["contributions"])
Status = Literal["pending", "accepted", "quarantined", "rejected"]
ContributionId = row_id("contribution")
_FORM = multipart_body(
    {
        "file": BINARY,
        "label": {"type": "string", "description": "class name, or index in ASCII digits", "maxLength": 100},
        "signature": {
            "type": "string",
            "description": "<timestamp>.<nonce>.<base64 Ed25519 signature> from `poisonlab sources "
            "sign` (see signing); each is accepted once, within the service's skew window",
            "maxLength": 200,
        },
        "source": {"type": "string", "description": "registered source name", "maxLength": 100},
    },
    ["file", "label"],
)


@router.post(
    "",
    status_code=201,
    response_model=ContributionOut,
    responses=errors(401, 403, 409, 413, 415, 422, 503),
    openapi_extra=_FORM,
    summary="Contribute a labelled image; stored durably before the 201",
)
async def create(
    request: Request,
    actor: ContributorDep,
    loaded: ServingDep,
    session: WriteSessionDep,
    store: StoreDep,
    settings: SettingsDep,
    policy: PolicyDep,
    metrics: MetricsDep,
    state: StateDep,
) -> ContributionOut:
    form = await read_form(request, max_fields=10)
    data, _ = await form_file(form, "file")
    upload = lib.Upload(
        data=data,
        label=form_text(form, "label", required=True, max_length=100),
        signature=form_text(form, "signature", max_length=200),
        source=form_text(form, "source", max_length=100),
    )

    def work():
        row = lib.submit(
            session,
            store,
            upload,
            actor=actor,
            class_names=loaded.class_names,
            input_shape=loaded.input_shape,
            max_pixels=settings.max_pixels,
            policy=policy,
            limits=settings.image_limits,
            budget=state.decode_budget,
        )
        session.commit()  # durable before it is counted (and before the 201)
        return row

    row = await run_in_threadpool(work)
    metrics.contributions.labels(row.status).inc()
    return ContributionOut.model_validate(row)


@router.get("", response_model=list[ContributionOut], responses=errors(401, 403, 422))
def list_contributions(
    _actor: TrainerDep,
    session: SessionDep,
    status: Status | None = None,
    limit: int = Query(100, ge=1, le=1000),
    before_id: int | None = Query(None, ge=1, le=2**62),
) -> list[ContributionOut]:
    rows = lib.list_contributions(session, status=status, limit=limit, before_id=before_id)
    return [ContributionOut.model_validate(r) for r in rows]


@router.get("/{contribution_id}", response_model=ContributionOut, responses=errors(401, 403, 404, 422))
def get_contribution(
    _actor: TrainerDep, session: SessionDep, contribution_id: ContributionId
) -> ContributionOut:
    return ContributionOut.model_validate(lib.get_contribution(session, contribution_id))


def _review(
    session: Session, contribution_id: int, action: str, body: ReviewIn | None, actor: Actor
) -> ContributionOut:
    row = lib.review(session, contribution_id, action, actor=actor, note=body.note if body else "")
    return ContributionOut.model_validate(row)


@router.post(
    "/{contribution_id}/release",
    response_model=ContributionOut,
    responses=errors(401, 403, 404, 409, 415, 422),
)
def release(
    actor: AdminDep,
    _json: JsonContent,
    session: WriteSessionDep,
    contribution_id: ContributionId,
    body: ReviewIn | None = None,
) -> ContributionOut:
    """Accept a quarantined (or pending, or rejected) contribution after review."""
    return _review(session, contribution_id, "release", body, actor)


@router.post(
    "/{contribution_id}/reject",
    response_model=ContributionOut,
    responses=errors(401, 403, 404, 409, 415, 422),
)
def reject(
    actor: AdminDep,
    _json: JsonContent,
    session: WriteSessionDep,
    contribution_id: ContributionId,
    body: ReviewIn | None = None,
) -> ContributionOut:
    """Reject a contribution: it never enters a training snapshot."""
    return _review(session, contribution_id, "reject", body, actor)
