"""``poisonlab serve --workers 2`` on PostgreSQL: two server processes on one port and one database.

The server runs as a subprocess against ``POISONLAB_TEST_POSTGRES_URL`` (``.ci/postgres.sh`` starts a
throwaway cluster and sets it; without it these tests skip). Concurrent predictions and contributions
land on both processes with no 5xx; then a contribution burst is cut by ``kill -9`` of the whole server
(supervisor and workers), the server restarts, and every acknowledged contribution is in the
database exactly once, with its bytes, its audit entry and the metrics agreeing. ``serve`` trusts no
X-Forwarded-For (uvicorn would from 127.0.0.1 by default).
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import func, select

from poisonlab.service.audit import Actor
from poisonlab.service.auth import create_key
from poisonlab.service.db import AuditEntry, Contribution, Database
from poisonlab.service.storage import BlobStore

pytestmark = pytest.mark.timeout(420)
KEYS_PER_ROLE = 4  # spread the load over keys: each stays far below its rate limit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """The uvicorn worker processes of supervisor ``pid`` (multiprocessing spawns them)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


class Workers:
    """``poisonlab serve --workers 2 --db <postgres>`` as a child process group."""

    def __init__(self, data: Path, model: Path, db_url: str) -> None:
        self.data, self.model, self.db_url = data, model, db_url
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data.parent / f"server-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> Workers:
        cmd = [
            sys.executable,
            "-c",
            "from poisonlab.cli.main import main; main()",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data",
            str(self.data),
            "--db",
            self.db_url,
            "--model",
            str(self.model),
            "--unsigned",
            "pending",
            "--threads",
            "1",
            "--inference-threads",
            "1",
            "--workers",
            "2",
            "--log-level",
            "info",  # uvicorn says "Application startup complete." once per worker
        ]
        started_lines = self._log().count("Application startup complete.")
        log = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        # its own session: kill -9 reaches the supervisor and both workers at once
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self._log()[-3000:]}")
            up = self._log().count("Application startup complete.") - started_lines >= 2
            if up and httpx.get(f"{self.url}/v1/health", timeout=5).json()["status"] == "ok":
                return self
            time.sleep(0.2)
        raise RuntimeError(f"two workers did not come up in {timeout} s: {self._log()[-3000:]}")

    def _log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def workers(self) -> list[int]:
        return _children(self.proc.pid)

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()


def _noise_png(png, seed: int) -> bytes:
    """A distinct 8x8 grey image per seed (distinct sha256)."""
    rng = np.random.default_rng(seed)
    return png(rng.integers(0, 256, size=(8, 8, 1), dtype=np.uint8))


def _keys(db_url: str) -> dict[str, list[str]]:
    db = Database(db_url)
    with db.write() as session:
        keys = {
            role: [
                create_key(session, name=f"{role}-{i}", role=role, actor=Actor("test"))[0]
                for i in range(KEYS_PER_ROLE)
            ]
            for role in ("viewer", "contributor")
        }
    db.dispose()
    return keys


def test_sqlite_refuses_more_than_one_worker(tmp_path):
    cmd = [sys.executable, "-c", "from poisonlab.cli.main import main; main()", "serve"]
    done = subprocess.run(
        [*cmd, "--data", str(tmp_path), "--workers", "2"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "--workers above 1 needs a PostgreSQL --db" in done.stderr


def test_two_workers_on_postgresql_share_the_load_and_survive_kill_9(
    postgres_url, tmp_path, digits_model_dir, png, digits
):
    keys = _keys(postgres_url)
    data = tmp_path / "data"
    srv = Workers(data, digits_model_dir, postgres_url).start()
    try:
        workers = srv.workers
        assert len(workers) == 2, f"expected 2 worker processes, found {workers}"

        # 1. concurrent predictions and contributions, every answer 2xx, both workers busy
        images = [png(x) for x in digits.test.x[:40]]
        cpu_before = {pid: _cpu_seconds(pid) for pid in workers}

        def predictor(i: int) -> list[int]:
            key = keys["viewer"][i % KEYS_PER_ROLE]
            codes = []
            for j in range(20):  # a new connection per request: the kernel picks the worker each time
                r = httpx.post(
                    f"{srv.url}/v1/predict",
                    files={"file": ("d.png", images[(i + j) % 40])},
                    headers={"X-API-Key": key},
                    timeout=60,
                )
                codes.append(r.status_code)
            return codes

        first: dict[int, bytes] = {}

        def contributor(i: int) -> list[int]:
            key, codes = keys["contributor"][i % KEYS_PER_ROLE], []
            for j in range(8):
                content = _noise_png(png, 1000 * i + j)
                r = httpx.post(
                    f"{srv.url}/v1/contributions",
                    files={"file": ("n.png", content)},
                    data={"label": str(j % 10)},
                    headers={"X-API-Key": key},
                    timeout=60,
                )
                codes.append(r.status_code)
                if r.status_code == 201:
                    first[r.json()["id"]] = content
            return codes

        with ThreadPoolExecutor(max_workers=12) as pool:
            futures = [pool.submit(predictor, i) for i in range(8)] + [
                pool.submit(contributor, i) for i in range(4)
            ]
            codes = Counter(c for f in futures for c in f.result())
        assert codes == Counter({200: 8 * 20, 201: 4 * 8}), codes
        busy = {pid: _cpu_seconds(pid) - cpu_before[pid] for pid in workers}
        total = sum(busy.values())
        assert min(busy.values()) >= 0.1 * total, f"the requests did not land on both workers: {busy}"

        # a local client cannot choose its address (rate limits, audit) with X-Forwarded-For
        for _ in range(4):
            r = httpx.post(f"{srv.url}/v1/contributions", headers={"X-Forwarded-For": "203.0.113.9"})
            assert r.status_code == 401
        db = Database(postgres_url)
        with db.read() as session:
            refusals = select(AuditEntry.target).where(AuditEntry.target.contains(" from "))
            refused = list(session.scalars(refusals))
        db.dispose()
        assert refused and all(t.endswith(" from 127.0.0.1") for t in refused), refused

        # 2. a contribution burst cut by kill -9 of the supervisor and both workers
        acked: dict[int, bytes] = dict(first)
        statuses: Counter[int] = Counter()
        lock, stop = threading.Lock(), threading.Event()
        failures = [0]

        def burst(i: int) -> None:
            key = keys["contributor"][i % KEYS_PER_ROLE]
            with httpx.Client(base_url=srv.url, headers={"X-API-Key": key}, timeout=30) as http:
                for j in range(10_000):
                    if stop.is_set():
                        return
                    content = _noise_png(png, 1_000_000 * (i + 1) + j)
                    try:
                        r = http.post(
                            "/v1/contributions", files={"file": ("n.png", content)}, data={"label": "3"}
                        )
                    except httpx.HTTPError:
                        with lock:
                            failures[0] += 1
                        if srv.proc.poll() is not None:
                            return
                        continue
                    with lock:
                        statuses[r.status_code] += 1
                        if r.status_code == 201:
                            acked[r.json()["id"]] = content

        threads = [threading.Thread(target=burst, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 90
        while len(acked) < len(first) + 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        srv.kill9()
        stop.set()
        for t in threads:
            t.join(30)
        assert len(acked) >= len(first) + 60, "the burst did not get going"
        assert failures[0] >= 1, "no request was in flight when the server died"
        assert not [s for s in statuses if s >= 500], statuses
        assert set(statuses) <= {201, 429}, statuses  # 429: a key over its rate limit, never a loss

        # 3. restart on the same database and files: consistent state
        srv.start()
        db = Database(postgres_url)
        with db.read() as session:
            rows = dict(session.execute(select(Contribution.id, Contribution.sha256)).all())
            per_sha = Counter(session.scalars(select(Contribution.sha256)))
            created = Counter(
                session.scalars(select(AuditEntry.target).where(AuditEntry.action == "contributions.create"))
            )
            pending = session.scalar(
                select(func.count()).select_from(Contribution).where(Contribution.status == "pending")
            )
        db.dispose()
        store = BlobStore(data / "blobs")
        for cid, content in acked.items():
            assert cid in rows, f"acknowledged contribution {cid} was lost"
            assert rows[cid] == hashlib.sha256(content).hexdigest()
            assert store.get(rows[cid]) == content
        assert max(per_sha.values()) == 1, "a contribution was stored twice"
        for cid, sha in rows.items():  # acknowledged or not: no row without its bytes or its audit entry
            store.get(sha)  # FileNotFoundError when missing, ValueError when its sha256 does not match
            assert created[f"contribution:{cid}"] == 1, cid
        assert sum(created.values()) == len(rows)
        assert pending == len(rows)

        # the restarted workers serve and count the same database
        viewer, contributor = keys["viewer"][0], keys["contributor"][0]
        for _ in range(4):  # new connections: either worker may answer, both must agree
            metrics = httpx.get(f"{srv.url}/metrics", headers={"X-API-Key": viewer}, timeout=30).text
            assert f'imrecs_contributions{{status="pending"}} {float(len(rows))}' in metrics
        r = httpx.post(
            f"{srv.url}/v1/contributions",
            files={"file": ("n.png", _noise_png(png, 7))},
            data={"label": "7"},
            headers={"X-API-Key": contributor},
            timeout=30,
        )
        assert r.status_code == 201, r.text
        assert r.json()["id"] not in rows
        r = httpx.post(
            f"{srv.url}/v1/predict", files={"file": ("d.png", images[0])}, headers={"X-API-Key": viewer}
        )
        assert r.status_code == 200, r.text
    finally:
        srv.stop()
