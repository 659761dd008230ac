"""The web page: a static HTML page and script (no framework); all data comes from the API.

The page asks for an API key, keeps it in ``sessionStorage`` (gone when the tab closes, never in a
URL or cookie) and sends it as ``X-API-Key``. A strict Content-Security-Policy allows only this
origin's script, so an injected string in a model id or a reason cannot run as code.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

from poisonlab.service.errors import NotFound

router = APIRouter(include_in_schema=False)
_STATIC = files("poisonlab.service") / "static"
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_TYPES = {"app.js": "text/javascript", "style.css": "text/css"}


@router.get("/")
def index() -> Response:
    return Response((_STATIC / "index.html").read_bytes(), media_type="text/html", headers=_HEADERS)


@router.get("/ui/{name}")
def asset(name: str) -> Response:
    if name not in _TYPES:
        raise NotFound(f"no page asset {name!r}")
    return Response((_STATIC / name).read_bytes(), media_type=_TYPES[name], headers=_HEADERS)
