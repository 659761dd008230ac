"""Fixtures for the data tests: tiny synthetic CIFAR-10 releases and image files."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from poisonlab.data.cifar10 import CIFAR10_CLASSES

BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
PER_BATCH = 20


def _make_batch(rng: np.random.Generator, n: int, num_classes: int = 10) -> dict:
    """A CIFAR-style batch dict with channel-major rows and labels covering every class."""
    return {
        b"batch_label": b"synthetic",
        b"labels": [int(v) for v in np.arange(n) % num_classes],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def _write_cifar(
    folder: Path, *, n: int = PER_BATCH, meta_names: list[bytes] | None = None, seed: int = 0
) -> Path:
    """Write ``folder/cifar-10-batches-py`` with five train batches and a test batch of ``n`` each."""
    batch_dir = folder / "cifar-10-batches-py"
    batch_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in BATCHES:
        (batch_dir / name).write_bytes(pickle.dumps(_make_batch(rng, n), protocol=4))
    names = meta_names or [c.encode() for c in CIFAR10_CLASSES]
    meta = {b"num_cases_per_batch": n, b"label_names": names, b"num_vis": 3072}
    (batch_dir / "batches.meta").write_bytes(pickle.dumps(meta, protocol=4))
    return batch_dir


def _write_cifar_tar(batch_dir: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(batch_dir, arcname="cifar-10-batches-py")
    return archive


@pytest.fixture
def cifar_root(tmp_path: Path) -> Path:
    """tmp folder holding a synthetic ``cifar-10-batches-py``."""
    root = tmp_path / "cifar"
    _write_cifar(root)
    return root


@pytest.fixture
def cifar_tar(tmp_path: Path, cifar_root: Path) -> Path:
    """A synthetic ``cifar-10-python.tar.gz`` in its own folder."""
    folder = tmp_path / "archive"
    folder.mkdir()
    return _write_cifar_tar(cifar_root / "cifar-10-batches-py", folder / "cifar-10-python.tar.gz")


@pytest.fixture
def write_cifar():
    """``write_cifar(folder, n=20, meta_names=None, seed=0) -> batch folder``."""
    return _write_cifar


@pytest.fixture
def write_cifar_tar():
    """``write_cifar_tar(batch_dir, archive) -> archive`` (a .tar.gz)."""
    return _write_cifar_tar


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's POISONLAB_DATA or cache, nor touches the network."""
    monkeypatch.delenv("POISONLAB_DATA", raising=False)
    monkeypatch.setenv("POISONLAB_HOME", str(tmp_path / "home"))

    def no_network(url: str, dest: Path) -> None:
        raise OSError("network disabled in tests")

    monkeypatch.setattr("poisonlab.data.cifar10._fetch", no_network)
