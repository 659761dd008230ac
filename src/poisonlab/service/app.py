"""The ImRecS application factory.

``create_app(settings)`` builds a FastAPI app around one :class:`~poisonlab.service.state.ServiceState`.
Starting it (uvicorn, or ``with TestClient(app)``) loads the serving model (registering
``settings.model_ref`` first when the database names none), marks training runs interrupted by a
previous process once (then fails them) and resumes queued ones; stopping it lets the current run
finish its step and closes the database.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from poisonlab.service import runs
from poisonlab.service.errors import install_handlers
from poisonlab.service.headers import SecurityHeadersMiddleware
from poisonlab.service.json_body import install_json_guard
from poisonlab.service.middleware import BodyLimitMiddleware, ObserveMiddleware
from poisonlab.service.ratelimit import RateLimitMiddleware
from poisonlab.service.routers import admin, contributions, models, predict, training, ui
from poisonlab.service.run_claims import recover_runs
from poisonlab.service.settings import ServiceSettings
from poisonlab.service.state import ServiceState

DESCRIPTION = """ImRecS, the image-recognition service of the poisoning chapter, run the safe way:
API keys with least-privilege roles, signed contributions, an append-only audit log, a model
registry with lineage, a defended continuous-learning pipeline with promotion gates, Prometheus
metrics and alerts. Send the key as `X-API-Key` (or `Authorization: Bearer`). Errors are JSON
`{"detail": ..., "code": ...}`."""


def _recover_runs(state: ServiceState) -> list[int]:
    """Take back the runs a dead process left running; the ids of the queued ones, to resume."""
    with state.db.write() as session:
        return recover_runs(session, worker=state.worker_id, stale_after_s=state.settings.run_stale_after_s)


def create_app(settings: ServiceSettings, state: ServiceState | None = None) -> FastAPI:
    """A new service for ``settings`` (the database and file store are created when missing).

    ``state``, when given, is a :class:`ServiceState` of these settings that the caller already
    bootstrapped (``serve`` does, so that a bad ``--model`` is an error line before uvicorn starts):
    the app takes it over and closes it at shutdown, and its start-up does not load the model again.
    """
    if state is not None and state.settings is not settings:
        raise ValueError("create_app: the state given was made for other settings")
    state = state or ServiceState(settings)

    def execute(run_id: int) -> None:
        from poisonlab.service.pipeline import run_training  # torch-heavy: imported on first run

        run_training(run_id, state)

    state.worker = runs.TrainingWorker(
        execute, poll=lambda: _recover_runs(state), poll_every_s=settings.run_stale_after_s / 4
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(state.bootstrap)
        await run_in_threadpool(state.housekeeping)  # orphan blobs of a crash, expired nonces
        state.worker.start()  # also when nothing is queued: it polls for abandoned runs
        for run_id in await run_in_threadpool(_recover_runs, state):
            state.worker.submit(run_id)
        # torch, scipy and scikit-learn leave ~350,000 long-lived objects; without freezing them every
        # full garbage collection walks them all and stalls requests for tens of milliseconds.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await run_in_threadpool(state.worker.stop)
            state.close()

    # No /docs or /redoc: FastAPI's load their script from a CDN onto the origin that holds the key
    # (routers/ui.py serves a page of our own); the schema's version is the API's, not the software's,
    # which only a caller with a key learns (GET /v1/status).
    app = FastAPI(
        title="ImRecS",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = state
    install_handlers(app)
    for module in (predict, contributions, models, training, admin, ui):
        app.include_router(module.router)
    install_json_guard(app, max_depth=settings.max_json_depth)  # inside the body limit: it reads
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, idle_s=settings.body_idle_s)
    app.add_middleware(ObserveMiddleware, state=state)
    # a flood is refused before it is timed, audited, read or authenticated
    app.add_middleware(
        RateLimitMiddleware,
        keys=state.key_buckets,
        anonymous=state.address_buckets,
        on_limited=lambda bucket: state.metrics.rate_limited.labels(bucket).inc(),
    )
    # outermost (last added): every response, the limiter's 429 included, carries the headers
    app.add_middleware(SecurityHeadersMiddleware)
    return app
