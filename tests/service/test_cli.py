"""``poisonlab keys`` and ``poisonlab sources``: keys printed once, sources with Ed25519 keys."""

from __future__ import annotations

import hashlib

from typer.testing import CliRunner

from poisonlab.cli.main import app
from poisonlab.service.auth import authenticate
from poisonlab.service.db import Database
from poisonlab.service.settings import sqlite_url
from poisonlab.service.signing import verify_contribution

runner = CliRunner()


def test_keys_create_prints_the_key_once(tmp_path):
    data = tmp_path / "svc"
    result = runner.invoke(app, ["keys", "create", "--role", "admin", "--name", "root", "--data", str(data)])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[0]
    assert key.startswith("imrecs_")
    db = Database(sqlite_url(data))
    assert authenticate(db, key).role == "admin"
    listed = runner.invoke(app, ["keys", "list", "--data", str(data)])
    assert "root" in listed.stdout and key not in listed.stdout
    revoked = runner.invoke(app, ["keys", "revoke", "1", "--data", str(data)])
    assert revoked.exit_code == 0 and authenticate(db, key) is None
    db.dispose()


def test_keys_errors_are_one_line(tmp_path):
    args = ["keys", "create", "--role", "boss", "--name", "x", "--db", sqlite_url(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "unknown role 'boss'" in result.output
    missing = runner.invoke(app, ["keys", "revoke", "9", "--data", str(tmp_path)])
    assert missing.exit_code == 2 and "no API key with id 9" in missing.output


def test_sources_keygen_add_and_sign(tmp_path):
    data, keys = tmp_path / "svc", tmp_path / "keys"
    made = runner.invoke(app, ["sources", "keygen", "--out", str(keys), "--name", "camera"])
    assert made.exit_code == 0 and (keys / "camera.key").is_file()
    again = runner.invoke(app, ["sources", "keygen", "--out", str(keys), "--name", "camera"])
    assert again.exit_code == 2 and "refusing to overwrite" in again.output
    added = runner.invoke(
        app, ["sources", "add", "camera", "--public-key", str(keys / "camera.pub"), "--data", str(data)]
    )
    assert added.exit_code == 0 and "fingerprint" in added.stdout
    image = tmp_path / "img.png"
    image.write_bytes(b"\x89PNG pretend")
    signed = runner.invoke(
        app, ["sources", "sign", str(image), "--key", str(keys / "camera.key"), "--label", "bird"]
    )
    assert signed.exit_code == 0
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    verify_contribution((keys / "camera.pub").read_text(), signed.stdout.strip(), digest, "bird")
    listed = runner.invoke(app, ["sources", "list", "--data", str(data)])
    assert "camera" in listed.stdout
    bad = runner.invoke(app, ["sources", "add", "other", "--public-key", str(image), "--data", str(data)])
    assert bad.exit_code == 2 and "not a PEM public key" in bad.output


def test_serve_help_lists_the_options():
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--db", "--data", "--model"):
        assert option in result.output
