"""Crafting keeps frozen layers frozen: airbench's whitening filters and BatchNorm scales.

The airbench network (:class:`~poisonlab.models.airbench.AirbenchNet`) never trains its 2x2
whitening filters nor its BatchNorm scales (``requires_grad`` False).  A crafting surrogate, or a
defense that freezes a model for its own search and unfreezes it afterwards, must hand every
parameter its own flag back, and must not change the values.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from poisonlab.attacks import get_attack
from poisonlab.attacks.crafting import Surrogate
from poisonlab.data.dataset import Dataset
from poisonlab.defenses.gates.neural_cleanse import neural_cleanse
from poisonlab.models.airbench import AirbenchNet

SIZE = 16  # airbench's smallest input
CLASSES = tuple(f"c{i}" for i in range(4))
TARGET = "c1"


def _data(per_class: int = 6, seed: int = 0) -> Dataset:
    """Class-coloured noise, 16x16x3 uint8, classes interleaved."""
    rng = np.random.default_rng(seed)
    means = rng.integers(40, 216, size=(len(CLASSES), 1, 1, 3))
    y = np.tile(np.arange(len(CLASSES)), per_class)
    x = np.clip(means[y] + rng.normal(0, 30, size=(len(y), SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    return Dataset(x=x, y=y, class_names=CLASSES, source="synthetic", name="synth16")


@pytest.fixture
def data() -> Dataset:
    return _data()


@pytest.fixture
def model(data: Dataset) -> AirbenchNet:
    """A tiny airbench (widths 8/8/8) whitened on ``data``, BatchNorm statistics set by one pass."""
    torch.manual_seed(0)
    net = AirbenchNet(input_shape=(SIZE, SIZE, 3), num_classes=len(CLASSES), widths=(8, 8, 8))
    net.init_whitening(data.x)
    with torch.no_grad():  # one train-mode pass: features then depend on the input
        net.train()(torch.from_numpy(data.x).permute(0, 3, 1, 2).float() / 255.0)
    return net.eval()


def _frozen(net: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The parameters airbench keeps frozen: the whitening filters and every BatchNorm scale."""
    named = dict(net.named_parameters())
    frozen = {"whiten.weight": named["whiten.weight"]}
    frozen |= {k: p for k, p in named.items() if ".norm" in k and k.endswith(".weight")}
    assert len(frozen) == 1 + 2 * 3  # whitening + two BatchNorms per block
    return frozen


def _assert_frozen_kept(net: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    for name, p in _frozen(net).items():
        assert not p.requires_grad, name
        assert torch.equal(p.detach().cpu(), before[name]), name


def _snapshot(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in _frozen(net).items()}


def test_the_network_starts_with_frozen_whitening_and_scales(model):
    flags = {k: p.requires_grad for k, p in model.named_parameters()}
    assert not any(flags[k] for k in _frozen(model))
    assert flags["whiten.bias"] and flags["blocks.0.conv1.weight"] and flags["classifier.weight"]


@pytest.mark.parametrize("trainable", [False, True])
def test_surrogate_never_unfreezes_a_parameter(model, trainable):
    before = _snapshot(model)
    flags = {k: p.requires_grad for k, p in model.named_parameters()}
    sur = Surrogate(model, device="cpu", trainable=trainable)
    _assert_frozen_kept(sur.net, before)
    for name, p in sur.net.named_parameters():
        assert p.requires_grad == (trainable and flags[name]), name
    assert {k: p.requires_grad for k, p in model.named_parameters()} == flags  # the caller's model


def test_trainable_surrogate_of_a_fully_frozen_model_is_an_error(model):
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="trainable surrogate: every parameter of the model is frozen"):
        Surrogate(model, device="cpu", trainable=True)


def test_gradient_matching_matches_only_the_trained_parameters(model, data):
    attack = get_attack("gradient_matching", model=model, target=TARGET, victims=data.x[:2], count=2, steps=1)
    matcher = attack._matcher(data)  # the parameters whose gradients it aligns
    trained = [p for p in matcher.sur.net.parameters() if p.requires_grad]
    assert len(matcher.params) == len(trained) == sum(p.requires_grad for p in model.parameters())
    frozen = {id(p) for p in _frozen(matcher.sur.net).values()}
    assert not frozen & {id(p) for p in matcher.params}


def _trigger(x: np.ndarray) -> np.ndarray:
    out = x.copy()
    out[:, -3:, -3:, :] = 255
    return out


ATTACKS = {
    "gradient_matching": {"victims": "data"},
    "clean_label_backdoor": {"trigger": _trigger, "trigger_name": "corner"},
    "feature_collision": {"victims": "data"},
    "hidden_trigger": {"source": "c0", "trigger": _trigger, "trigger_name": "corner"},
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_one_crafting_step_keeps_frozen_layers_frozen(model, data, name):
    before = _snapshot(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    params = {k: (data.x[:1] if v == "data" else v) for k, v in ATTACKS[name].items()}
    attack = get_attack(name, model=model, target=TARGET, count=2, steps=1, device="cpu", **params)
    result = attack.poison(data)
    assert result.num_poison == 2
    _assert_frozen_kept(model, before)
    for k, v in model.state_dict().items():  # nothing else of the caller's model moved either
        assert torch.equal(v, state[k]), k


def test_neural_cleanse_gives_each_parameter_its_own_flag_back(model, data):
    # a defense, tested here with the attacks' fix: it froze every parameter for its trigger
    # search and then set requires_grad True on all of them, the frozen ones included
    before = _snapshot(model)
    flags = {k: p.requires_grad for k, p in model.named_parameters()}
    neural_cleanse(model, data, n_images=8, steps=1, batch_size=4, device="cpu")
    assert {k: p.requires_grad for k, p in model.named_parameters()} == flags
    _assert_frozen_kept(model, before)
