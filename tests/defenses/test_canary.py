"""Canary records: margin-picked per-class canaries, save/load, and the all-must-pass check."""

from __future__ import annotations

import json

import numpy as np
import pytest

from poisonlab.defenses.canary import CanarySet, check_canaries, select_canaries
from poisonlab.training import train
from poisonlab.training.config import digits_recipe


@pytest.fixture(scope="module")
def canaries(mislabeled) -> CanarySet:
    """Canaries of the clean validation set, picked by a model other than the ones checked below."""
    return select_canaries(mislabeled.splits.val, mislabeled.model, per_class=5, device="cpu")


def test_selection_by_margin(canaries: CanarySet, mislabeled) -> None:
    val = mislabeled.splits.val
    assert len(canaries) == 50
    assert np.array_equal(np.bincount(canaries.labels), np.full(10, 5))
    assert np.array_equal(canaries.images, val.x[canaries.indices])
    assert np.array_equal(canaries.labels, val.y[canaries.indices])
    assert set(canaries.sources) == {"digits:val"}
    # the picked ones are the reference model's most confident correct predictions of their class
    assert check_canaries(mislabeled.model, canaries, device="cpu").passed


def test_backdoored_model_passes_clean_canaries(canaries: CanarySet, backdoored) -> None:
    report = check_canaries(backdoored.model, canaries, device="cpu")
    assert report.passed and report.accuracy == 1.0 and report.failures == ()
    assert json.loads(json.dumps(report.to_dict()))["passed"] is True


def test_model_fine_tuned_to_flip_a_class_fails(canaries: CanarySet, backdoored) -> None:
    """Fine-tune the (clean-accurate) backdoored model on digits with every "3" labelled "8"."""
    train_set = backdoored.splits.train
    flipped = train_set.replace(y=np.where(train_set.y == 3, 8, train_set.y))
    config = digits_recipe().model_copy(update={"epochs": 3, "seed": 0})
    model = train(flipped, config, model=backdoored.model, device="cpu", progress=False).model.eval()
    report = check_canaries(model, canaries, device="cpu")
    # measured: the five "3" canaries all answer "8", every other canary is right
    assert not report.passed
    assert report.failures_per_class == {"3": 5}
    assert {(f.label_name, f.predicted_name) for f in report.failures} == {("3", "8")}
    assert report.accuracy == pytest.approx(0.9)
    assert report.to_dict()["failures"][0]["predicted"] == 8


def test_random_selection_is_seeded(mislabeled) -> None:
    val = mislabeled.splits.val
    a = select_canaries(val, per_class=3, seed=1)
    b = select_canaries(val, per_class=3, seed=1)
    c = select_canaries(val, per_class=3, seed=2)
    assert np.array_equal(a.indices, b.indices) and not np.array_equal(a.indices, c.indices)
    assert np.array_equal(np.bincount(a.labels), np.full(10, 3))


def test_save_load_round_trip(canaries: CanarySet, tmp_path) -> None:
    path = canaries.save(tmp_path / "sub" / "canaries")
    assert path.suffix == ".npz" and path.is_file()
    loaded = CanarySet.load(path)
    assert np.array_equal(loaded.images, canaries.images) and loaded.images.dtype == np.uint8
    assert np.array_equal(loaded.labels, canaries.labels)
    assert np.array_equal(loaded.indices, canaries.indices)
    assert loaded.class_names == canaries.class_names
    assert list(loaded.sources) == list(canaries.sources)


def test_bad_inputs(canaries: CanarySet, mislabeled, tiny_model, tmp_path) -> None:
    val = mislabeled.splits.val
    with pytest.raises(ValueError, match="per_class"):
        select_canaries(val, per_class=0)
    with pytest.raises(ValueError, match="need per_class=40"):
        select_canaries(val, per_class=40)  # the validation set has about 27 images per class
    with pytest.raises(ValueError, match="Dataset"):
        select_canaries(val.x)
    with pytest.raises(ValueError, match="classes"):
        select_canaries(val, tiny_model)
    with pytest.raises(ValueError, match="classes"):
        check_canaries(tiny_model, canaries)
    with pytest.raises(ValueError, match="CanarySet"):
        check_canaries(mislabeled.model, val)
    with pytest.raises(ValueError, match="labels"):
        CanarySet(images=canaries.images, labels=np.full(len(canaries), 12), class_names=canaries.class_names)
    with pytest.raises(ValueError, match="shape"):
        CanarySet(canaries.images, canaries.labels, canaries.class_names, sources=np.array(["a", "b"]))
    with pytest.raises(FileNotFoundError):
        CanarySet.load(tmp_path / "missing.npz")
    not_canaries = tmp_path / "other.npz"
    np.savez(not_canaries, x=np.zeros(3))
    with pytest.raises(ValueError, match="missing"):
        CanarySet.load(not_canaries)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a canary"):
        CanarySet.load(garbage)
