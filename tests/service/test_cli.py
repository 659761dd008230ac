"""``poisonlab keys`` and ``poisonlab sources``: keys printed once, sources with Ed25519 keys."""

from __future__ import annotations

import hashlib
import socket

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
    last = runner.invoke(app, ["keys", "revoke", "1", "--data", str(data)])
    assert last.exit_code == 2 and "last active admin key" in last.output
    assert len(last.output.strip().splitlines()) == 1 and authenticate(db, key).role == "admin"
    second = runner.invoke(app, ["keys", "create", "--role", "admin", "--name", "ops", "--data", str(data)])
    assert second.exit_code == 0, second.output
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


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_a_database_url_that_cannot_be_used_is_one_line_without_its_password(tmp_path):
    line = _one_error_line(runner.invoke(app, ["keys", "list", "--db", "postgres//u:secret@h/x"]))
    assert "cannot be parsed" in line and "secret" not in line
    line = _one_error_line(runner.invoke(app, ["keys", "list", "--db", "mysql://u:secret@h/x"]))
    assert "needs a driver that is not installed" in line and "secret" not in line and "u:***@h" in line
    missing = f"sqlite:///{tmp_path}/no/such/folder/x.db"
    line = _one_error_line(runner.invoke(app, ["sources", "list", "--db", missing]))
    assert "cannot open the database" in line


def test_keygen_refuses_a_name_that_leaves_the_folder(tmp_path):
    keys = tmp_path / "keys"
    for name in ("../evil", "a/b", "..", ".hidden"):
        result = runner.invoke(app, ["sources", "keygen", "--out", str(keys), "--name", name])
        assert "key name must be a file stem" in _one_error_line(result)
    assert not list(tmp_path.rglob("*.key"))


def test_serve_names_its_options_and_checks_the_model_before_starting(tmp_path):
    bad = runner.invoke(app, ["serve", "--unsigned", "bogus", "--precision", "bf17", "--data", str(tmp_path)])
    line = _one_error_line(bad)
    assert "--unsigned: Input should be" in line and "--precision: Input should be" in line
    missing = runner.invoke(app, ["serve", "--model", str(tmp_path / "nomodel"), "--data", str(tmp_path)])
    assert "neither a model folder nor a registered model" in _one_error_line(missing)


def test_serve_loads_the_initial_model_once_and_serves_from_the_state_it_checked(
    tmp_path, digits_model_dir, monkeypatch
):
    """``serve`` bootstraps before uvicorn (a bad --model is an error line); the app then takes over
    that state instead of opening the database and loading the weights a second time."""
    import uvicorn
    from fastapi.testclient import TestClient

    from poisonlab.service import serving

    loads = []
    real_load = serving.load_model
    monkeypatch.setattr(serving, "load_model", lambda path: loads.append(path) or real_load(path))
    served = {}

    def fake_run(app, **_options):  # runs the app's start-up and shut-down as uvicorn would
        with TestClient(app) as client:
            served["status"] = client.get("/v1/health").status_code
            served["loaded"] = app.state.service.server.current()

    monkeypatch.setattr(uvicorn, "run", fake_run)
    args = ["serve", "--model", str(digits_model_dir), "--data", str(tmp_path / "svc")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert served["status"] == 200
    assert served["loaded"] is not None  # the model loaded before uvicorn is the one served
    assert len(loads) == 1


def test_serve_refuses_what_uvicorn_would_fail_on_after_the_model_loaded(tmp_path):
    data = ["--data", str(tmp_path / "svc")]
    line = _one_error_line(runner.invoke(app, ["serve", "--log-level", "loud", *data]))
    assert "--log-level must be one of critical, error, warning, info, debug, trace, got 'loud'" in line
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _one_error_line(runner.invoke(app, ["serve", "--port", str(port), *data]))
    assert f"--host/--port: cannot listen on 127.0.0.1:{port}" in line
    line = _one_error_line(runner.invoke(app, ["serve", "--host", "not a host!", *data]))
    assert "cannot listen on not a host!:8000" in line
    inf = runner.invoke(app, ["serve", "--max-body-mb", "inf", *data])  # was an OverflowError
    assert inf.exit_code == 2 and "Traceback" not in inf.output and "--max-body-mb" in inf.output


def test_serve_says_when_the_database_already_serves_another_model(tmp_path, digits_model_dir, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **options: None)
    data = ["--data", str(tmp_path / "svc")]
    first = runner.invoke(app, ["serve", "--model", str(digits_model_dir), *data])
    assert first.exit_code == 0 and "not used" not in first.output
    again = runner.invoke(app, ["serve", "--model", str(tmp_path / "elsewhere"), *data])
    assert again.exit_code == 0, again.output
    assert f"--model {tmp_path / 'elsewhere'} not used: the database already serves model" in " ".join(
        again.output.split()
    )


def test_listing_a_folder_without_a_service_database_creates_nothing(tmp_path):
    missing = tmp_path / "no" / "such"
    for command in (["keys", "list"], ["sources", "list"]):
        line = _one_error_line(runner.invoke(app, [*command, "--data", str(missing)]))
        assert "no service database in" in line
    assert not (tmp_path / "no").exists()


def test_key_and_image_files_are_read_only_up_to_a_limit(tmp_path):
    big = tmp_path / "big.pem"
    big.write_bytes(b"-" * (70 * 1024))
    for args in (
        ["sources", "add", "cam", "--public-key", str(big), "--data", str(tmp_path)],
        ["sources", "add", "cam", "--public-key", "/dev/zero", "--data", str(tmp_path)],
        ["sources", "sign", str(big), "--key", "/dev/zero", "--label", "3"],
    ):
        assert "expected a small file" in _one_error_line(runner.invoke(app, args))
