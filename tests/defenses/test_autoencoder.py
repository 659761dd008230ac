"""The convolutional autoencoder detector: reconstruction error, trained on the data or on trusted data.

Measured on these fixtures (CPU, one thread) and asserted with a margin:

* inverted / noise images planted among 120 colour images: all 6 flagged, no false alarm;
* pattern backdoor, autoencoder trained on the clean validation digits: AUROC 1.0 over all 116
  poison (the corner trigger never appears in the clean images), recall 0.14 at precision 1.0
  (with 9 % of the set poisoned the robust threshold moves up); with every 8th poison kept,
  recall 0.93 at precision 1.0;
* trained on the poisoned set itself, with every 8th poison kept: AUROC 1.0, recall 0.93,
  precision 0.93; with all 116 poison in its training data it learns the trigger (AUROC 0.54).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from poisonlab.data.dataset import Dataset
from poisonlab.defenses import get_defense
from poisonlab.defenses.detectors.autoencoder import AutoencoderDetector, ConvAutoencoder
from poisonlab.metrics import detection_scores


def planted_ood(make_colour_dataset) -> Dataset:
    clean = make_colour_dataset(per_class=40, seed=1)
    rng = np.random.default_rng(1)
    bad_x = np.concatenate(
        [255 - clean.x[clean.y == 0][:3], rng.integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)]
    )
    bad = Dataset(
        x=bad_x, y=np.zeros(6, dtype=np.int64), class_names=clean.class_names, poison_mask=np.ones(6, bool)
    )
    return clean.concat(bad)


def every_kth_poison(dataset: Dataset, k: int) -> Dataset:
    keep = ~dataset.poison_mask
    keep[np.flatnonzero(dataset.poison_mask)[::k]] = True
    return dataset.subset(keep)


def quality(defense, dataset: Dataset) -> dict:
    return detection_scores(dataset.poison_mask, defense.predict(), defense.score_samples())


def test_flags_out_of_distribution_images(make_colour_dataset) -> None:
    data = planted_ood(make_colour_dataset)
    defense = AutoencoderDetector(device="cpu").fit(data)
    m = quality(defense, data)
    assert m["recall"] >= 0.8 and m["fpr"] <= 0.02 and m["auroc"] >= 0.97  # measured 1.0, 0.0, 1.0
    assert defense.details_["trained_on"] == "dataset"
    assert defense.details_["epochs"] == 500  # 1 batch per epoch: min_steps decides


def test_trusted_training_exposes_the_trigger(backdoored) -> None:
    data, trusted = backdoored.dataset, backdoored.splits.val
    full = AutoencoderDetector(device="cpu").fit(data, trusted=trusted)
    m = quality(full, data)
    assert m["auroc"] >= 0.97 and m["precision"] >= 0.9 and m["recall"] >= 0.08 and m["fpr"] <= 0.005
    details = json.loads(json.dumps(full.details_))
    assert details["trained_on"] == "trusted" and details["training_images"] == len(trusted)
    low = every_kth_poison(data, 8)
    m = quality(AutoencoderDetector(device="cpu").fit(low, trusted=trusted), low)
    assert m["recall"] >= 0.7 and m["precision"] >= 0.8 and m["fpr"] <= 0.005  # 0.93, 1.0, 0.0


def test_self_trained_finds_a_rare_trigger(backdoored) -> None:
    low = every_kth_poison(backdoored.dataset, 8)
    defense = AutoencoderDetector(device="cpu").fit(low)
    m = quality(defense, low)
    assert m["auroc"] >= 0.95 and m["recall"] >= 0.7 and m["precision"] >= 0.7  # 1.0, 0.93, 0.93
    assert m["fpr"] <= 0.005  # measured 0.001
    assert np.allclose(np.median(defense.score_samples()), 0.0, atol=1e-9)
    # the same errors, flagged by share instead of by threshold
    share = AutoencoderDetector(device="cpu", contamination=0.02).fit(low)
    np.testing.assert_array_equal(share.errors_, defense.errors_)
    assert share.predict().sum() == round(0.02 * len(low)) and quality(share, low)["recall"] >= 0.8


def test_deterministic_for_a_seed(colour_data) -> None:
    kwargs = {"min_steps": 30, "device": "cpu", "per_class": True}
    a = AutoencoderDetector(seed=1, **kwargs).fit(colour_data)
    b = AutoencoderDetector(seed=1, **kwargs).fit(colour_data)
    c = AutoencoderDetector(seed=2, **kwargs).fit(colour_data)
    np.testing.assert_array_equal(a.errors_, b.errors_)
    assert not np.array_equal(a.errors_, c.errors_)
    assert [g["group"] for g in a.details_["groups"]] == list(colour_data.class_names)


def test_global_rng_is_left_alone(colour_data) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    AutoencoderDetector(min_steps=5, device="cpu").fit(colour_data)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("shape", [(8, 8, 1), (32, 32, 3), (10, 6, 3)])
def test_network_keeps_the_image_shape(shape) -> None:
    h, w, c = shape
    net = ConvAutoencoder(shape, latent_dim=8)
    with torch.no_grad():
        out = net(torch.rand(2, c, h, w))
    assert out.shape == (2, c, h, w) and float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_max_train_images_subsamples_training_only(colour_data) -> None:
    defense = AutoencoderDetector(max_train_images=10, min_steps=5, device="cpu").fit(colour_data)
    assert defense.details_["training_images"] == 10 and defense.errors_.shape == (len(colour_data),)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"latent_dim": 0}, "latent_dim must be an integer >= 1"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"min_steps": 1.5}, "min_steps must be an integer >= 1"),
        ({"max_train_images": 0}, "max_train_images must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"learning_rate": 0.0}, "learning_rate must be a positive number"),
        ({"per_class": 1}, "per_class must be True or False"),
        ({"threshold": -3}, "threshold must be a positive number"),
        ({"contamination": 0.9}, r"contamination must be in \(0.0, 0.5\]"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"device": "gpu"}, "device must be one of"),
    ],
)
def test_parameters_are_validated(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_defense("autoencoder", **params)


def test_bad_inputs(colour_data, backdoored) -> None:
    tiny = Dataset(x=np.zeros((6, 1, 1, 1), np.uint8), y=np.zeros(6, np.int64), class_names=("a",))
    with pytest.raises(ValueError, match="at least 2x2 pixels"):
        AutoencoderDetector(device="cpu").fit(tiny)
    with pytest.raises(ValueError, match="trusted images must have shape"):
        AutoencoderDetector(device="cpu").fit(backdoored.dataset, trusted=colour_data)
    assert AutoencoderDetector.space == "pixels" and not AutoencoderDetector.needs_model
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            AutoencoderDetector(device="cuda").fit(colour_data)
