"""Witches' Brew gradient matching: alignment, the eps ball, the dataset contract, seeding, NaN guards
and parameter validation, on a small synthetic 16x16 problem with a briefly trained chapter CNN."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from poisonlab.attacks.gradient_matching import GradientMatching
from poisonlab.data.dataset import Dataset
from poisonlab.models.simple_cnn import SimpleCifarCNN

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SHAPE = (16, 16, 3)
PER_CLASS = 12
TARGET = "bird"  # index 2
EPS = 16 / 255


def _images(rng: np.random.Generator, means: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Class-coloured noise, so a few training steps give the CNN non-trivial gradients."""
    noise = rng.normal(0.0, 35.0, size=(labels.size, *SHAPE))
    return np.clip(means[labels] + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def problem() -> tuple[Dataset, SimpleCifarCNN, np.ndarray]:
    """(training set of 10 classes x 12 images, trained eval-mode CNN, 2 'cat' victims)."""
    rng = np.random.default_rng(0)
    means = rng.integers(40, 216, size=(len(CLASSES), 1, 1, 3)).astype(np.float64)
    y = np.tile(np.arange(len(CLASSES)), PER_CLASS)
    clean = Dataset(x=_images(rng, means, y), y=y, class_names=CLASSES, source="synthetic", name="synth")
    victims = _images(rng, means, np.array([3, 3]))
    torch.manual_seed(0)
    model = SimpleCifarCNN(input_shape=SHAPE, num_classes=len(CLASSES), bn_momentum=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.from_numpy(clean.x).permute(0, 3, 1, 2).float() / 255.0
    for _ in range(20):
        opt.zero_grad()
        F.cross_entropy(model(x), torch.from_numpy(clean.y)).backward()
        opt.step()
    model.zero_grad(set_to_none=True)  # so the tests can check that crafting leaves .grad alone
    return clean, model.eval(), victims


def _attack(problem, **overrides) -> GradientMatching:
    clean, model, victims = problem
    params = dict(model=model, victims=victims, target=TARGET, count=8, steps=20, augment=False)
    return GradientMatching(**{**params, **overrides})


def _cosine(model: nn.Module, victims: np.ndarray, poisons: np.ndarray, labels: np.ndarray) -> float:
    """cos(g_p, g_adv) computed here with plain autograd, independently of the attack's code."""
    net = copy.deepcopy(model).eval()
    params = list(net.parameters())

    def grad(images: np.ndarray, y: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
        loss = F.cross_entropy(net(x), torch.as_tensor(y, dtype=torch.int64))
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])

    g_adv = grad(victims, np.full(len(victims), CLASSES.index(TARGET)))
    return float(F.cosine_similarity(grad(poisons, labels), g_adv, dim=0))


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "augment"])
def crafted(request, problem):
    """(result, input snapshot) of one crafting run, with and without augmentation."""
    clean, model, _ = problem
    snap = {
        "x": clean.x.copy(),
        "y": clean.y.copy(),
        "hash": clean.content_hash,
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "grad_flags": [p.requires_grad for p in model.parameters()],
        "training": model.training,
    }
    return _attack(problem, augment=request.param, steps=30, lr=0.3).poison(clean), snap


def test_alignment_with_adversarial_gradient_increases(crafted, problem):
    result, _ = crafted
    clean, model, victims = problem
    idx = result.indices_array()
    before = _cosine(model, victims, clean.x[idx], clean.y[idx])
    after = _cosine(model, victims, result.dataset.x[idx], result.dataset.y[idx])
    assert after > before + 0.05, (before, after)  # measured: 0.04 -> 0.11-0.12
    # the report's losses are 1 - cos of the same (unaugmented) quantities
    assert result.report.loss_initial == pytest.approx(1.0 - before, abs=1e-4)
    assert result.report.loss_final == pytest.approx(1.0 - after, abs=1e-4)


def test_poisons_in_ball_and_dataset_contract(crafted, problem):
    result, _ = crafted
    clean = problem[0]
    out = result.dataset
    idx = result.indices_array()
    assert idx.size == 8 and result.num_poison == 8 and len(out) == len(clean)
    assert out.x.dtype == np.uint8 and out.x.shape == clean.x.shape
    diff = np.abs(out.x.astype(np.int16) - clean.x.astype(np.int16))
    assert diff.max() <= int(np.floor(EPS * 255)) == 16
    assert result.report.max_linf == diff.max() > 0
    np.testing.assert_array_equal(out.y, clean.y)  # clean label: labels unchanged
    changed = np.flatnonzero(diff.reshape(len(clean), -1).max(axis=1) > 0)
    assert set(changed) <= set(idx) and np.all(clean.y[idx] == CLASSES.index(TARGET))
    np.testing.assert_array_equal(np.flatnonzero(out.poison_mask), idx)
    keep = np.setdiff1d(np.arange(len(clean)), idx)
    np.testing.assert_array_equal(out.x[keep], clean.x[keep])
    np.testing.assert_array_equal(out.source, clean.source)
    assert result.description == "gradient_matching: 8 poisons of 'bird' (eps 16/255) for 2 victim(s)"


def test_inputs_not_modified(crafted, problem):
    _, snap = crafted
    clean, model, _ = problem
    np.testing.assert_array_equal(clean.x, snap["x"])
    np.testing.assert_array_equal(clean.y, snap["y"])
    assert clean.poison_mask is None and clean.content_hash == snap["hash"]
    state = model.state_dict()
    assert state.keys() == snap["state"].keys()
    assert all(torch.equal(state[k], v) for k, v in snap["state"].items())
    assert [p.requires_grad for p in model.parameters()] == snap["grad_flags"]
    assert model.training == snap["training"] and all(p.grad is None for p in model.parameters())


def test_reproducible_by_seed(problem):
    clean = problem[0]
    first = _attack(problem, steps=4, augment=True, seed=3).poison(clean)
    again = _attack(problem, steps=4, augment=True, seed=3).poison(clean)
    other = _attack(problem, steps=4, augment=True, seed=4).poison(clean)
    assert first.dataset.content_hash == again.dataset.content_hash
    assert first.poison_indices == again.poison_indices
    assert other.dataset.content_hash != first.dataset.content_hash


def test_chunked_gradient_matches_single_pass(problem):
    """The two-pass chunked gradient is exact: same poisons as one chunk (up to rounding)."""
    clean = problem[0]
    whole = _attack(problem, steps=6, batch_size=500).poison(clean)
    chunked = _attack(problem, steps=6, batch_size=3).poison(clean)
    assert whole.poison_indices == chunked.poison_indices
    assert np.abs(whole.dataset.x.astype(np.int16) - chunked.dataset.x.astype(np.int16)).max() <= 1
    assert chunked.report.loss_final == pytest.approx(whole.report.loss_final, abs=1e-3)


def test_restarts_keep_the_best(problem):
    result = _attack(problem, steps=5, restarts=2).poison(problem[0])
    extras = result.report.extras
    losses = extras["restart_losses"]
    assert extras["restarts"] == 2 and len(losses) == 2
    assert result.report.loss_final == min(losses) <= max(losses)
    assert losses[extras["best_restart"]] == result.report.loss_final


def test_fraction_budget_is_of_whole_training_set(problem):
    result = _attack(problem, count=None, fraction=6 / 120, steps=1).poison(problem[0])
    assert result.num_poison == 6


def test_no_nan_with_black_victims_and_huge_lr(problem):
    clean = problem[0]
    # one (H, W, C) victim, all black
    result = _attack(problem, victims=np.zeros(SHAPE, np.uint8), lr=1e6, steps=5).poison(clean)
    assert result.description.endswith("for 1 victim(s)")
    assert np.isfinite(result.report.loss_final) and np.isfinite(result.report.extras["restart_losses"][0])
    assert np.abs(result.dataset.x.astype(np.int16) - clean.x.astype(np.int16)).max() <= 16


def test_zero_adversarial_gradient_is_a_clear_error(problem):
    """A surrogate certain of the target on the victims has g_adv = 0: error, not NaN poisons."""
    clean, model, victims = problem
    certain = copy.deepcopy(model)
    with torch.no_grad():
        certain.classifier.bias[CLASSES.index(TARGET)] = 1e4  # softmax exactly one-hot in float32
    with pytest.raises(ValueError, match="gradient of the adversarial loss"):
        _attack((clean, certain, victims)).poison(clean)


def test_at_test_time_is_identity(problem):
    images = problem[2]
    out = _attack(problem).at_test_time(images)
    np.testing.assert_array_equal(out, images)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"eps": 0}, r"eps must be in \(0, 1\].*got 0"),
        ({"eps": 2}, r"eps must be in \(0, 1\].*got 2"),
        ({"steps": 0}, r"steps must be an integer >= 1, got 0"),
        ({"restarts": 0}, r"restarts must be an integer >= 1, got 0"),
        ({"lr": -1}, r"lr must be a positive number, got -1"),
        ({"lr": float("nan")}, r"lr must be a positive number"),
        ({"batch_size": 0}, r"batch_size must be an integer >= 1, got 0"),
        ({"count": 4, "fraction": 0.1}, r"exactly one of count or fraction, got count=4 and fraction=0.1"),
        ({"count": None}, r"exactly one of count or fraction, got neither"),
        ({"victims": np.zeros((1, *SHAPE), np.float32)}, r"victims must be a uint8 image.*float32"),
        ({"victims": np.zeros((16, 16), np.uint8)}, r"victims must be a uint8 image.*\(16, 16\)"),
        ({"victims": np.zeros((0, *SHAPE), np.uint8)}, r"victims must hold at least one image, got 0"),
        ({"victims": np.zeros((8, 8, 3), np.uint8)}, r"victims: the model expects .*16, 3\).*\(8, 8, 3\)"),
        ({"model": nn.Linear(2, 2)}, r"model must be a poisonlab model.*got Linear"),
        ({"target": 1.5}, r"target must be a class name or index"),
        ({"target": -1}, r"target must be a non-negative class index, got -1"),
        ({"augment": "yes"}, r"augment must be True or False, got 'yes'"),
        ({"device": "tpu"}, r"device must be one of \['auto', 'cpu', 'cuda'\] \(or 'cuda:<n>'\), got 'tpu'"),
        ({"seed": -1}, r"seed must be an integer >= 0, got -1"),
    ],
    ids=lambda v: "-".join(map(str, v)) if isinstance(v, dict) else None,
)
def test_bad_parameters_raise(problem, overrides, match):
    with pytest.raises(ValueError, match=match):
        _attack(problem, **overrides)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"target": "unicorn"}, r"target: unknown class 'unicorn'"),
        ({"target": 10}, r"target: class index 10 out of range"),
        ({"count": PER_CLASS + 1}, rf"cannot poison {PER_CLASS + 1} samples: only {PER_CLASS} available"),
    ],
    ids=["unknown-name", "index-out-of-range", "count-over-class"],
)
def test_bad_parameters_raise_at_poison_time(problem, overrides, match):
    with pytest.raises(ValueError, match=match):
        _attack(problem, steps=1, **overrides).poison(problem[0])


def test_clean_image_shape_must_match_model(problem):
    rng = np.random.default_rng(1)
    small = Dataset(
        x=rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8), y=np.arange(20) % 10, class_names=CLASSES
    )
    with pytest.raises(ValueError, match=r"clean: the model expects images of shape \(16, 16, 3\)"):
        _attack(problem, steps=1).poison(small)
