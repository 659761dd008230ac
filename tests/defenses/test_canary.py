"""Canary records: margin-picked per-class canaries, save/load, and the all-must-pass check."""

from __future__ import annotations

import json

import numpy as np
import pytest

from poisonlab.defenses.gates.canary import CanarySet, check_canaries, select_canaries
from poisonlab.training import train
from poisonlab.training.config import digits_recipe


@pytest.fixture(scope="module")
def canaries(clean_digits_model, digits_splits) -> CanarySet:
    """Canaries of the clean validation set, picked by the clean model."""
    return select_canaries(digits_splits.val, clean_digits_model, per_class=5, device="cpu")


def test_selection_by_margin(canaries: CanarySet, clean_digits_model, digits_splits) -> None:
    val = digits_splits.val
    assert len(canaries) == 50
    assert np.array_equal(np.bincount(canaries.labels), np.full(10, 5))
    assert np.array_equal(canaries.images, val.x[canaries.indices])
    assert np.array_equal(canaries.labels, val.y[canaries.indices])
    assert set(canaries.sources) == {"digits:val"}
    # the picked ones are the reference model's most confident correct predictions of their class
    assert check_canaries(clean_digits_model, canaries, device="cpu").passed


def test_backdoored_model_passes_clean_canaries(canaries: CanarySet, exact_backdoor) -> None:
    """A backdoor hides on clean inputs: the wired one leaves every clean canary to the clean model."""
    report = check_canaries(exact_backdoor.model, canaries, device="cpu")
    assert report.passed and report.accuracy == 1.0 and report.failures == ()
    assert json.loads(json.dumps(report.to_dict()))["passed"] is True


def test_model_fine_tuned_to_flip_a_class_fails(
    canaries: CanarySet, clean_digits_model, digits_splits
) -> None:
    """Fine-tune a clean model on digits with every "3" labelled "8": the "3" canaries fail."""
    train_set = digits_splits.train
    flipped = train_set.replace(y=np.where(train_set.y == 3, 8, train_set.y))
    config = digits_recipe().model_copy(update={"epochs": 3, "seed": 0})
    model = train(flipped, config, model=clean_digits_model, device="cpu", progress=False).model.eval()
    report = check_canaries(model, canaries, device="cpu")
    assert not report.passed
    # every "3" canary now answers "8"; a stray other failure may come with the fine-tune, but the
    # flipped class is where the canaries fail
    assert report.failures_per_class["3"] == 5
    assert all(f.predicted_name == "8" for f in report.failures if f.label_name == "3")
    assert all(n <= 1 for name, n in report.failures_per_class.items() if name != "3")
    assert report.accuracy == pytest.approx(1 - len(report.failures) / len(canaries))
    first = report.to_dict()["failures"][0]
    assert first["predicted"] == next(f.predicted for f in report.failures)


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
