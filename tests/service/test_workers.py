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
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from poisonlab.service.db import AuditEntry, Contribution, Database
from poisonlab.service.storage import BlobStore

pytestmark = pytest.mark.timeout(420)
KEYS_PER_ROLE = 4  # spread the load over keys: each stays far below its rate limit


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


def test_sqlite_refuses_more_than_one_worker(tmp_path):
    cmd = [sys.executable, "-c", "from poisonlab.cli.main import main; main()", "serve"]
    done = subprocess.run(
        [*cmd, "--data", str(tmp_path), "--workers", "2"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "--workers above 1 needs a PostgreSQL --db" in done.stderr


def test_two_workers_on_postgresql_share_the_load_and_survive_kill_9(
    postgres_url, tmp_path, digits_model_dir, png, digits, kit
):
    keys = kit.make_keys(postgres_url, ("viewer", "contributor"), KEYS_PER_ROLE)
    data = tmp_path / "data"
    serve_args = ("--db", postgres_url, "--unsigned", "pending", "--inference-threads", "1")
    srv = kit.ServeProcess(data, digits_model_dir, *serve_args, workers=2).start(timeout=180)
    try:
        workers = _children(srv.proc.pid)
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
                content = kit.noise_png(1000 * i + j)
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
        with kit.ContributionBurst(srv, keys["contributor"], threads=6) as burst:
            burst.wait_for(60, timeout=90)
            srv.kill9()
        acked, statuses = {**first, **burst.acked}, burst.statuses
        assert len(burst.acked) >= 60, "the burst did not get going"
        assert burst.failures >= 1, "no request was in flight when the server died"
        assert not [s for s in statuses if s >= 500], statuses
        assert set(statuses) <= {201, 429}, statuses  # 429: a key over its rate limit, never a loss

        # 3. restart on the same database and files: consistent state
        srv.start(timeout=180)
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
            files={"file": ("n.png", kit.noise_png(7))},
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
