"""Contributions: signing, the policy for unsigned and unknown-source data, review, storage."""

from __future__ import annotations

import base64
import hashlib

import pytest

from poisonlab.service.signing import (
    decode_signature,
    generate_keypair,
    load_private_key,
    sign_contribution,
    signed_message,
    verify_contribution,
)
from poisonlab.service.storage import BlobStore


@pytest.fixture
def image(png, digits) -> bytes:
    return png(digits.test.x[0])


@pytest.fixture
def source_key(tmp_path):
    private, public = generate_keypair(tmp_path / "keys", "camera")
    return load_private_key(private), public.read_text()


def _post(svc, content, label, role="contributor", **fields):
    return svc.client.post(
        "/v1/contributions",
        files={"file": ("digit.png", content, "image/png")},
        data={"label": label, **fields},
        headers=svc.headers(role),
    )


def _register(svc, name, pem):
    response = svc.client.post(
        "/v1/sources", json={"name": name, "public_key_pem": pem}, headers=svc.headers("admin")
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_signed_message_format():
    digest, nonce = hashlib.sha256(b"img").hexdigest(), "n" * 32
    expected = f"poisonlab-contribution-v2\n{digest}\nbird\n1700000000\n{nonce}".encode()
    assert signed_message(digest, "bird", 1700000000, nonce) == expected
    with pytest.raises(ValueError, match="64 lowercase hex"):
        signed_message("ABC", "bird", 1700000000, nonce)
    with pytest.raises(ValueError, match="single line"):
        signed_message(digest, "bird\nairplane", 1700000000, nonce)
    with pytest.raises(ValueError, match="timestamp"):
        signed_message(digest, "bird", -1, nonce)
    with pytest.raises(ValueError, match="nonce"):
        signed_message(digest, "bird", 1700000000, "short")
    with pytest.raises(ValueError, match="64 bytes"):
        decode_signature(base64.b64encode(b"short").decode())


def test_signature_binds_image_and_label(source_key):
    key, pem = source_key
    sig = sign_contribution(key, b"image-bytes", "bird")
    digest = hashlib.sha256(b"image-bytes").hexdigest()
    verify_contribution(pem, sig, digest, "bird")
    with pytest.raises(ValueError, match="does not verify"):
        verify_contribution(pem, sig, digest, "airplane")
    with pytest.raises(ValueError, match="does not verify"):
        verify_contribution(pem, sig, hashlib.sha256(b"other").hexdigest(), "bird")


def test_signed_contribution_is_pending_and_durable(service, image, source_key):
    key, pem = source_key
    source = _register(service, "camera-1", pem)
    assert len(source["fingerprint"]) == 64
    response = _post(service, image, "7", signature=sign_contribution(key, image, "7"), source="camera-1")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "pending" and body["reason"] == "signed by camera-1"
    assert body["contributor"] == "contributor-key" and body["source"] == "camera-1"
    assert body["sha256"] == hashlib.sha256(image).hexdigest() and body["label_name"] == "7"
    store = BlobStore(service.settings.blob_dir)
    assert store.get(body["sha256"]) == image
    assert not list(store.root.glob("*/.tmp-*"))  # no temporary files left behind
    fetched = service.client.get(f"/v1/contributions/{body['id']}", headers=service.headers("trainer")).json()
    assert fetched == body


def test_bad_signature_is_refused_and_nothing_stored(service, image, source_key):
    key, pem = source_key
    _register(service, "camera-1", pem)
    other_key, _ = generate_keypair(service.settings.data_dir / "other", "x")
    cases = {
        "wrong label": sign_contribution(key, image, "1"),
        "wrong key": sign_contribution(load_private_key(other_key), image, "7"),
        "other image": sign_contribution(key, image + b"\0", "7"),
        "not base64": "***",
    }
    for case, signature in cases.items():
        response = _post(service, image, "7", signature=signature, source="camera-1")
        assert response.status_code == 422, case
        assert response.json()["code"] == "bad_signature", (case, response.json())
    assert service.client.get("/v1/contributions", headers=service.headers("trainer")).json() == []
    assert list(service.state.store) == []


@pytest.mark.parametrize(
    ("settings", "fields", "status", "reason"),
    [
        ({}, {}, "quarantined", "unsigned"),
        ({"unsigned_policy": "pending"}, {}, "pending", "unsigned (policy: pending)"),
        ({}, {"source": "nobody"}, "quarantined", "unsigned, unknown source 'nobody'"),
        ({"unsigned_policy": "reject"}, {}, 422, "unsigned contributions are refused"),
        ({"unknown_source_policy": "reject"}, {"source": "nobody"}, 422, "not registered (policy: reject)"),
    ],
)
def test_policy_for_unsigned_and_unknown_sources(make_service, image, settings, fields, status, reason):
    svc = make_service(**settings)
    response = _post(svc, image, "7", **fields)
    if isinstance(status, int):
        assert response.status_code == status and reason in response.json()["detail"]
        assert list(svc.state.store) == []
    else:
        assert response.status_code == 201
        assert (response.json()["status"], response.json()["reason"]) == (status, reason)


def test_review_release_and_reject(service, image):
    first = _post(service, image, "7").json()
    second = _post(service, image, "1").json()
    admin = service.headers("admin")
    listed = service.client.get(
        "/v1/contributions?status=quarantined", headers=service.headers("trainer")
    ).json()
    assert [c["id"] for c in listed] == [second["id"], first["id"]]
    released = service.client.post(
        f"/v1/contributions/{first['id']}/release", json={"note": "looked at it"}, headers=admin
    )
    assert released.status_code == 200
    assert (
        released.json()["status"] == "accepted"
        and released.json()["reason"] == "released by admin-key: looked at it"
    )
    again = service.client.post(f"/v1/contributions/{first['id']}/release", headers=admin)
    assert again.status_code == 409 and "is accepted" in again.json()["detail"]
    rejected = service.client.post(f"/v1/contributions/{second['id']}/reject", headers=admin)
    assert rejected.json()["status"] == "rejected"
    missing = service.client.post("/v1/contributions/4242/reject", headers=admin)
    assert missing.status_code == 404 and "4242" in missing.json()["detail"]
    actions = [e["action"] for e in service.client.get("/v1/audit", headers=admin).json()]
    assert {"contributions.release", "contributions.reject", "contributions.create"} <= set(actions)


def test_same_bytes_are_stored_once(service, image):
    ids = {_post(service, image, "7").json()["id"] for _ in range(3)}
    assert len(ids) == 3
    assert len(list(service.state.store)) == 1


def test_blob_store_detects_tampering(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    digest = store.put(b"abc")
    assert store.put(b"abc") == digest and digest in store
    store.path(digest).write_bytes(b"abd")
    with pytest.raises(ValueError, match="corrupt or was modified"):
        store.get(digest)
    with pytest.raises(ValueError, match="64 lowercase hex"):
        store.path("../etc/passwd")
    with pytest.raises(FileNotFoundError):
        store.get("0" * 64)


def test_keygen_refuses_to_overwrite(tmp_path):
    private, public = generate_keypair(tmp_path, "k")
    assert oct(private.stat().st_mode & 0o777) == "0o600" and "PUBLIC KEY" in public.read_text()
    with pytest.raises(FileExistsError):
        generate_keypair(tmp_path, "k")


def test_source_registration_errors(service, source_key):
    _, pem = source_key
    admin = service.headers("admin")
    _register(service, "cam", pem)
    dup = service.client.post("/v1/sources", json={"name": "cam", "public_key_pem": pem}, headers=admin)
    assert dup.status_code == 409
    alias = service.client.post("/v1/sources", json={"name": "cam-b", "public_key_pem": pem}, headers=admin)
    assert alias.status_code == 409  # one key, one source: a signature must say who sent the data
    assert alias.json()["detail"] == "this public key is registered already, as source 'cam'"
    rsa_like = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    bad = service.client.post("/v1/sources", json={"name": "cam2", "public_key_pem": rsa_like}, headers=admin)
    assert bad.status_code == 422 and bad.json()["code"] == "bad_public_key"
    assert [s["name"] for s in service.client.get("/v1/sources", headers=admin).json()] == ["cam"]
