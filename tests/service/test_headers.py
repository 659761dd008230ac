"""What the service shows without a key, and the headers that keep other origins' scripts away from
the origin holding the key: liveness only on /v1/health, no CDN-loaded /docs or /redoc, a strict
Content-Security-Policy on the pages and nosniff / no framing / no referrer on every response."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest
from fastapi.testclient import TestClient

from poisonlab import __version__

STATIC = files("poisonlab.service") / "static"


def _directives(csp: str) -> dict[str, list[str]]:
    parts = (d.split() for d in csp.split(";") if d.strip())
    return {p[0]: p[1:] for p in parts}


def test_health_without_a_key_is_liveness_only(service):
    response = service.client.get("/v1/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    model = service.state.server.current().version_id
    assert model not in response.text and __version__ not in response.text


def test_status_names_model_and_versions_to_a_key_only(service):
    model = service.state.server.current().version_id
    anonymous = service.client.get("/v1/status")
    assert anonymous.status_code == 401 and model not in anonymous.text
    status = service.client.get("/v1/status", headers=service.headers("viewer"))
    assert status.json() == {"status": "ok", "model_version": model, "service_version": __version__}


def test_openapi_stays_without_the_software_version(service):
    schema = service.client.get("/openapi.json").json()
    assert schema["info"]["version"] == "1" and __version__ != "1"
    assert "/v1/status" in schema["paths"] and "/docs" not in schema["paths"]


def test_no_cdn_docs_and_our_own_docs_page(service):
    assert service.client.get("/redoc").status_code == 404
    assert service.client.get("/docs/oauth2-redirect").status_code == 404
    page = service.client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/ui/docs.js" defer></script>' in page.text
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text), "a page loads another origin"
    script = service.client.get("/ui/docs.js")
    assert script.status_code == 200 and 'fetch("/openapi.json")' in script.text
    assert "innerHTML" not in script.text  # schema text is written as text, never as HTML


@pytest.mark.parametrize("path", ["/", "/docs"])
def test_pages_forbid_inline_script_and_other_origins(service, path):
    headers = service.client.get(path).headers
    csp = _directives(headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"] and csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"] and csp["frame-ancestors"] == ["'none'"]
    sources = [s for values in csp.values() for s in values]
    assert not [s for s in sources if s.startswith(("http", "'unsafe")) or s == "*"], sources
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize(
    ("method", "path", "role", "status"),
    [
        ("GET", "/v1/health", None, 200),
        ("GET", "/v1/me", None, 401),
        ("GET", "/v1/models/nope", "viewer", 404),
        ("GET", "/openapi.json", None, 200),
        ("GET", "/ui/app.js", None, 200),
        ("POST", "/v1/predict/batch", "viewer", 422),
    ],
)
def test_every_response_carries_the_security_headers(service, method, path, role, status):
    response = service.client.request(method, path, headers=service.headers(role), json={})
    assert response.status_code == status
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    csp = _directives(response.headers["content-security-policy"])
    assert csp["frame-ancestors"] == ["'none'"]
    if not response.headers["content-type"].startswith("text/"):
        assert csp["default-src"] == ["'none'"] and "script-src" not in csp


def _assert_api_headers(response) -> None:
    """The security headers of a JSON response, whoever answered it."""
    assert response.headers["x-content-type-options"] == "nosniff", response.headers
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    csp = _directives(response.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]


def test_body_limit_refusal_also_carries_them(make_service):
    svc = make_service(max_body_bytes=1024)
    viewer = svc.headers("viewer")
    response = svc.client.post("/v1/predict/batch", content=b"x" * 2048, headers=viewer)
    assert response.status_code == 413
    _assert_api_headers(response)
    # refused from the Content-Length alone, before the body is read
    bad_length = {**viewer, "Content-Length": "12x"}
    response = svc.client.post("/v1/predict/batch", content=b"x" * 3, headers=bad_length)
    assert response.status_code == 400
    _assert_api_headers(response)


def test_json_guard_refusal_carries_them(service):
    deep = b'{"instances": ' + b"[" * 100 + b"]" * 100 + b"}"
    headers = {**service.headers("viewer"), "Content-Type": "application/json"}
    response = service.client.post("/v1/predict/batch", content=deep, headers=headers)
    assert 400 <= response.status_code < 500
    _assert_api_headers(response)


def test_rate_limited_responses_carry_them(make_service):
    """A flood until the limiter answers: its 429 has the headers and a Retry-After."""
    svc = make_service(rate_limit_per_key=0.001, rate_limit_key_burst=3, rate_limit_anonymous=0.001,
                       rate_limit_anonymous_burst=2)  # fmt: skip
    viewer = svc.headers("viewer")
    keyed = [svc.client.get("/v1/me", headers=viewer) for _ in range(8)]
    anonymous = [svc.client.get("/v1/me") for _ in range(4)]
    for flood in (keyed, anonymous):
        limited = [r for r in flood if r.status_code == 429]
        assert limited, [r.status_code for r in flood]
        for response in limited:
            _assert_api_headers(response)
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["code"] == "rate_limited"


def test_an_unexpected_error_carries_them(service):
    """The 500 of a bug is sent by Starlette's outermost error middleware, outside every other."""

    def boom() -> None:
        raise RuntimeError("a bug")

    service.client.app.add_api_route("/v1/test-boom", boom)
    client = TestClient(service.client.app, raise_server_exceptions=False)  # the app is started already
    response = client.get("/v1/test-boom")
    assert response.status_code == 500 and response.json()["code"] == "internal"
    _assert_api_headers(response)


@pytest.mark.parametrize("name", ["index.html", "docs.html"])
def test_static_pages_have_no_inline_script_or_style(name):
    html = (STATIC / name).read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts)
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
