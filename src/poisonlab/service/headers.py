"""Security headers on every response: no third-party script may run on the origin holding the key.

The web page keeps an API key in ``sessionStorage``, so any script running on this origin could read
it. FastAPI's ``/docs`` and ``/redoc`` load Swagger UI and ReDoc from a CDN without integrity
hashes; the service turns them off (``/openapi.json`` stays) and serves its own page of routes
(:mod:`poisonlab.service.routers.ui`) under :data:`PAGE_CSP`, which allows this origin's script
and style files only (no inline script, no other origin).

:class:`SecurityHeadersMiddleware` adds to every response that does not set its own:

* ``Content-Security-Policy``: :data:`API_CSP` (a JSON response loads nothing and is framed by
  nobody); pages set :data:`PAGE_CSP`;
* ``X-Content-Type-Options: nosniff`` (a browser never guesses HTML from a JSON error that echoes
  input), ``X-Frame-Options: DENY`` (for browsers without ``frame-ancestors``) and
  ``Referrer-Policy: no-referrer``.

It is the outermost middleware of the application, so that the refusals of the layers inside it
(the rate limiter's 429, the body limit's 413, the JSON guard's 400/413) carry the headers too.
Only Starlette's ``ServerErrorMiddleware`` sits outside every user middleware; the 500 handler
therefore adds them itself with :func:`add_security_headers`.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
#: what a page sends (the UI router's responses)
PAGE_HEADERS = {"Content-Security-Policy": PAGE_CSP, **COMMON_HEADERS}
_DEFAULTS = {"Content-Security-Policy": API_CSP, **COMMON_HEADERS}


def add_security_headers(headers: MutableHeaders) -> None:
    """Set :data:`API_CSP` and :data:`COMMON_HEADERS` on ``headers`` where it has none of its own."""
    for name, value in _DEFAULTS.items():
        if name not in headers:
            headers[name] = value


class SecurityHeadersMiddleware:
    """Adds :data:`API_CSP` and :data:`COMMON_HEADERS` where a response does not set them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_security_headers(MutableHeaders(scope=message))
            await send(message)

        await self.app(scope, receive, send_with_headers)
