"""Fixtures of the ImRecS service tests: a small digits model, services on temporary folders, keys.

The model is the chapter's CNN trained for a few epochs on the embedded 8x8 digits (about 96%
test accuracy, seconds on one core), so the tests need neither CIFAR-10 nor a GPU.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

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
