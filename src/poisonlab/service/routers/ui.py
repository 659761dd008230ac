"""The web pages: static HTML and script files (no framework); all data comes from the API.

``GET /`` is the ImRecS page. It asks for an API key, keeps it in ``sessionStorage`` (gone when
the tab closes, never in a URL or cookie) and sends it as ``X-API-Key``. ``GET /docs`` lists the
API's routes from ``/openapi.json``; it replaces FastAPI's Swagger UI, which loads its script from
a CDN onto this origin (see :mod:`poisonlab.service.headers`). Both pages load only this origin's
files, under a Content-Security-Policy that forbids inline script and every other origin, so an
injected string in a model id or a reason cannot run as code.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

from poisonlab.service.errors import NotFound
from poisonlab.service.headers import PAGE_HEADERS

router = APIRouter(include_in_schema=False)
_STATIC = files("poisonlab.service") / "static"
_TYPES = {"app.js": "text/javascript", "docs.js": "text/javascript", "style.css": "text/css"}


def _page(name: str) -> Response:
    return Response((_STATIC / name).read_bytes(), media_type="text/html", headers=PAGE_HEADERS)


@router.get("/")
def index() -> Response:
    return _page("index.html")


@router.get("/docs")
def docs() -> Response:
    """The routes of ``/openapi.json``, listed by this origin's own script."""
    return _page("docs.html")


@router.get("/ui/{name}")
def asset(name: str) -> Response:
    if name not in _TYPES:
        raise NotFound(f"no page asset {name!r}")
    return Response((_STATIC / name).read_bytes(), media_type=_TYPES[name], headers=PAGE_HEADERS)
