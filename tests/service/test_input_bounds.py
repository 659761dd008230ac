"""Hostile input of the audit gets a 4xx JSON error that names the problem, never a 500: JSON nested
thousands deep or holding numbers no float can hold, thin images that pad to huge squares, batches
of images each within the limits, labels in other scripts' digits."""

from __future__ import annotations

import io
import json
import random
import re

import numpy as np
import pytest
from PIL import Image

from poisonlab.service import json_body
from poisonlab.service.db import Contribution
from poisonlab.service.json_body import nesting_depth, parse_json

JSON = {"Content-Type": "application/json"}


def _instances(value: str, count: int = 1) -> bytes:
    """A batch body for the 8x8 grayscale digits model with ``value`` as the last pixel."""
    pixels = ["[0]"] * 63 + [f"[{value}]"]
    image = "[" + ",".join("[" + ",".join(pixels[r * 8 : r * 8 + 8]) + "]" for r in range(8)) + "]"
    return ('{"instances": [' + ",".join([image] * count) + "]}").encode()


def _nothing_stored(svc) -> None:
    with svc.state.db.read() as session:
        assert session.query(Contribution).count() == 0
    assert list(svc.state.store) == []


# ------------------------------------------------------------------ JSON


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


def _random_json(rng: random.Random, level: int = 0) -> object:
    r = rng.random()
    if level > 5 or r < 0.3:
        return rng.choice([1, 2.5, None, True, 'x[{\\"]}', "\\", '"', "[[", "\\\\[", "\u0663"])
    if r < 0.65:
        return [_random_json(rng, level + 1) for _ in range(rng.randint(0, 3))]
    keys = ["a", "[", '"{', "\\"]
    return {rng.choice(keys): _random_json(rng, level + 1) for _ in range(rng.randint(0, 3))}


@pytest.mark.parametrize("block", [1, 2, 3, 7, 1 << 20])
def test_nesting_depth_matches_the_parsed_structure(monkeypatch, block):
    """Brackets and escaped quotes inside strings do not count, whatever the block boundaries."""
    monkeypatch.setattr(json_body, "_BLOCK", block)
    rng = random.Random(block)
    for _ in range(400):
        value = _random_json(rng)
        text = json.dumps(value, ensure_ascii=rng.random() < 0.5)
        assert nesting_depth(text.encode()) == _depth(value), text
    assert nesting_depth(b"[" * 100_000) == 100_000  # counted without recursion


def test_parse_json_refusals_name_the_problem():
    assert parse_json(b'{"a": [[1]]}', max_depth=3) == {"a": [[1]]}
    cases = [
        (b"", "body is empty"),
        (b'{"a": [[[1]]]}', "nests arrays/objects 4 levels deep; at most 3 are accepted"),
        (b"[1, 2", "body is not valid JSON"),
        (b"[NaN]", "NaN is not a JSON number"),
        (b"[-Infinity]", "-Infinity is not a JSON number"),
        (b"[" + b"7" * 5000 + b"]", "an integer of more than 4,300 digits"),
        (b'["\xff"]', "not UTF-8 (byte 2)"),
    ]
    for body, words in cases:
        with pytest.raises(ValueError, match=re.escape(words)):
            parse_json(body, max_depth=3)


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("POST", "/v1/predict/batch", "viewer"),
        ("POST", "/v1/training-runs", "trainer"),
        ("POST", "/v1/keys", "admin"),
        ("POST", "/v1/sources", "admin"),
        ("POST", "/v1/contributions/1/reject", "admin"),
    ],
)
def test_deeply_nested_json_is_a_422_on_every_json_route(service, method, path, role):
    body = b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = service.client.request(method, path, content=body, headers={**service.headers(role), **JSON})
    assert response.status_code == 422, response.text
    assert response.json() == {
        "detail": "body nests arrays/objects 5001 levels deep; at most 32 are accepted",
        "code": "bad_json",
    }


def test_brackets_inside_strings_are_not_nesting(service, digits):
    image = digits.test.x[0][..., 0].tolist()
    body = {"instances": [[[[v] for v in row] for row in image]], "note": "[" * 5000 + '\\"{' * 100}
    response = service.client.post("/v1/predict/batch", json=body, headers=service.headers("viewer"))
    assert response.status_code == 200 and len(response.json()["predictions"]) == 1


@pytest.mark.parametrize(
    ("value", "code", "words"),
    [
        (str(10**400), "bad_instances", "got one beyond the float range"),  # was an OverflowError (500)
        ("1e400", "bad_instances", "got inf at instances[0][7][7][0] (1 such values)"),
        ("9" * 5000, "bad_json", "more than 4,300 digits"),
        ("NaN", "bad_json", "NaN is not a JSON number"),
        ("Infinity", "bad_json", "Infinity is not a JSON number"),
        ("true", "bad_instances", "numeric (JSON numbers in [0, 255]), not bool"),
        ('"7"', "bad_instances", "not str"),
        ("null", "bad_instances", "not NoneType"),
        ("[1]", "bad_instances", "not list"),
        ("-1", "bad_instances", "in [0, 255], got -1 at instances[0][7][7][0] (1 such values)"),
        ("255.5", "bad_instances", "got 255.5 at instances[0][7][7][0]"),
    ],
)
def test_batch_values_are_finite_numbers_of_the_right_type(service, value, code, words):
    headers = {**service.headers("viewer"), **JSON}
    response = service.client.post("/v1/predict/batch", content=_instances(value), headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code and words in response.json()["detail"], response.json()


def test_empty_and_non_utf8_bodies(service):
    headers = {**service.headers("viewer"), **JSON}
    empty = service.client.post("/v1/predict/batch", content=b"", headers=headers)
    assert empty.status_code == 422 and empty.json()["detail"] == "body is empty; expected a JSON value"
    latin1 = service.client.post(
        "/v1/predict/batch", content='{"instances": "é"}'.encode("latin-1"), headers=headers
    )
    assert latin1.status_code == 422 and latin1.json()["code"] == "bad_json"
    assert "not UTF-8" in latin1.json()["detail"]


def test_batch_json_valid_numbers_still_predict(service):
    headers = {**service.headers("viewer"), **JSON}
    response = service.client.post("/v1/predict/batch", content=_instances("254.6", 2), headers=headers)
    assert response.status_code == 200 and len(response.json()["predictions"]) == 2


def test_json_batch_total_pixels(make_service):
    svc = make_service(max_batch_pixels=100)  # two 8x8 images: 128 pixels
    headers = {**svc.headers("viewer"), **JSON}
    response = svc.client.post("/v1/predict/batch", content=_instances("0", 2), headers=headers)
    assert response.status_code == 413 and response.json()["code"] == "batch_too_large"
    assert "2 images of 8x8 = 128 pixels, over the 100-pixel limit" in response.json()["detail"]


def test_content_length_of_thousands_of_digits(service):
    headers = {**service.headers("viewer"), **JSON}
    huge = service.client.post(
        "/v1/predict/batch", content=b"{}", headers={**headers, "Content-Length": "9" * 5000}
    )
    assert huge.status_code == 413 and huge.json()["code"] == "body_too_large"
    zeros = {**headers, "Content-Length": "0" * 5000 + "2"}
    padded = service.client.post("/v1/predict/batch", content=b"{}", headers=zeros)
    assert padded.status_code == 422 and padded.json()["code"] == "bad_instances"


def test_control_characters_in_stored_text_are_refused(service):
    admin = service.headers("admin")
    key = service.client.post("/v1/keys", json={"name": "a\x00b", "role": "viewer"}, headers=admin)
    assert key.status_code == 422 and "control characters, got '\\x00' at 1" in key.json()["detail"]
    alerts = service.client.get("/v1/alerts", params={"kind": "gate\x00"}, headers=admin)
    assert alerts.status_code == 422 and alerts.json()["detail"].startswith("query.kind:")
    audit = service.client.get("/v1/audit", params={"actor": "x\x1b[2J"}, headers=admin)
    assert audit.status_code == 422


# ------------------------------------------------------------------ images


def test_the_thin_png_of_the_audit_is_refused_without_decoding(service, decodes, png_of_size):
    thin = png_of_size((2000, 20000))  # 39 KB; pads to a 20000 x 20000 square
    assert len(thin) < 60_000
    predicted = service.client.post(
        "/v1/predict", files={"file": ("thin.png", thin)}, headers=service.headers("viewer")
    )
    contributed = service.client.post(
        "/v1/contributions",
        files={"file": ("thin.png", thin)},
        data={"label": "3"},
        headers=service.headers("contributor"),
    )
    batch = service.client.post(
        "/v1/predict/batch",
        files=[("files", ("a.png", png_of_size((8, 8)))), ("files", ("thin.png", thin))],
        headers=service.headers("viewer"),
    )
    for response, name in ((predicted, "thin.png"), (contributed, "file"), (batch, "thin.png")):
        assert response.status_code == 422 and response.json()["code"] == "image_too_large"
        assert response.json()["detail"].startswith(f"{name} is 2000x20000 = 40,000,000 pixels, over the")
    assert decodes == []  # refused from the header: not even the batch's small image was decoded
    _nothing_stored(service)


@pytest.mark.parametrize(
    ("settings", "size", "words"),
    [
        ({}, (1000, 16000), "1000x16000, a side of 16,000 pixels, over the 4,096-pixel limit per side"),
        (
            {"max_pixels": 40_000_000, "max_image_side": 20_000},
            (2000, 20000),
            "padded to a 20000x20000 square of 400,000,000 pixels, over the 40,000,000-pixel limit",
        ),
    ],
)
def test_sides_and_padded_square_are_bounded(make_service, decodes, png_of_size, settings, size, words):
    svc = make_service(**settings)
    response = svc.client.post(
        "/v1/predict", files={"file": ("t.png", png_of_size(size))}, headers=svc.headers("viewer")
    )
    assert response.status_code == 422 and response.json()["code"] == "image_too_large"
    assert words in response.json()["detail"]
    assert decodes == []


def test_file_bytes_are_bounded_per_image(make_service, decodes):
    svc = make_service(max_image_bytes=2048)
    noise = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    assert len(buf.getvalue()) > 2048
    for response in (
        svc.client.post(
            "/v1/predict", files={"file": ("n.png", buf.getvalue())}, headers=svc.headers("viewer")
        ),
        svc.client.post(
            "/v1/contributions",
            files={"file": ("n.png", buf.getvalue())},
            data={"label": "3"},
            headers=svc.headers("contributor"),
        ),
    ):
        assert response.status_code == 413 and response.json()["code"] == "file_too_large"
        assert "bytes, over the 2,048-byte limit per image" in response.json()["detail"]
    assert decodes == []
    _nothing_stored(svc)


def test_batch_of_files_is_bounded_in_total_pixels(make_service, decodes, png_of_size):
    svc = make_service(max_batch_pixels=10_000)
    files = [("files", (f"{i}.png", png_of_size((64, 40), "RGB"))) for i in range(3)]  # 3 x 64 x 64 padded
    response = svc.client.post("/v1/predict/batch", files=files, headers=svc.headers("viewer"))
    assert response.status_code == 413 and response.json()["code"] == "batch_too_large"
    assert response.json()["detail"] == (
        "the batch is 3 images padding to 12,288 pixels in all, over the 10,000-pixel limit per batch"
    )
    assert decodes == []
    two = svc.client.post("/v1/predict/batch", files=files[:2], headers=svc.headers("viewer"))
    assert two.status_code == 200 and len(two.json()["predictions"]) == 2
    assert set(decodes) == {(64, 40)}  # decoded once within the limits


# ------------------------------------------------------------------ labels


@pytest.mark.parametrize("label", ["\u0663", "\uff13", "\u00b3", "+3", "0_3", "3.0", "three"])
def test_labels_in_other_digits_are_refused_with_the_class_names(service, png, label):
    response = service.client.post(
        "/v1/contributions",
        files={"file": ("x.png", png(np.zeros((8, 8, 1), np.uint8)))},
        data={"label": label},
        headers=service.headers("contributor"),
    )
    assert response.status_code == 422 and response.json()["code"] == "unknown_label"
    assert "expected one of ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']" in response.json()["detail"]
    _nothing_stored(service)


def test_ascii_labels_are_accepted(service, png):
    for i, label in enumerate(("3", "03")):
        response = service.client.post(
            "/v1/contributions",
            files={"file": ("x.png", png(np.full((8, 8, 1), i, np.uint8)))},
            data={"label": label},
            headers=service.headers("contributor"),
        )
        assert response.status_code == 201 and response.json()["label"] == 3
        assert response.json()["label_name"] == "3"


def test_an_out_of_range_pixel_is_named_by_its_index_in_a_batch(service):
    """The first bad value of the second image: its index and how many values are bad."""
    headers = {**service.headers("viewer"), **JSON}
    body = _instances("0", count=1)[:-2] + b"," + _instances("300", count=1)[len(b'{"instances": [') :]
    response = service.client.post("/v1/predict/batch", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].endswith("got 300 at instances[1][7][7][0] (1 such values)")
