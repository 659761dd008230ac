"""Signed uploads cannot be replayed: signatures carry a timestamp and a nonce, stale timestamps
are refused, and a nonce is accepted once (remembered in the database, across restarts)."""

from __future__ import annotations

import hashlib
import time

import pytest
from sqlalchemy import func, select

from poisonlab.service.db import Database, SignatureNonce
from poisonlab.service.signing import (
    StaleSignature,
    claim_nonce,
    generate_keypair,
    load_private_key,
    parse_signature,
    prune_nonces,
    sign_contribution,
    verify_contribution,
)

NOW = 1_700_000_000


@pytest.fixture
def source_key(tmp_path):
    private, public = generate_keypair(tmp_path / "keys", "camera")
    return load_private_key(private), public.read_text()


def test_signature_field_carries_timestamp_and_nonce(source_key):
    key, pem = source_key
    token = sign_contribution(key, b"img", "bird", timestamp=NOW, nonce="a" * 32)
    stamp, nonce, _ = token.split(".")
    assert (stamp, nonce) == (str(NOW), "a" * 32)
    digest = hashlib.sha256(b"img").hexdigest()
    assert verify_contribution(pem, token, digest, "bird", now=NOW + 299).nonce == "a" * 32
    fresh = [sign_contribution(key, b"img", "bird").split(".")[1] for _ in range(2)]
    assert fresh[0] != fresh[1]  # a new random nonce for every signature
    forged = token.replace(f"{NOW}.", f"{NOW + 100}.", 1)  # the timestamp is signed too
    with pytest.raises(ValueError, match="does not verify"):
        verify_contribution(pem, forged, digest, "bird", now=NOW)


def test_stale_and_malformed_signatures_are_refused(source_key):
    key, pem = source_key
    digest = hashlib.sha256(b"img").hexdigest()
    token = sign_contribution(key, b"img", "bird", timestamp=NOW)
    for now in (NOW + 301, NOW - 301):  # too old, or from too far in the future
        with pytest.raises(StaleSignature, match="good for 300 s"):
            verify_contribution(pem, token, digest, "bird", now=now)
    old_format = token.split(".")[2]  # a v1 signature: base64 only
    with pytest.raises(ValueError, match="no longer accepted"):
        parse_signature(old_format)
    with pytest.raises(ValueError, match="nonce"):
        parse_signature(f"{NOW}.short.{old_format}")
    with pytest.raises(ValueError, match="timestamp"):
        parse_signature(f"-5.{'a' * 32}.{old_format}")


def test_nonces_are_spent_once_survive_a_restart_and_expire(tmp_path, source_key):
    key, _ = source_key
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    token = parse_signature(sign_contribution(key, b"img", "bird", timestamp=NOW))
    db = Database(url)
    with db.write() as session:
        assert claim_nonce(session, "cam", token, max_skew=300, now=NOW)
        assert not claim_nonce(session, "cam", token, max_skew=300, now=NOW + 1)
        assert claim_nonce(session, "other-cam", token, max_skew=300, now=NOW)  # nonces are per source
    db.dispose()
    restarted = Database(url)
    with restarted.write() as session:
        assert not claim_nonce(session, "cam", token, max_skew=300, now=NOW + 300)
    with restarted.write() as session:  # once the timestamp left the window the nonce is pruned
        assert prune_nonces(session, now=NOW + 302) == 2
        assert session.scalar(select(func.count()).select_from(SignatureNonce)) == 0
    restarted.dispose()


def test_a_concurrent_claim_loses_on_the_primary_key(tmp_path, source_key, monkeypatch):
    key, _ = source_key
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    token = parse_signature(sign_contribution(key, b"img", "bird", timestamp=NOW))
    with db.write() as session:
        assert claim_nonce(session, "cam", token, max_skew=300, now=NOW)
    with db.write() as session:  # as if another process inserted between our check and our insert
        monkeypatch.setattr(session, "scalar", lambda *_args, **_kwargs: None)
        assert not claim_nonce(session, "cam", token, max_skew=300, now=NOW)
        session.execute(select(1))  # the savepoint rolled back; the transaction is still usable
    db.dispose()


def _post(svc, image, signature, label="7"):
    return svc.client.post(
        "/v1/contributions",
        files={"file": ("digit.png", image, "image/png")},
        data={"label": label, "signature": signature, "source": "camera-1"},
        headers=svc.headers("contributor"),
    )


def test_a_replayed_signed_upload_is_refused(service, png, digits, source_key):
    key, pem = source_key
    registered = service.client.post(
        "/v1/sources", json={"name": "camera-1", "public_key_pem": pem}, headers=service.headers("admin")
    )
    assert registered.status_code == 201
    image = png(digits.test.x[0])
    signature = sign_contribution(key, image, "7")
    assert _post(service, image, signature).status_code == 201
    replay = _post(service, image, signature)
    assert replay.status_code == 409, replay.text
    assert replay.json()["code"] == "replayed_signature" and "accepted once" in replay.json()["detail"]
    stale = _post(service, image, sign_contribution(key, image, "7", timestamp=int(time.time()) - 3600))
    assert stale.status_code == 422 and stale.json()["code"] == "stale_signature"
    assert _post(service, image, sign_contribution(key, image, "7")).status_code == 201  # signed afresh
    rows = service.client.get("/v1/contributions", headers=service.headers("trainer")).json()
    assert len(rows) == 2 and all(r["status"] == "pending" for r in rows)
