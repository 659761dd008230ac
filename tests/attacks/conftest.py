"""Fixtures for the attack tests: a small synthetic dataset and simple local triggers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from poisonlab.data.dataset import Dataset
from poisonlab.models.simple_cnn import SimpleCifarCNN

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _make_dataset(per_class: int = 20, size: int = 8, channels: int = 3, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    n = per_class * len(CLASSES)
    # pixels kept below 250 so a white corner trigger always changes them
    x = rng.integers(0, 250, size=(n, size, size, channels), dtype=np.uint8)
    y = np.tile(np.arange(len(CLASSES)), per_class)  # interleaved classes
    return Dataset(x=x, y=y, class_names=CLASSES, source="synthetic:train", name="synth")


def _corner_trigger(x: np.ndarray) -> np.ndarray:
    """White 2x2 square in the bottom-right corner (uint8 or float in [0, 1])."""
    out = x.copy()
    out[:, -2:, -2:, :] = 255 if x.dtype == np.uint8 else 1.0
    return out


def _top_left_pixel(x: np.ndarray) -> np.ndarray:
    out = x.copy()
    out[:, 0, 0, :] = 255 if x.dtype == np.uint8 else 1.0
    return out


@pytest.fixture
def clean() -> Dataset:
    return _make_dataset()


@pytest.fixture
def snapshot():
    """Deep copies of a Dataset's arrays to check it was not mutated."""

    def take(ds: Dataset) -> dict[str, np.ndarray | None]:
        return {
            "x": ds.x.copy(),
            "y": ds.y.copy(),
            "source": ds.source.copy(),
            "mask": None if ds.poison_mask is None else ds.poison_mask.copy(),
            "hash": ds.content_hash,
        }

    return take


def _assert_unchanged(ds: Dataset, snap: dict) -> None:
    np.testing.assert_array_equal(ds.x, snap["x"])
    np.testing.assert_array_equal(ds.y, snap["y"])
    np.testing.assert_array_equal(ds.source, snap["source"])
    if snap["mask"] is None:
        assert ds.poison_mask is None
    else:
        np.testing.assert_array_equal(ds.poison_mask, snap["mask"])


@pytest.fixture
def make_dataset():
    return _make_dataset


@pytest.fixture
def trigger():
    return _corner_trigger


@pytest.fixture
def other_trigger():
    return _top_left_pixel


@pytest.fixture
def assert_unchanged():
    return _assert_unchanged


def _calibrated_model(size: int = 16, seed: int = 0) -> SimpleCifarCNN:
    """A random CNN whose BatchNorm statistics are set from data.

    With the default running statistics (mean 0, var 1) an untrained net maps every random image
    to nearly the same penultimate vector, which leaves nothing to collide or attack; one
    train-mode pass with momentum 1 makes features, logits and gradients depend on the input
    without any training.
    """
    torch.manual_seed(seed)
    model = SimpleCifarCNN(
        input_shape=(size, size, 3), num_classes=10, dropout=(0.0, 0.0, 0.0, 0.0), bn_momentum=1.0
    )
    x = torch.from_numpy(np.random.default_rng(seed).random((64, 3, size, size), dtype=np.float32))
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


@pytest.fixture(scope="module")
def calibrated_model() -> SimpleCifarCNN:
    """16x16x3, 10 classes, untrained but input-dependent (the crafted attacks' surrogate)."""
    return _calibrated_model()


def _assert_clean_label_result(res, data: Dataset, model, state: dict, target: int, n_poison: int) -> None:
    """The contract of every crafted clean-label attack on one result.

    Exactly the poison-masked samples changed, all of class ``target``; every other sample is
    byte-identical; labels and source tags unchanged; the surrogate's weights unchanged and it
    is still in eval mode.
    """
    out = res.dataset
    changed = np.flatnonzero((out.x != data.x).reshape(len(data), -1).any(1))
    np.testing.assert_array_equal(np.flatnonzero(out.poison_mask), changed)
    assert res.num_poison == n_poison and (data.y[changed] == target).all()
    keep = np.setdiff1d(np.arange(len(data)), changed)
    assert out.x[keep].tobytes() == data.x[keep].tobytes()
    np.testing.assert_array_equal(out.y, data.y)
    np.testing.assert_array_equal(out.source, data.source)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert not model.training


@pytest.fixture
def assert_clean_label_result():
    return _assert_clean_label_result
