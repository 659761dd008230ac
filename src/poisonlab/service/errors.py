"""Errors as JSON: every refusal is ``{"detail": "<what is wrong>", "code": "<machine-readable>"}``.

Library code raises :class:`Rejected` for bad input and :class:`NotFound` for an unknown id; routers
raise :class:`ServiceError`. The handlers here turn them, FastAPI's request-validation errors and
Starlette's HTTP errors into 4xx responses that name the problem (every 404 of an unknown object
comes from the one :class:`NotFound` handler, so no route translates lookups itself). An
unexpected exception still becomes a JSON 500 (``code: internal``) and is logged with its
traceback: that is a bug to fix, never a way to report bad input.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from poisonlab.error_text import field_problems
from poisonlab.service.headers import add_security_headers

log = logging.getLogger("poisonlab.service")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "body_timeout",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    503: "unavailable",
}


class ServiceError(Exception):
    """A refusal with an HTTP status, a short code and a message for the client."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers


class Rejected(ValueError):
    """Bad input found by library code: ``code`` names the problem, ``status`` is 4xx (422 default);
    503 where the server has no room now (``headers`` then carry a ``Retry-After``)."""

    def __init__(
        self, code: str, message: str, status: int = 422, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.headers = headers


class NotFound(LookupError):
    """An object the request names does not exist: a 404 ``not_found`` whose detail is the message.

    A subclass of LookupError so that callers outside HTTP (the CLI) can catch it as one; the
    404 handler catches only this class, never a stray ``KeyError``, which is a bug (500).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.detail = message


def error_response(status: int, detail: str, code: str | None = None, **extra: object) -> JSONResponse:
    body = {"detail": detail, "code": code or _STATUS_CODES.get(status, "error"), **extra}
    return JSONResponse(body, status_code=status)


def validation_message(exc: RequestValidationError) -> str:
    """One line naming each invalid field: ``file: Field required; label: ...``."""
    errors = [_json_message(err) for err in exc.errors()]
    return field_problems(errors, skip=("body",), empty="body") or "invalid request"


def _json_message(err: dict) -> dict:
    """A body that is not JSON: say so with the decoder's reason, not pydantic's generic text."""
    if err.get("type") != "json_invalid":
        return err
    return {**err, "msg": f"invalid JSON ({err.get('ctx', {}).get('error', 'decode error')})"}


def _routing_detail(request: Request, exc: StarletteHTTPException, detail: str) -> str:
    """Starlette's bare "Not Found" / "Method Not Allowed" of the router, said with the request."""
    where = f"{request.method} {request.url.path[:200]!r}"
    if exc.status_code == 404 and detail == "Not Found":
        return f"no route for {where}; the API is listed at /docs and /openapi.json"
    if exc.status_code == 405 and detail == "Method Not Allowed":
        return f"method not allowed for {where}; allowed: {allowed_methods(request) or 'none'}"
    return detail


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """Every method some route takes at this path, asked of the routes themselves (Starlette's
    ``Allow`` names the first route's only, though ``GET /v1/keys`` and ``POST /v1/keys`` are two
    routes)."""
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.routes
        )
    ]
    return ", ".join(allowed)


def install_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on ``app``."""

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        response = error_response(exc.status, exc.detail, exc.code)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(NotFound)
    async def _not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return error_response(404, exc.detail, "not_found")

    @app.exception_handler(Rejected)
    async def _rejected(_request: Request, exc: Rejected) -> JSONResponse:
        response = error_response(exc.status, str(exc), exc.code)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, validation_message(exc), "invalid_input")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        detail = _routing_detail(request, exc, detail)
        response = error_response(exc.status_code, detail)
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            response.headers["Allow"] = allowed_methods(request)
        return response

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _exc: ClientDisconnect) -> JSONResponse:
        # the client closed the connection before its body arrived: nothing failed here, and no
        # one reads the answer; 499 (nginx's "client closed request") keeps it out of the 5xx count
        log.info("client disconnected during %s %s", request.method, request.url.path)
        return error_response(499, "the client disconnected before its request body arrived", "client_closed")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        response = error_response(500, "internal error; see the server log", "internal")
        # sent by Starlette's ServerErrorMiddleware, outside the security-headers middleware
        add_security_headers(response.headers)
        return response
