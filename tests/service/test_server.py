"""The real server: uvicorn in a subprocess on a free loopback port, SQLite file database.

* durability: a concurrent contribution burst, ``kill -9`` in the middle, a restart, and every
  contribution that was acknowledged (201) is there with the right sha256 and bytes;
* concurrency: many clients predicting and contributing at once, every answer 2xx;
* the body limit holds while a chunked upload streams in (the server answers 413 long before
  the client has sent everything).
"""

from __future__ import annotations

import hashlib
import select
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from poisonlab.service.db import Database
from poisonlab.service.settings import sqlite_url
from poisonlab.service.storage import BlobStore

pytestmark = pytest.mark.timeout(180)


def _make_keys(kit, data: Path) -> dict[str, str]:
    data.mkdir(parents=True)
    made = kit.make_keys(sqlite_url(data), ("viewer", "contributor"))
    return {role: keys[0] for role, keys in made.items()}


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory, digits_model_dir: Path, kit):
    """One server for the tests that do not stop it: ``(server, keys)``."""
    data = tmp_path_factory.mktemp("imrecs-server") / "data"
    keys = _make_keys(kit, data)
    srv = kit.ServeProcess(data, digits_model_dir, "--unsigned", "pending", "--max-body-mb", "1").start()
    yield srv, keys
    srv.stop()


def test_acknowledged_contributions_survive_kill_9(tmp_path, digits_model_dir, kit):
    keys = _make_keys(kit, tmp_path / "data")
    srv = kit.ServeProcess(tmp_path / "data", digits_model_dir, "--unsigned", "pending").start()
    with kit.ContributionBurst(srv, [keys["contributor"]], threads=8) as burst:
        burst.wait_for(60, timeout=60)
        srv.kill9()  # mid-burst: 8 clients are still sending
    acked = burst.acked
    assert len(acked) >= 60, "the burst did not get going"
    assert burst.failures >= 1, "no request was in flight when the server died"
    srv.start()  # same data folder and database
    try:
        with httpx.Client(base_url=srv.url, headers={"X-API-Key": keys["contributor"]}, timeout=10) as http:
            assert http.get("/v1/health").json()["status"] == "ok"
        db = Database(sqlite_url(tmp_path / "data"))
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
            rows = dict(conn.exec_driver_sql("SELECT id, sha256 FROM contributions").all())
        db.dispose()
        store = BlobStore(tmp_path / "data" / "blobs")
        for cid, content in acked.items():
            assert cid in rows, f"acknowledged contribution {cid} was lost"
            assert rows[cid] == hashlib.sha256(content).hexdigest()
            assert store.get(rows[cid]) == content
    finally:
        srv.stop()


def test_many_clients_predict_and_contribute_at_once(shared_server, kit, png, digits):
    server, keys = shared_server
    images = [png(x) for x in digits.test.x[:40]]

    def predictor(i: int) -> list[int]:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": keys["viewer"]}, timeout=30) as http:
            codes = [
                http.post("/v1/predict", files={"file": ("d.png", images[(i + j) % 40])}).status_code
                for j in range(15)
            ]
            codes.append(
                http.post("/v1/predict/batch", json={"instances": digits.test.x[:32].tolist()}).status_code
            )
            return codes

    def contributor(i: int) -> list[int]:
        with httpx.Client(
            base_url=server.url, headers={"X-API-Key": keys["contributor"]}, timeout=30
        ) as http:
            return [
                http.post(
                    "/v1/contributions",
                    files={"file": ("n.png", kit.noise_png(1000 * i + j))},
                    data={"label": str(j % 10)},
                ).status_code
                for j in range(10)
            ]

    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(predictor, i) for i in range(10)] + [
            pool.submit(contributor, i) for i in range(6)
        ]
        codes = [c for f in futures for c in f.result()]
    assert len(codes) == 10 * 16 + 6 * 10
    assert set(codes) <= {200, 201}, sorted(set(codes))
    with httpx.Client(base_url=server.url, headers={"X-API-Key": keys["viewer"]}) as http:
        metrics = http.get("/metrics").text
    assert 'imrecs_contributions{status="pending"} 60.0' in metrics


def test_chunked_upload_is_cut_at_the_limit(shared_server):
    server, keys = shared_server
    total, chunk = 64 << 20, b"x" * (64 << 10)
    request = (
        "POST /v1/predict/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"X-API-Key: {keys['viewer']}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    sent, response = 0, b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        try:
            while sent < total:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
                if select.select([sock], [], [], 0)[0]:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(10)
        try:
            while b"\r\n\r\n" not in response:
                data = sock.recv(4096)
                if not data:
                    break
                response += data
        except (ConnectionResetError, TimeoutError):
            pass
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert sent < total // 4, f"the server read {sent} bytes before refusing"


def test_length_beside_chunked_is_refused_by_the_running_server(shared_server):
    """uvicorn lets chunked win over a Content-Length; the app refuses the pair (smuggling shape)."""
    server, keys = shared_server
    request = (
        "POST /v1/predict/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"X-API-Key: {keys['viewer']}\r\nContent-Type: application/json\r\n"
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    ).encode()
    response = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        while b"}" not in response:
            data = sock.recv(4096)
            if not data:
                break
            response += data
    assert response.startswith(b"HTTP/1.1 400"), response[:200]
    assert b"not both" in response
