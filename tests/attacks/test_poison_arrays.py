"""ART-style arrays: ``attack.poison(x, y)`` / ``attack.poison_arrays(x, y)`` beside ``poison(dataset)``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from poisonlab.attacks import ATTACKS, BackdoorPoisoning, LabelFlip, MislabelInjection
from poisonlab.data.dataset import Dataset
from poisonlab.models.simple_cnn import SimpleCifarCNN


def _params(name: str, clean: Dataset, trigger) -> dict:
    """Every attack with classes as indices (arrays carry no class names)."""
    torch.manual_seed(0)
    model = SimpleCifarCNN(input_shape=(8, 8, 3), num_classes=10).eval()
    crafted = dict(model=model, target=2, count=5, seed=1)
    return {
        "hidden_trigger": dict(crafted, source=0, trigger=trigger, steps=2),
        "feature_collision": dict(crafted, victims=clean.x[0], steps=2),
        "clean_label_backdoor": dict(crafted, trigger=trigger, steps=2),
        "gradient_matching": dict(crafted, victims=clean.x[0], steps=2),
        "random_noise": dict(crafted, eps=8 / 255),
        "mislabel": dict(images=clean.x[:5].copy(), target=2),
        "label_flip": dict(source=0, target=2, count=7, seed=1),
        "random_label_flip": dict(fraction=0.1, seed=1),
        "backdoor": dict(perturbation=trigger, source=0, target=2),
        "none": {},
        "all_to_all": dict(perturbation=trigger, count=20, seed=1),
    }[name]


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_poison_on_arrays_equals_poison_on_the_dataset(name, clean, trigger):
    attack = ATTACKS[name](**_params(name, clean, trigger))
    expected = attack.poison(clean).dataset
    x_in, y_in = clean.x.copy(), clean.y.copy()
    x_p, y_p, mask = attack.poison(clean.x, clean.y)
    np.testing.assert_array_equal(x_p, expected.x)
    np.testing.assert_array_equal(y_p, expected.y)
    np.testing.assert_array_equal(mask, expected.mask_or_clean())
    assert x_p.dtype == np.uint8 and y_p.dtype == np.int64 and mask.dtype == bool
    np.testing.assert_array_equal(clean.x, x_in)  # the inputs are not modified
    np.testing.assert_array_equal(clean.y, y_in)
    x_q, y_q, mask_q = attack.poison_arrays(clean.x, clean.y)  # the explicit spelling
    np.testing.assert_array_equal(x_q, x_p)
    np.testing.assert_array_equal(y_q, y_p)
    np.testing.assert_array_equal(mask_q, mask)


def test_one_hot_labels_come_back_one_hot(clean, trigger):
    attack = BackdoorPoisoning(perturbation=trigger, source=0, target=2, integration="replace")
    one_hot = np.eye(10, dtype=np.float32)[clean.y]
    x_p, y_p, mask = attack.poison(clean.x, one_hot)
    assert y_p.shape == (len(clean), 10) and y_p.dtype == np.float32
    assert (y_p.sum(axis=1) == 1).all()
    assert (y_p[mask].argmax(axis=1) == 2).all()  # the poison carries the target label
    np.testing.assert_array_equal(y_p[~mask], one_hot[~mask])


def test_class_names_let_arrays_use_named_classes(clean, trigger):
    named = LabelFlip(source="airplane", target="bird", count=3)
    _, y_p, mask = named.poison(clean.x, clean.y, class_names=clean.class_names)
    assert mask.sum() == 3 and (y_p[mask] == 2).all()
    with pytest.raises(ValueError, match="source: unknown class 'airplane'"):
        named.poison(clean.x, clean.y)  # default names are "0".."9"


def test_concatenating_attacks_append_their_poison_after_the_inputs(clean):
    attack = MislabelInjection(images=clean.x[:4].copy(), target=1)
    x_p, y_p, mask = attack.poison(clean.x, clean.y)
    n = len(clean)
    assert len(x_p) == n + 4
    np.testing.assert_array_equal(x_p[:n], clean.x)
    assert not mask[:n].any() and mask[n:].all() and (y_p[n:] == 1).all()


def test_a_target_absent_from_the_labels_needs_class_names(clean):
    few = clean.y % 3  # labels 0..2 only: the default names stop at "2"
    with pytest.raises(ValueError, match=r"target: class index 5 out of range \[0, 2\]"):
        LabelFlip(source=0, target=5, count=1).poison(clean.x, few)
    _, y_p, _ = LabelFlip(source=0, target=5, count=1).poison(clean.x, few, class_names=clean.class_names)
    assert (y_p == 5).sum() == 1


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        ("float", "labels", r"x must be a uint8 image array \(N, H, W, C\), got float32; convert"),
        ("uint8", "not_one_hot", r"y of shape \(N, K\) must be one-hot"),
        ("uint8", "float_labels", r"y must be class indices \(N,\) or one-hot rows \(N, K\), got float64"),
        ("uint8", None, r"poison\(x, y\) needs the labels y"),
    ],
)
def test_bad_arrays_are_value_errors(clean, x, y, match):
    xs = {"float": clean.x.astype(np.float32) / 255, "uint8": clean.x}[x]
    ys = {
        "labels": clean.y,
        "not_one_hot": np.ones((len(clean), 10)),
        "float_labels": clean.y.astype(np.float64),
        None: None,
    }[y]
    with pytest.raises(ValueError, match=match):
        LabelFlip(source=0, target=2, count=1).poison(xs, ys)


def test_a_dataset_with_labels_is_refused(clean):
    with pytest.raises(ValueError, match=r"poison takes a Dataset, or arrays as poison\(x, y\)"):
        LabelFlip(source=0, target=2, count=1).poison(clean, clean.y)


def test_one_hot_width_must_match_the_class_names(clean):
    with pytest.raises(ValueError, match="class_names must name the 10 one-hot columns of y: expected 10"):
        LabelFlip(source=0, target=2, count=1).poison(clean.x, np.eye(10)[clean.y], class_names=("a", "b"))
