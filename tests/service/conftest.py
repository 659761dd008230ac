"""Fixtures of the ImRecS service tests: a small digits model, services on temporary folders, keys.

The model is the chapter's CNN trained for a few epochs on the embedded 8x8 digits (about 96%
test accuracy, seconds on one core), so the tests need neither CIFAR-10 nor a GPU.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from poisonlab.data.catalog import load_splits
from poisonlab.data.dataset import Splits
from poisonlab.models.checkpoint import save_model
from poisonlab.service.app import create_app
from poisonlab.service.audit import Actor
from poisonlab.service.auth import ROLES, create_key
from poisonlab.service.db import Database
from poisonlab.service.settings import ServiceSettings
from poisonlab.training import digits_recipe, train

# With POISONLAB_TEST_POSTGRES_URL=postgresql+psycopg://user:password@127.0.0.1/db every in-process
# service of these tests uses that database (emptied before each service); needs psycopg.
# .ci/postgres.sh starts a throwaway cluster and sets it: .ci/postgres.sh .venv/bin/python -m pytest ...
POSTGRES = os.environ.get("POISONLAB_TEST_POSTGRES_URL")


_postgres_dropped = False


def reset_postgres(url: str) -> None:
    """Empty the PostgreSQL test database, so the next service starts on an empty one: the first call
    of the session drops every table (they may be another version's), later ones truncate them."""
    global _postgres_dropped
    from sqlalchemy import MetaData, create_engine, text

    engine = create_engine(url)
    try:
        if not _postgres_dropped:
            tables = MetaData()
            tables.reflect(engine)
            tables.drop_all(engine)
            _postgres_dropped = True
            return
        with engine.begin() as conn:
            names = conn.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"))
            quoted = ", ".join(engine.dialect.identifier_preparer.quote(n) for n in names)
            if quoted:
                conn.execute(text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture
def postgres_url() -> str:
    """The PostgreSQL test database's URL, emptied; skips without POISONLAB_TEST_POSTGRES_URL."""
    if not POSTGRES:
        pytest.skip("set POISONLAB_TEST_POSTGRES_URL (or run under .ci/postgres.sh) for PostgreSQL tests")
    pytest.importorskip("psycopg", reason="PostgreSQL tests need the psycopg package")
    reset_postgres(POSTGRES)
    return POSTGRES


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 (H, W, 1) or (H, W, 3) -> PNG file bytes."""
    arr = image[..., 0] if image.shape[-1] == 1 else image
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def png() -> Callable[[np.ndarray], bytes]:
    """The :func:`png_bytes` helper as a fixture (test modules here are not a package)."""
    return png_bytes


@pytest.fixture(scope="session")
def digits() -> Splits:
    return load_splits("digits")


@pytest.fixture(scope="session")
def digits_model_dir(tmp_path_factory: pytest.TempPathFactory, digits: Splits) -> Path:
    """A saved simple-cifar10 trained 8 epochs on the digits train split (dataset_name digits-train)."""
    cfg = digits_recipe().model_copy(update={"epochs": 8})
    model = train(digits.train, cfg, device="cpu", progress=False).model
    folder = tmp_path_factory.mktemp("imrecs-model") / "digits-cnn"
    save_model(
        model,
        folder,
        class_names=digits.train.class_names,
        dataset_name=digits.train.name,
        dataset_hash=digits.train.content_hash,
        metrics={"note": "test fixture"},
    )
    return folder


@dataclass
class Service:
    """A running in-process service: its TestClient, one key per role, its settings."""

    client: TestClient
    keys: dict[str, str]
    settings: ServiceSettings

    @property
    def state(self):
        return self.client.app.state.service

    def headers(self, role: str | None) -> dict[str, str]:
        return {} if role is None else {"X-API-Key": self.keys[role]}


@pytest.fixture
def make_service(tmp_path: Path, digits_model_dir: Path) -> Iterator[Callable[..., Service]]:
    """``make_service(**settings)`` -> a started :class:`Service` (stopped at the end of the test)."""
    stack = contextlib.ExitStack()
    count = 0

    def make(**overrides: object) -> Service:
        nonlocal count
        count += 1
        params = {
            "data_dir": tmp_path / f"service-{count}",
            "model_ref": str(digits_model_dir),
            "device": "cpu",
        }
        if POSTGRES:
            reset_postgres(POSTGRES)
            params["db_url"] = POSTGRES
        params.update(overrides)
        settings = ServiceSettings(**params)
        app = create_app(settings)
        client = stack.enter_context(TestClient(app))
        with app.state.service.db.write() as session:
            keys = {
                role: create_key(session, name=f"{role}-key", role=role, actor=Actor("test"))[0]
                for role in ROLES
            }
        return Service(client, keys, settings)

    with stack:
        yield make


@pytest.fixture
def service(make_service: Callable[..., Service]) -> Service:
    """A service with the default settings (unsigned contributions quarantined)."""
    return make_service()


# ------------------------------------------------------------------ real server processes


def noise_png(seed: int) -> bytes:
    """A distinct 8x8 grey PNG per seed (distinct sha256): one contribution of a burst."""
    rng = np.random.default_rng(seed)
    return png_bytes(rng.integers(0, 256, size=(8, 8, 1), dtype=np.uint8))


def make_keys(db_url: str, roles: Sequence[str], per_role: int = 1) -> dict[str, list[str]]:
    """``per_role`` new API keys of each role in the database at ``db_url`` (created if missing)."""
    db = Database(db_url)
    with db.write() as session:
        keys = {
            role: [
                create_key(session, name=f"{role}-{i}", role=role, actor=Actor("test"))[0]
                for i in range(per_role)
            ]
            for role in roles
        }
    db.dispose()
    return keys


class ServeProcess:
    """``poisonlab serve`` on a free loopback port as a child process in its own session, so that
    :meth:`kill9` reaches the supervisor and every worker at once; ``extra`` are more arguments."""

    STARTED = "Application startup complete."  # uvicorn says it once per worker, at level info

    def __init__(self, data: Path, model: Path, *extra: str, workers: int = 1) -> None:
        self.data, self.model, self.extra, self.n_workers = data, model, extra, workers
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data.parent / f"server-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> ServeProcess:
        cmd = [
            *(sys.executable, "-c", "from poisonlab.cli.main import main; main()", "serve"),
            *("--host", "127.0.0.1", "--port", str(self.port), "--threads", "1"),
            *("--data", str(self.data), "--model", str(self.model), *self.extra),
            *(("--workers", str(self.n_workers), "--log-level", "info") if self.n_workers > 1 else ()),
            *(("--log-level", "warning") if self.n_workers == 1 else ()),
        ]
        started = self.log_text().count(self.STARTED)
        log = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_text()[-3000:]}")
            up = self.n_workers == 1 or self.log_text().count(self.STARTED) - started >= self.n_workers
            try:
                if up and httpx.get(f"{self.url}/v1/health", timeout=5).json()["status"] == "ok":
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.n_workers} worker(s) not up in {timeout} s: {self.log_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()


class ContributionBurst:
    """``threads`` clients uploading distinct noise PNGs (label ``label``) to ``server`` until the
    ``with`` block ends or the server dies; keys are taken in turn from ``keys``.

    ``acked`` maps each acknowledged (201) contribution id to its bytes, ``statuses`` counts the
    answers, ``failures`` the requests that got no answer (the server died under them).
    """

    def __init__(self, server: ServeProcess, keys: Sequence[str], *, threads: int, label: str = "3") -> None:
        self.server, self.keys, self.label = server, keys, label
        self.acked: dict[int, bytes] = {}
        self.statuses: Counter[int] = Counter()
        self.failures = 0
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(i,)) for i in range(threads)]

    def __enter__(self) -> ContributionBurst:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def wait_for(self, count: int, timeout: float) -> None:
        """Wait until ``count`` contributions are acknowledged or ``timeout`` seconds have passed."""
        deadline = time.monotonic() + timeout
        while len(self.acked) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def _client(self, i: int) -> None:
        headers = {"X-API-Key": self.keys[i % len(self.keys)]}
        with httpx.Client(base_url=self.server.url, headers=headers, timeout=30) as http:
            for j in itertools.count():
                if self._stop.is_set():
                    return
                content = noise_png(1_000_000 * (i + 1) + j)
                try:
                    r = http.post(
                        "/v1/contributions", files={"file": ("n.png", content)}, data={"label": self.label}
                    )
                except httpx.HTTPError:
                    with self._lock:
                        self.failures += 1
                    if self.server.proc.poll() is not None:
                        return
                    continue
                with self._lock:
                    self.statuses[r.status_code] += 1
                    if r.status_code == 201:
                        self.acked[r.json()["id"]] = content


@dataclass(frozen=True)
class ProcessKit:
    """The helpers of the tests that run real server processes (test modules here are no package)."""

    ServeProcess: type[ServeProcess] = ServeProcess
    ContributionBurst: type[ContributionBurst] = ContributionBurst
    noise_png: Callable[[int], bytes] = noise_png
    make_keys: Callable[..., dict[str, list[str]]] = make_keys


@pytest.fixture(scope="session")
def kit() -> ProcessKit:
    """:class:`ServeProcess`, :class:`ContributionBurst`, :func:`noise_png` and :func:`make_keys`."""
    return ProcessKit()
