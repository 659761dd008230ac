"""Bad input never gets a 500 and never leaves half-stored data: each case is a 4xx JSON error
that names the problem, and the contribution table and blob store stay empty."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from poisonlab.service import contributions as lib
from poisonlab.service.audit import Actor
from poisonlab.service.db import ApiKey, Contribution


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def _contribute(svc, content: bytes, label: str = "3", **fields: str):
    data = {"label": label, **fields}
    return svc.client.post(
        "/v1/contributions",
        files={"file": ("upload.png", content, "image/png")},
        data=data,
        headers=svc.headers("contributor"),
    )


def _assert_nothing_stored(svc) -> None:
    with svc.state.db.read() as session:
        assert session.query(Contribution).count() == 0
    assert list(svc.state.store) == []


BAD_FILES = {
    "not_an_image": (b"hello, this is text", "bad_image", "not an image"),
    "empty": (b"", "empty_file", "empty"),
    "truncated_png": (_png((40, 40))[:-30], "bad_image", "not a readable image"),
    "truncated_jpeg": (_jpeg()[: len(_jpeg()) // 2], "bad_image", "not a readable image"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_image_files(make_service, case):
    svc = make_service(unsigned_policy="pending")
    content, code, words = BAD_FILES[case]
    for response in (
        _contribute(svc, content),
        svc.client.post("/v1/predict", files={"file": ("x", content)}, headers=svc.headers("viewer")),
    ):
        assert response.status_code == 422, response.text
        assert response.json()["code"] == code and words in response.json()["detail"]
    _assert_nothing_stored(svc)


def test_decompression_bomb_is_refused_before_decoding(make_service):
    svc = make_service(max_pixels=1_000_000)
    bomb = _png((5000, 5000), mode="1")  # 25 Mpx in a few kilobytes
    assert len(bomb) < 50_000
    response = _contribute(svc, bomb)
    assert response.status_code == 422
    assert response.json()["code"] == "image_too_large" and "25,000,000 pixels" in response.json()["detail"]
    predicted = svc.client.post("/v1/predict", files={"file": ("b.png", bomb)}, headers=svc.headers("viewer"))
    assert predicted.json()["code"] == "image_too_large"
    _assert_nothing_stored(svc)


def test_oversize_body_by_content_length(make_service):
    svc = make_service(max_body_bytes=64 * 1024)
    response = _contribute(svc, b"\0" * (100 * 1024))
    assert response.status_code == 413 and response.json()["code"] == "body_too_large"
    assert "65,536-byte limit" in response.json()["detail"]
    _assert_nothing_stored(svc)


def test_oversize_chunked_body(make_service):
    """Without Content-Length the limit holds while reading (the stop itself is checked against a
    real server in test_server.py: TestClient buffers the whole body before the app sees it)."""
    svc = make_service(max_body_bytes=64 * 1024)

    def chunks():
        for _ in range(100):
            yield b"x" * (16 * 1024)

    response = svc.client.post(
        "/v1/predict/batch",
        content=chunks(),
        headers={**svc.headers("viewer"), "Content-Type": "application/json"},
    )
    assert response.status_code == 413 and response.json()["code"] == "body_too_large"


def test_unknown_label_and_bad_fields(service, png):
    svc = service
    image = png(np.zeros((8, 8, 1), np.uint8))
    cases = [
        (_contribute(svc, image, label="airplane"), "unknown_label", "unknown label 'airplane'"),
        (_contribute(svc, image, label="10"), "unknown_label", "out of range"),
        (_contribute(svc, image, label="  "), "invalid_input", "label: field required"),
        (_contribute(svc, image, source="bad name!"), "bad_source", "source names"),
        (_contribute(svc, image, signature="%%%", source="cam"), "unknown_source", "not registered"),
        (_contribute(svc, image, signature="AAAA"), "bad_signature", "needs the source"),
    ]
    for response, code, words in cases:
        assert response.status_code == 422, response.text
        assert response.json()["code"] == code and words in response.json()["detail"], response.json()
    missing_file = svc.client.post(
        "/v1/contributions",
        data={"label": "1"},
        files={"other": ("a", b"x")},
        headers=svc.headers("contributor"),
    )
    assert (
        missing_file.status_code == 422 and "file: a file field is required" in missing_file.json()["detail"]
    )
    _assert_nothing_stored(svc)


@pytest.mark.parametrize("ctype", ["text/json", "application/jsonx", "text/plain", None])
def test_batch_prediction_takes_multipart_or_json_and_names_both(service, ctype):
    headers = {**service.headers("viewer"), **({"Content-Type": ctype} if ctype else {})}
    response = service.client.post("/v1/predict/batch", content=b'{"instances": []}', headers=headers)
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"
    assert response.json()["detail"] == (
        f"expected multipart/form-data or application/json, got {ctype or 'no content type'}"
    )


@pytest.mark.parametrize(
    ("path", "role"),
    [
        ("/v1/keys", "admin"),
        ("/v1/sources", "admin"),
        ("/v1/training-runs", "trainer"),
        ("/v1/contributions/1/release", "admin"),
        ("/v1/contributions/1/reject", "admin"),
    ],
)
def test_json_routes_refuse_other_content_types_with_415(service, path, role):
    """A JSON object sent as text/plain was handed to the model as bytes: a 422 "valid dictionary"."""
    body = b'{"name": "x", "role": "viewer"}'
    headers = {**service.headers(role), "Content-Type": "text/plain"}
    response = service.client.post(path, content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert response.json() == {
        "detail": "expected application/json, got 'text/plain'",
        "code": "unsupported_media_type",
    }
    anonymous = service.client.post(path, content=body, headers={"Content-Type": "text/plain"})
    assert anonymous.status_code == 401  # the key is checked first
    with service.state.db.read() as session:
        assert session.query(ApiKey).count() == 4  # nothing was created


def test_wrong_content_types_and_bad_json(service):
    svc, viewer = service, service.headers("viewer")
    as_json = svc.client.post("/v1/predict", json={"file": "x"}, headers=viewer)
    assert as_json.status_code == 415 and "multipart/form-data" in as_json.json()["detail"]
    bad_json = svc.client.post(
        "/v1/predict/batch", content=b"{not json", headers={**viewer, "Content-Type": "application/json"}
    )
    assert bad_json.status_code == 422 and bad_json.json()["code"] == "bad_json"
    cases = [
        ({"images": []}, '{"instances": [...]}'),
        ({"instances": []}, "non-empty list"),
        ({"instances": [[[0] * 3] * 8]}, "shape"),
        ({"instances": [[[[0]] * 8] * 8, [[[0]] * 8] * 7]}, "equally shaped"),
        ({"instances": [[[[300]] * 8] * 8]}, "[0, 255]"),
        ({"instances": [[[["a"]] * 8] * 8]}, "numeric"),
    ]
    for body, words in cases:
        response = svc.client.post("/v1/predict/batch", json=body, headers=viewer)
        assert response.status_code == 422 and words in response.json()["detail"], (body, response.json())
    runs = svc.client.post("/v1/training-runs", json={"epochs": "many"}, headers=svc.headers("trainer"))
    assert runs.status_code == 422 and runs.json()["detail"].startswith("epochs:")
    huge_id = svc.client.get("/v1/contributions/99999999999999999999999", headers=svc.headers("trainer"))
    assert huge_id.status_code == 422


def test_batch_limit(make_service):
    svc = make_service(max_batch=4)
    zeros = [[[[0]] * 8] * 8] * 5
    response = svc.client.post("/v1/predict/batch", json={"instances": zeros}, headers=svc.headers("viewer"))
    assert response.status_code == 422 and "batch limit of 4" in response.json()["detail"]
    files = [("files", (f"{i}.png", _png((8, 8)), "image/png")) for i in range(5)]
    response = svc.client.post("/v1/predict/batch", files=files, headers=svc.headers("viewer"))
    assert response.status_code == 422 and "batch limit of 4" in response.json()["detail"]


def test_failure_after_file_write_leaves_no_row(service, monkeypatch):
    """A database failure after the blob write: no row, a harmless content-addressed orphan file."""
    svc = service
    image = _png((8, 8))

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("poisonlab.service.contributions.record", broken)
    with pytest.raises(RuntimeError):
        loaded = svc.state.server.current()
        with svc.state.db.write() as session:
            lib.submit(
                session,
                svc.state.store,
                lib.Upload(image, "1"),
                actor=Actor("x", "contributor"),
                class_names=loaded.class_names,
                input_shape=loaded.input_shape,
                max_pixels=10**6,
                policy=svc.state.policy,
            )
    with svc.state.db.read() as session:
        assert session.query(Contribution).count() == 0
    orphans = svc.state.store.orphans([])
    assert len(orphans) == 1 and svc.state.store.get(orphans[0]) == image


@pytest.mark.parametrize(
    ("method", "path", "detail"),
    [
        ("GET", "/v1/models/nope", "no model version 'nope'"),
        ("POST", "/v1/models/nope/promote", "no model version 'nope'"),
        ("GET", "/v1/contributions/999", "no contribution with id 999"),
        ("POST", "/v1/contributions/999/release", "no contribution with id 999"),
        ("POST", "/v1/contributions/999/reject", "no contribution with id 999"),
        ("GET", "/v1/training-runs/999", "no training run with id 999"),
        ("POST", "/v1/keys/999/revoke", "no API key with id 999"),
        ("POST", "/v1/alerts/999/resolve", "no alert with id 999"),
        ("GET", "/ui/nope.js", "no page asset 'nope.js'"),
    ],
)
def test_unknown_ids_are_one_kind_of_404(service, method, path, detail):
    """Every lookup of an unknown object gives the same 404 body (one handler, NotFound)."""
    response = service.client.request(method, path, headers=service.headers("admin"))
    assert response.status_code == 404
    assert response.json() == {"detail": detail, "code": "not_found"}


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("GET", "/v1/contributions/+1", "contribution_id"),
        ("POST", "/v1/contributions/%201/release", "contribution_id"),
        ("GET", "/v1/training-runs/1_0", "run_id"),
        ("POST", "/v1/keys/+1/revoke", "key_id"),
        ("POST", "/v1/alerts/%EF%BC%91/resolve", "alert_id"),  # a full-width digit one
    ],
)
def test_row_ids_in_paths_are_digits_only(service, method, path, name):
    """Pydantic's lax int read "+1", " 1" and "1_0" as row 1 or 10: one row has one URL."""
    response = service.client.request(method, path, headers=service.headers("admin"))
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"path.{name}: must be a row id: decimal digits only, got ")
    with service.state.db.read() as session:  # nothing was released or revoked on the way
        assert all(k.revoked_at is None for k in session.query(ApiKey))


def test_unrouted_requests_say_what_was_asked_and_what_is_allowed(service):
    missing = service.client.get("/v1/nope", headers=service.headers("viewer"))
    assert missing.status_code == 404
    expected = "no route for GET '/v1/nope'; the API is listed at /docs and /openapi.json"
    assert missing.json()["detail"] == expected
    wrong = service.client.delete("/v1/keys", headers=service.headers("admin"))
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, POST"
    assert wrong.json()["detail"] == "method not allowed for DELETE '/v1/keys'; allowed: GET, POST"


@pytest.mark.parametrize("cut", [20, 60, 200])
def test_a_truncated_multipart_upload_is_named_as_one(service, png, cut):
    """The parser drops a part cut off mid-way: the client was told "a file field is required"."""
    image = png(np.zeros((8, 8, 1), np.uint8))
    request = service.client.build_request(
        "POST", "/v1/contributions", data={"label": "1"}, files={"file": ("a.png", image)}
    )
    body = request.read()
    headers = {**service.headers("contributor"), "Content-Type": request.headers["content-type"]}
    whole = service.client.post("/v1/predict", content=body, headers={**headers, **service.headers("viewer")})
    assert whole.status_code == 200, whole.text  # the same body, complete, is read
    response = service.client.post("/v1/contributions", content=body[:-cut], headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["detail"] == (
        f"the multipart body ends before its closing boundary ({len(body) - cut:,} bytes arrived): "
        "a truncated upload"
    )
    _assert_nothing_stored(service)


def test_a_multipart_type_without_a_boundary_is_refused(service):
    headers = {**service.headers("viewer"), "Content-Type": "multipart/form-data"}
    response = service.client.post("/v1/predict", content=b"--x\r\n", headers=headers)
    assert response.status_code == 400
    assert response.json()["detail"] == "multipart/form-data needs a boundary parameter"
