"""The web pages in headless Chromium (Debian's ``chromium`` driven by Playwright): enter a key,
upload an image, see the prediction; the dashboard lists the serving model; the API page lists the
routes. Both work under their Content-Security-Policy: the browser reports no violation."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn

CHROMIUM = "/usr/bin/chromium"
playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = [
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is missing (apt-get install chromium)"
    ),
    pytest.mark.timeout(180),
]


def _csp_violations(message) -> list[str]:
    """The console message if it reports a Content-Security-Policy violation (the dashboard's 403s
    for a viewer key are console errors too, and expected)."""
    return [message.text] if "Content Security Policy" in message.text else []


@pytest.fixture
def live(make_service):
    """The service of ``make_service`` behind a real uvicorn on a free loopback port (in a thread)."""
    svc = make_service()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(svc.client.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield svc, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_upload_an_image_and_see_the_prediction(live, tmp_path: Path, png, digits):
    svc, url = live
    index = int(next(i for i in range(50) if digits.test.y[i] == 4))
    image = tmp_path / "four.png"
    image.write_bytes(png(digits.test.x[index]))
    expected = svc.client.post(
        "/v1/predict", files={"file": ("f.png", image.read_bytes())}, headers=svc.headers("viewer")
    ).json()["class_name"]
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.extend(_csp_violations(msg)))
            page.goto(url + "/")
            assert page.title() == "ImRecS"
            page.fill("#api-key", svc.keys["viewer"])
            page.click("#key-save")
            expect = playwright_api.expect  # locator waits need no eval, which the page's CSP forbids
            expect(page.locator("#whoami")).to_contain_text("(viewer)")
            page.set_input_files("#predict-file", str(image))
            page.click("#predict-button")
            expect(page.locator("#prediction")).to_have_text(expected)
            assert page.locator("#top-classes li").count() == 3
            assert svc.state.server.current().version_id in page.inner_text("#prediction-model")
            expect(page.locator("#models-table tbody")).to_contain_text("serving")
            expect(page.locator("#runs-note")).to_contain_text("higher role")  # runs need a trainer key
            stored = page.evaluate("sessionStorage.getItem('imrecs-api-key')")
            assert stored == svc.keys["viewer"] and svc.keys["viewer"] not in page.url
            page.screenshot(path=str(tmp_path / "ui.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()


def test_page_headers_forbid_inline_script(service):
    response = service.client.get("/")
    assert response.status_code == 200 and "<title>ImRecS</title>" in response.text
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert service.client.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
    assert service.client.get("/ui/secret.txt").status_code == 404


def test_api_page_lists_the_routes_under_its_csp(live):
    svc, url = live
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            requested: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.extend(_csp_violations(msg)))
            page.on("request", lambda request: requested.append(request.url))
            response = page.goto(url + "/docs")
            assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
            expect = playwright_api.expect
            expect(page.locator("#routes-note")).to_contain_text("routes;")
            table = page.locator("#routes-table tbody")
            expect(table).to_contain_text("/v1/predict/batch")
            expect(table).to_contain_text("/v1/status")
            assert page.title() == "ImRecS API"
            paths = svc.client.get("/openapi.json").json()["paths"]
            operations = sum(len(item) for item in paths.values())
            assert page.locator("#routes-table tbody tr").count() == operations
            assert page.locator("#schemas dt").count() > 5
            assert errors == []
            assert requested and all(r.startswith(url) for r in requested), requested
        finally:
            browser.close()
