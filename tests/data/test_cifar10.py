"""CIFAR-10 loader on tiny synthetic releases (folder, nested, tar.gz) and optionally the real data."""

from __future__ import annotations

import hashlib
import os
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from poisonlab.data import cifar10
from poisonlab.data.cifar10 import (
    CIFAR10_CLASSES,
    CIFAR10_URL,
    CifarNotFoundError,
    download_cifar10,
    load_cifar10,
    read_cifar10_arrays,
)

PER_BATCH = 20  # batch size written by the conftest fixtures
N_TRAIN = 5 * PER_BATCH
REAL_CIFAR = Path(
    os.environ.get("POISONLAB_DATA") or Path(__file__).resolve().parents[3] / "shared/datasets/cifar10-jpeg"
)


def _hashes(splits) -> tuple[str, str, str]:
    return splits.train.content_hash, splits.val.content_hash, splits.test.content_hash


@pytest.mark.parametrize("layout", ["parent", "batch_dir", "tar_file", "tar_parent"])
def test_every_layout_gives_the_same_splits(layout, cifar_root, cifar_tar):
    where = {
        "parent": cifar_root,
        "batch_dir": cifar_root / "cifar-10-batches-py",
        "tar_file": cifar_tar,
        "tar_parent": cifar_tar.parent,
    }[layout]
    got = load_cifar10(where, val_size=30)
    assert _hashes(got) == _hashes(load_cifar10(cifar_root, val_size=30))
    assert got.train.x.shape == (N_TRAIN - 30, 32, 32, 3) and got.train.x.dtype == np.uint8


def test_rows_are_decoded_channel_major(cifar_root):
    batch = pickle.loads((cifar_root / "cifar-10-batches-py" / "data_batch_2").read_bytes())
    arrays = read_cifar10_arrays(cifar_root / "cifar-10-batches-py")
    row = batch[b"data"][3]
    img = arrays["x_train"][PER_BATCH + 3]
    np.testing.assert_array_equal(img[:, :, 0], row[:1024].reshape(32, 32))
    np.testing.assert_array_equal(img[:, :, 1], row[1024:2048].reshape(32, 32))
    np.testing.assert_array_equal(img[:, :, 2], row[2048:].reshape(32, 32))
    assert img[0, 1, 0] == row[1]  # row-major inside each channel plane
    assert arrays["x_train"].flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("val_size", [0, 1, 30, N_TRAIN - 1])
def test_split_sizes_and_partition(cifar_root, val_size):
    s = load_cifar10(cifar_root, val_size=val_size)
    assert (len(s.train), len(s.val), len(s.test)) == (N_TRAIN - val_size, val_size, PER_BATCH)
    everything = read_cifar10_arrays(cifar_root)["x_train"].reshape(N_TRAIN, -1)
    union = np.concatenate([s.train.x, s.val.x]).reshape(N_TRAIN, -1)
    assert sorted(map(bytes, union)) == sorted(map(bytes, everything))


@pytest.mark.parametrize("val_size", [-1, N_TRAIN])
def test_bad_val_size(cifar_root, val_size):
    with pytest.raises(ValueError, match="val_size"):
        load_cifar10(cifar_root, val_size=val_size)


def test_split_follows_seeded_permutation(cifar_root):
    arrays = read_cifar10_arrays(cifar_root)
    perm = np.random.default_rng(7).permutation(N_TRAIN)
    s = load_cifar10(cifar_root, seed=7, val_size=25)
    np.testing.assert_array_equal(s.train.x, arrays["x_train"][perm[:75]])
    np.testing.assert_array_equal(s.val.y, arrays["y_train"][perm[75:]])
    assert _hashes(load_cifar10(cifar_root, seed=7, val_size=25)) == _hashes(s)
    assert load_cifar10(cifar_root, seed=8, val_size=25).train.content_hash != s.train.content_hash


def test_names_sources_and_classes(cifar_root):
    s = load_cifar10(cifar_root, val_size=10)
    for split, ds in zip(("train", "val", "test"), (s.train, s.val, s.test), strict=True):
        assert ds.name == f"cifar10-{split}"
        assert set(ds.source) == {f"cifar10:{split}"}
        assert ds.class_names == CIFAR10_CLASSES
        assert ds.poison_mask is None


def test_class_names_come_from_meta_or_default(tmp_path, write_cifar):
    names = [f"c{i}".encode() for i in range(10)]
    batch_dir = write_cifar(tmp_path / "a", meta_names=names)
    assert load_cifar10(batch_dir, val_size=5).class_names == tuple(f"c{i}" for i in range(10))
    (batch_dir / "batches.meta").unlink()
    assert load_cifar10(batch_dir, val_size=5).class_names == CIFAR10_CLASSES


def _rewrite(batch_dir: Path, name: str, changes: dict) -> None:
    obj = pickle.loads((batch_dir / name).read_bytes())
    obj.update(changes)
    (batch_dir / name).write_bytes(pickle.dumps(obj))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({b"data": np.zeros((PER_BATCH, 3000), np.uint8)}, "3072"),
        ({b"data": np.zeros((PER_BATCH, 3072), np.int32)}, "uint8"),
        ({b"labels": [10] * PER_BATCH}, r"\[0, 9\]"),
        ({b"labels": [-1] * PER_BATCH}, r"\[0, 9\]"),
        ({b"labels": [0] * (PER_BATCH - 1)}, "labels of shape"),
        ({b"labels": ["x"] * PER_BATCH}, "not integers"),
    ],
)
def test_malformed_batch_is_rejected(cifar_root, change, match):
    batch_dir = cifar_root / "cifar-10-batches-py"
    _rewrite(batch_dir, "data_batch_4", change)
    with pytest.raises(ValueError, match=match) as err:
        load_cifar10(cifar_root, val_size=5)
    assert "data_batch_4" in str(err.value)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_pickle_names_the_file(cifar_root, damage):
    path = cifar_root / "cifar-10-batches-py" / "data_batch_3"
    raw = path.read_bytes()
    path.write_bytes({"truncate": raw[: len(raw) // 2], "garbage": b"\x00not a pickle", "empty": b""}[damage])
    with pytest.raises(ValueError, match="data_batch_3.*corrupt or truncated"):
        load_cifar10(cifar_root, val_size=5)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickle_with_foreign_globals_is_refused(cifar_root):
    path = cifar_root / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    with pytest.raises(ValueError, match="test_batch.*forbidden global"):
        load_cifar10(cifar_root, val_size=5)


def test_numpy1_style_pickles_load(cifar_root):
    """The official archive pickles arrays under ``numpy.core``; numpy 2 calls it ``numpy._core``."""
    batch_dir = cifar_root / "cifar-10-batches-py"
    before = load_cifar10(cifar_root, val_size=5)
    for name in ("data_batch_1", "test_batch"):
        raw = pickle.dumps(pickle.loads((batch_dir / name).read_bytes()), protocol=2)
        assert b"numpy._core.multiarray" in raw
        (batch_dir / name).write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert _hashes(load_cifar10(cifar_root, val_size=5)) == _hashes(before)


def test_incomplete_folder_lists_missing_files(cifar_root):
    (cifar_root / "cifar-10-batches-py" / "data_batch_5").unlink()
    with pytest.raises(ValueError, match="missing data_batch_5"):
        load_cifar10(cifar_root, val_size=5)


def test_corrupt_archive(tmp_path, cifar_tar):
    bad = tmp_path / "cifar-10-python.tar.gz"
    bad.write_bytes(cifar_tar.read_bytes()[:300])
    with pytest.raises(ValueError, match="cannot read CIFAR-10 archive"):
        load_cifar10(bad)


def _assert_helpful(message: str) -> None:
    assert "--data-dir" in message and "POISONLAB_DATA" in message and CIFAR10_URL in message


def test_wrong_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(CifarNotFoundError) as err:
        load_cifar10(tmp_path / "nowhere")
    assert isinstance(err.value, FileNotFoundError)
    _assert_helpful(str(err.value))


def test_offline_without_data_is_a_clear_error(monkeypatch, tmp_path):
    def offline(url, dest):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(cifar10, "_fetch", offline)
    with pytest.raises(CifarNotFoundError, match="no route to host") as err:
        load_cifar10()
    _assert_helpful(str(err.value))
    assert list((tmp_path / "home").iterdir()) == []  # no partial download left behind


def test_env_var_and_cache_are_used(monkeypatch, tmp_path, cifar_root, write_cifar_tar):
    monkeypatch.setenv("POISONLAB_DATA", str(cifar_root))
    expected = _hashes(load_cifar10(cifar_root, val_size=5))
    assert _hashes(load_cifar10(val_size=5)) == expected
    monkeypatch.setenv("POISONLAB_DATA", str(tmp_path / "missing"))
    with pytest.raises(CifarNotFoundError, match="POISONLAB_DATA"):
        load_cifar10(val_size=5)
    monkeypatch.delenv("POISONLAB_DATA")
    write_cifar_tar(cifar_root / "cifar-10-batches-py", _home(tmp_path) / "cifar-10-python.tar.gz")
    assert _hashes(load_cifar10(val_size=5)) == expected  # from the cache, no download attempted


def _home(tmp_path: Path) -> Path:
    (tmp_path / "home").mkdir(exist_ok=True)
    return tmp_path / "home"


def test_download_verifies_md5_then_loads(monkeypatch, tmp_path, cifar_tar):
    payload = cifar_tar.read_bytes()
    monkeypatch.setattr(cifar10, "_fetch", lambda url, dest: Path(dest).write_bytes(payload))
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", hashlib.md5(payload).hexdigest())
    s = load_cifar10(val_size=5)
    assert (tmp_path / "home" / "cifar-10-python.tar.gz").read_bytes() == payload
    assert len(s.test) == PER_BATCH


def test_md5_mismatch_is_rejected(monkeypatch, tmp_path):
    monkeypatch.setattr(cifar10, "_fetch", lambda url, dest: Path(dest).write_bytes(b"tampered"))
    with pytest.raises(ValueError, match="md5"):
        download_cifar10(tmp_path / "dl")
    assert list((tmp_path / "dl").iterdir()) == []
    with pytest.raises(CifarNotFoundError, match="md5"):
        load_cifar10()


@pytest.mark.needs_cifar
@pytest.mark.skipif(
    cifar10.find_cifar10(REAL_CIFAR) is None,
    reason=f"real CIFAR-10 not found at {REAL_CIFAR} (set POISONLAB_DATA to run this test)",
)
def test_real_cifar10():
    s = load_cifar10(REAL_CIFAR)
    assert (len(s.train), len(s.val), len(s.test)) == (40_000, 10_000, 10_000)
    assert s.class_names == CIFAR10_CLASSES
    assert s.train.x.shape[1:] == (32, 32, 3)
    assert (s.test.class_counts() == 1000).all()
    assert (s.train.class_counts() + s.val.class_counts() == 5000).all()
