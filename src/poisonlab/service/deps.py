"""FastAPI dependencies: the service's components and the caller's role, as ``Annotated`` types.

A handler names what it needs in its signature and FastAPI provides it; nothing reads
``request.app.state`` but :func:`get_state`:

=====================  ==========================================================================
``StateDep``           the app's :class:`~poisonlab.service.state.ServiceState` (for its methods)
``SettingsDep``        its :class:`~poisonlab.service.settings.ServiceSettings`
``DatabaseDep``        its :class:`~poisonlab.service.db.Database`
``SessionDep``         a read session for queries
``WriteSessionDep``    one transaction: committed when the handler returns, before the response
                       is sent (an acknowledged write is durable), rolled back when it raises
``StoreDep``           the content-addressed :class:`~poisonlab.service.storage.BlobStore`
``ServerDep``          the :class:`~poisonlab.service.serving.ModelServer`
``ServingDep``         the serving model (:class:`~poisonlab.service.serving.Loaded`); 503 when none
``MetricsDep``         the :class:`~poisonlab.service.monitoring.ServiceMetrics`
``KeysDep``            the :class:`~poisonlab.service.auth.KeyCache`
``PolicyDep``          the :class:`~poisonlab.service.contributions.Policy` for unsigned data
``WorkerDep``          the :class:`~poisonlab.service.runs.TrainingWorker`
``ViewerDep`` ...      the authenticated :class:`~poisonlab.service.audit.Actor` with at least that
``AdminDep``           role (``ContributorDep``, ``TrainerDep`` between); 401 / 403 otherwise
=====================  ==========================================================================

A role dependency comes first in a handler's signature: FastAPI solves dependencies in that order
and a refusal (401/403) must win over whatever else the handler needs (a 503 without a model).
A handler with work that must follow the commit (reloading the serving model, clearing the key
cache, starting the worker) calls ``session.commit()`` itself before that work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from poisonlab.service.audit import Actor
from poisonlab.service.auth import KeyCache, role_rank
from poisonlab.service.contributions import Policy
from poisonlab.service.db import Database
from poisonlab.service.errors import ServiceError
from poisonlab.service.json_body import is_json_media
from poisonlab.service.monitoring import ServiceMetrics
from poisonlab.service.runs import TrainingWorker
from poisonlab.service.serving import Loaded, ModelServer
from poisonlab.service.settings import ServiceSettings
from poisonlab.service.state import ServiceState
from poisonlab.service.storage import BlobStore


def get_state(request: Request) -> ServiceState:
    """The :class:`ServiceState` that :func:`~poisonlab.service.app.create_app` put on the app."""
    return request.app.state.service


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_settings(state: StateDep) -> ServiceSettings:
    return state.settings


def get_database(state: StateDep) -> Database:
    return state.db


def get_store(state: StateDep) -> BlobStore:
    return state.store


def get_server(state: StateDep) -> ModelServer:
    return state.server


def get_metrics(state: StateDep) -> ServiceMetrics:
    return state.metrics


def get_keys(state: StateDep) -> KeyCache:
    return state.keys


def get_policy(state: StateDep) -> Policy:
    return state.policy


def get_worker(state: StateDep) -> TrainingWorker:
    return state.worker


SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
StoreDep = Annotated[BlobStore, Depends(get_store)]
ServerDep = Annotated[ModelServer, Depends(get_server)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
KeysDep = Annotated[KeyCache, Depends(get_keys)]
PolicyDep = Annotated[Policy, Depends(get_policy)]
WorkerDep = Annotated[TrainingWorker, Depends(get_worker)]


def read_session(db: DatabaseDep) -> Iterator[Session]:
    """A session for queries (SQLite: a deferred transaction, never the write lock)."""
    with db.read() as session:
        yield session


def write_session(db: DatabaseDep) -> Iterator[Session]:
    """One write transaction: committed when the handler returns normally, rolled back otherwise."""
    with db.write() as session:
        yield session


# scope="function" (FastAPI >= 0.121): the session closes (and a write commits) when the handler
# returns, before the response goes out, so a 201 is only ever sent for a committed row (the kill -9
# guarantee); with the default scope the commit would follow the response.
SessionDep = Annotated[Session, Depends(read_session, scope="function")]
WriteSessionDep = Annotated[Session, Depends(write_session, scope="function")]


async def serving_model(server: ServerDep) -> Loaded:
    """The serving model, or 503 ``no_model`` when the service has none yet."""
    loaded = await server.current_async()
    if loaded is None:
        raise ServiceError(503, "no_model", "no model is being served; start with --model or promote one")
    return loaded


ServingDep = Annotated[Loaded, Depends(serving_model)]


def json_content(request: Request) -> None:
    """415 for a body sent as anything but JSON to a route that reads a JSON object (FastAPI
    handed such bytes to the model, whose 422 said only "a valid dictionary")."""
    headers = request.headers
    has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
    ctype = headers.get("content-type")
    if has_body and ctype is not None and not is_json_media(ctype):
        raise ServiceError(415, "unsupported_media_type", f"expected application/json, got {ctype[:100]!r}")


#: a route parameter placed after the role's: the key is checked before the content type
JsonContent = Annotated[None, Depends(json_content)]

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an ImRecS API key")
_bearer = HTTPBearer(auto_error=False, description="an ImRecS API key as a bearer token")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def require(role: str) -> Callable[..., Actor]:
    """A dependency admitting keys of ``role`` or higher; it returns the :class:`Actor`.

    The actor is also left on ``request.state`` so that the middleware can name it when it
    audits a refused write.
    """
    needed = role_rank(role)

    def dependency(
        request: Request,
        keys: KeysDep,
        api_key: Annotated[str | None, Security(_api_key_header)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> Actor:
        key = api_key or (bearer.credentials if bearer is not None else None)
        if not key:
            raise ServiceError(
                401, "unauthenticated", "an API key is required (X-API-Key header)", _CHALLENGE
            )
        actor = keys.authenticate(key)
        if actor is None:
            raise ServiceError(401, "unauthenticated", "unknown or revoked API key", _CHALLENGE)
        request.state.actor = actor
        if role_rank(actor.role or "viewer") < needed:
            raise ServiceError(
                403, "forbidden", f"this needs the {role} role; key {actor.name!r} is {actor.role}"
            )
        return actor

    dependency.__name__ = f"require_{role}"
    return dependency


ViewerDep = Annotated[Actor, Depends(require("viewer"))]
ContributorDep = Annotated[Actor, Depends(require("contributor"))]
TrainerDep = Annotated[Actor, Depends(require("trainer"))]
AdminDep = Annotated[Actor, Depends(require("admin"))]
