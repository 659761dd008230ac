"""JSON request bodies parsed once, with their nesting depth bounded before the parser recurses.

Python's ``json`` parser recurses once per nested array or object: a 16 MiB body of ``[`` raises
RecursionError (a 500, and a dropped connection under uvicorn) instead of a refusal. Here
:func:`nesting_depth` measures the depth of the raw bytes without recursion (vectorised, in
blocks), and :func:`parse_json` refuses a body deeper than the limit, not UTF-8, or holding
``NaN``/``Infinity`` (not JSON numbers), with a message saying what was expected and what came.

:class:`JsonBodyMiddleware` applies this to every request with a JSON content type when the
route first reads its body (so after authentication for routes that read it themselves), and
keeps the parsed value in the request state under :data:`JSON_BODY` so that a route need not
parse a large body twice. A refusal is a 422 ``bad_json``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from poisonlab.service.errors import error_response

#: key of the parsed body in ``request.scope["state"]``
JSON_BODY = "poisonlab_json_body"
_BLOCK = 1 << 20  # bytes scanned at a time: the scan's numpy temporaries stay near 10 MiB
_THREAD_ABOVE = 64 * 1024  # larger bodies are parsed off the event loop
# everything but the quote and the four brackets, deleted before counting
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_STEP = np.zeros(256, np.int32)  # +1 opens, -1 closes an array or object
_STEP[list(b"[{")], _STEP[list(b"]}")] = 1, -1
_QUOTE = ord('"')


def nesting_depth(data: bytes) -> int:
    """Deepest nesting of arrays and objects in the JSON text ``data`` (UTF-8), without recursion.

    Brackets inside strings do not count. The count is exact for every prefix of ``data`` that is
    valid JSON; after the first invalid byte it may be off, but a parser stops there.
    """
    depth = deepest = 0
    in_string = skip_first = False
    for start in range(0, len(data), _BLOCK):
        block = data[start : start + _BLOCK][1 if skip_first else 0 :]
        # Escapes, left to right as a parser pairs them: each run of backslashes loses its pairs,
        # then a remaining backslash escapes the next byte, which matters only for a quote (a
        # bracket in a string does not count anyway). One left at the end escapes the next block.
        block = block.replace(b"\\\\", b"").replace(b'\\"', b"")
        skip_first = block.endswith(b"\\")
        marks = np.frombuffer(block.translate(None, _NOT_STRUCTURE), np.uint8)
        if marks.size == 0:
            continue
        inside = (np.cumsum(marks == _QUOTE, dtype=np.int32) + in_string) % 2 == 1
        levels = depth + np.cumsum(np.where(inside, 0, _STEP[marks]), dtype=np.int64)
        deepest, depth, in_string = max(deepest, int(levels.max())), int(levels[-1]), bool(inside[-1])
    return deepest


class _NotJson(ValueError):
    """Valid for Python's parser, not for JSON (RFC 8259)."""


def _no_constants(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number (expected finite numbers only)")


def parse_json(body: bytes, *, max_depth: int) -> Any:
    """The value of a JSON body, refused unless UTF-8, valid, finite and at most ``max_depth`` deep.

    Raises
    ------
    ValueError
        Naming the problem: empty, not UTF-8, nested too deeply (checked before parsing), not
        valid JSON (with the parser's position), ``NaN``/``Infinity``, or an integer literal
        longer than Python converts (4,300 digits).
    """
    if not body:
        raise ValueError("body is empty; expected a JSON value")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"body is not UTF-8 (byte {exc.start}); JSON must be UTF-8") from None
    depth = nesting_depth(body)
    if depth > max_depth:
        raise ValueError(f"body nests arrays/objects {depth} levels deep; at most {max_depth} are accepted")
    try:
        return json.loads(text, parse_constant=_no_constants)
    except (json.JSONDecodeError, _NotJson) as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from None
    except ValueError:  # int() of a literal over Python's digit limit
        limit = sys.get_int_max_str_digits()
        raise ValueError(
            f"body holds an integer of more than {limit:,} digits; at most {limit:,} are accepted"
        ) from None


class BadJsonBody(HTTPException):
    """A JSON body refused while it was read (an HTTPException, so FastAPI passes it on)."""

    def __init__(self, detail: str) -> None:
        super().__init__(422, detail)


async def parse_json_async(body: bytes, *, max_depth: int) -> Any:
    """:func:`parse_json`, in a worker thread for large bodies; BadJsonBody when refused."""
    try:
        if len(body) > _THREAD_ABOVE:
            return await anyio.to_thread.run_sync(lambda: parse_json(body, max_depth=max_depth))
        return parse_json(body, max_depth=max_depth)
    except ValueError as exc:
        raise BadJsonBody(str(exc)) from None


def is_json(scope: Scope) -> bool:
    """Whether the request's content type is ``application/json`` or ``application/*+json``."""
    return is_json_media(dict(scope.get("headers") or ()).get(b"content-type", b""))


def is_json_media(content_type: bytes | str) -> bool:
    """Whether a ``Content-Type`` value names JSON (``application/json; charset=utf-8`` does,
    ``application/jsonx`` and ``text/json`` do not)."""
    if isinstance(content_type, str):
        content_type = content_type.encode("latin-1", "replace")
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class JsonBodyMiddleware:
    """Reads a JSON body whole when the app first asks for it, and refuses it unless it parses."""

    def __init__(self, app: ASGIApp, *, max_depth: int) -> None:
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_json(scope):
            await self.app(scope, receive, send)
            return
        done = False

        async def parsed() -> Message:
            nonlocal done
            if done:  # later calls wait for a disconnect
                return await receive()
            done = True
            chunks = []
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return message
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            if body:  # an empty body is the route's to refuse (or to accept)
                payload = await parse_json_async(body, max_depth=self.max_depth)
                scope.setdefault("state", {})[JSON_BODY] = payload
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, parsed, send)


def install_json_guard(app: FastAPI, *, max_depth: int) -> None:
    """Add :class:`JsonBodyMiddleware` and its 422 ``bad_json`` handler to ``app``.

    Call it before adding the body-limit middleware, so that the limit applies while this one reads.
    """

    async def _bad_json(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(422, str(getattr(exc, "detail", exc)), "bad_json")

    app.add_middleware(JsonBodyMiddleware, max_depth=max_depth)
    app.add_exception_handler(BadJsonBody, _bad_json)


async def request_json(request: Request, *, max_depth: int) -> Any:
    """The request's JSON body: the value the middleware parsed, or parsed here (BadJsonBody)."""
    body = await request.body()
    state = request.scope.get("state") or {}
    if JSON_BODY in state:
        return state[JSON_BODY]
    return await parse_json_async(body, max_depth=max_depth)
