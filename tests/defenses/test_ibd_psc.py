"""IBD-PSC: the PSC of amplified copies, the adaptive layer choice, the guard API.

The backdoored model is the hand-wired :class:`ExactBackdoor` of tests/conftest.py. Its backdoor
bypasses every BatchNorm layer, so amplification leaves a triggered prediction exactly as it was
(probability ``softmax(margin)`` on the target): the consistency the paper builds on, exactly.
The clean part is the chapter CNN, whose amplified copies send most benign inputs to a few
classes (on the digits: "1", "2", "4", "5"); benign images *of* those classes keep their
prediction, at a confidence that amplification only sharpens. The tests check the mechanics,
and that the calibrated threshold keeps its false-rejection promise when that happens.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from poisonlab.defenses import DEFENSES
from poisonlab.defenses.detectors.ibd_psc import IBDPSC
from poisonlab.defenses.helpers.batchnorm_scaling import amplification_schedule, batchnorm_layers
from poisonlab.metrics import detection_scores
from poisonlab.triggers import get_trigger

TRIGGER = get_trigger("pattern", distance=1, pixel_value=1)


def _test_inputs(case):
    """Clean test images followed by the triggered test "7"s, and the truth mask."""
    test = case.splits.test
    triggered = TRIGGER(test.x[test.y == 7])
    x = np.concatenate([test.x, triggered])
    return x, np.r_[np.zeros(len(test), bool), np.ones(len(triggered), bool)]


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def psc(exact_backdoor) -> IBDPSC:
    case = exact_backdoor
    return IBDPSC(device="cpu").fit(case.dataset, case.model, trusted=case.splits.val)


def _reference_psc(model, amplifications, images: np.ndarray) -> np.ndarray:
    """PSC the slow, obvious way: a deep copy per amplified model, BatchNorm scaled in place."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        base = copy.deepcopy(model).eval()
        pred = base(x).argmax(dim=1)
        total = torch.zeros(len(x))
        for k, factor in amplifications:
            amplified = copy.deepcopy(model).eval()
            for _, bn in batchnorm_layers(amplified)[-k:]:
                bn.weight.mul_(factor)
                bn.bias.mul_(factor)
            total += torch.softmax(amplified(x), dim=1)[torch.arange(len(x)), pred]
    return (total / len(amplifications)).numpy()


def test_contract(psc: IBDPSC, exact_backdoor) -> None:
    if "ibd_psc" in DEFENSES:  # registered by the package's __init__
        assert DEFENSES["ibd_psc"] is IBDPSC
    assert IBDPSC.needs_model and IBDPSC.needs_trusted and IBDPSC.name == "ibd_psc"
    n = len(exact_backdoor.dataset)
    assert psc.score_samples().shape == (n,) and psc.predict().dtype == bool
    np.testing.assert_array_equal(psc.scores_, psc.psc_)
    assert np.all((psc.psc_ >= 0) & (psc.psc_ <= 1 + 1e-6))
    np.testing.assert_array_equal(psc.flagged_, psc.psc_ > psc.threshold_)
    assert psc.clean_psc_.shape == (len(exact_backdoor.splits.val),)
    # quantile threshold: at most frr of the calibration samples lie above it
    assert np.mean(psc.clean_psc_ > psc.threshold_) <= psc.frr + 1e-9
    assert len(psc.amplifications_) == psc.n_models
    json.dumps(psc.details_, allow_nan=False)


def test_psc_matches_a_reference(psc: IBDPSC, exact_backdoor) -> None:
    x, _ = _test_inputs(exact_backdoor)
    x = x[::7]
    expected = _reference_psc(exact_backdoor.model, psc.amplifications_, x)
    np.testing.assert_allclose(psc.score(x), expected, atol=1e-5)


def test_adaptive_layer_choice(psc: IBDPSC, exact_backdoor) -> None:
    layers = batchnorm_layers(exact_backdoor.model)
    assert psc.bn_layers_ == [name for name, _ in layers]
    k = psc.start_layers_
    assert len(psc.error_rates_) == k and 1 <= k <= len(layers)
    # every shorter amplification stayed at or under the target error; the chosen one passes it
    # unless every layer had to be amplified
    assert all(e <= psc.error_rate for e in psc.error_rates_[:-1])
    assert psc.error_target_reached_ == (psc.error_rates_[-1] > psc.error_rate)
    assert psc.error_target_reached_ or k == len(layers)
    assert psc.amplifications_ == amplification_schedule(k, len(layers), psc.n_models, psc.scale)
    # the recorded error of the chosen amplification, recomputed on deep copies
    val = exact_backdoor.splits.val
    amplified = copy.deepcopy(exact_backdoor.model).eval()
    for _, bn in batchnorm_layers(amplified)[-k:]:
        bn.weight.data.mul_(psc.scale)
        bn.bias.data.mul_(psc.scale)
    with torch.no_grad():
        pred = amplified(torch.from_numpy(val.x).permute(0, 3, 1, 2).float() / 255.0).argmax(1).numpy()
    assert np.mean(pred != val.y) == pytest.approx(psc.error_rates_[-1])


def test_amplification_schedule() -> None:
    assert amplification_schedule(2, 6, 3, 1.5) == [(2, 1.5), (3, 1.5), (4, 1.5)]
    # a shallow model runs out of layers: stronger factors on all of them instead
    assert amplification_schedule(3, 4, 4, 2.0) == [(3, 2.0), (4, 2.0), (4, 4.0), (4, 8.0)]


def test_triggered_inputs_keep_their_prediction(psc: IBDPSC, exact_backdoor) -> None:
    x, truth = _test_inputs(exact_backdoor)
    scores = psc.score(x)
    margin = exact_backdoor.model.margin
    backdoor_confidence = float(torch.softmax(torch.tensor([margin] + [0.0] * 9), 0)[0])
    # amplification never reaches the wired backdoor: every triggered input keeps "1" as sure as before
    np.testing.assert_allclose(scores[truth], backdoor_confidence, atol=1e-5)
    # a clean input that every amplified copy moves to another class has PSC < 0.5 (the original
    # class is no longer the most likely one), far below the trigger's
    clean = x[~truth]
    flipped = np.ones(len(clean), bool)
    tensor = torch.from_numpy(clean).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        original = exact_backdoor.model(tensor).argmax(1)
        for k, factor in psc.amplifications_:
            amplified = copy.deepcopy(exact_backdoor.model).eval()
            for _, bn in batchnorm_layers(amplified)[-k:]:
                bn.weight.mul_(factor)
                bn.bias.mul_(factor)
            flipped &= (amplified(tensor).argmax(1) != original).numpy()
    assert flipped.any()
    assert np.all(scores[~truth][flipped] < 0.5)
    # the paper's fixed threshold T = 0.9 catches every triggered input
    fixed = IBDPSC(threshold_method="fixed", device="cpu").calibrate(
        exact_backdoor.model, exact_backdoor.splits.val
    )
    assert fixed.threshold_ == 0.9 and np.all(fixed.detect(x)[truth])


def test_calibrated_detection_keeps_its_false_rejection_rate(psc: IBDPSC, exact_backdoor) -> None:
    """Benign images of the classes amplification collapses onto are as consistent as the trigger
    (PSC 1.0); the calibrated threshold then sits at 1.0 and rejects (almost) no clean image."""
    x, truth = _test_inputs(exact_backdoor)
    flags = psc.detect(x)
    np.testing.assert_array_equal(flags, psc.score(x) > psc.threshold_)
    d = detection_scores(truth, flags, psc.score(x))
    assert d["fpr"] <= 0.05
    np.testing.assert_array_equal(psc.detect(x), flags)  # deterministic


def test_callers_model_untouched(exact_backdoor) -> None:
    model = exact_backdoor.model
    before, mode = _state(model), model.training
    detector = IBDPSC(n_models=2, device="cpu").calibrate(model, exact_backdoor.splits.val)
    detector.score(exact_backdoor.splits.test.x[:50])
    after = _state(model)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert model.training == mode
    assert detector.model_ is not model  # a private copy carries the amplification


def test_batching_does_not_change_scores(psc: IBDPSC, exact_backdoor) -> None:
    x = exact_backdoor.splits.test.x[:100]
    small = IBDPSC(batch_size=7, device="cpu").calibrate(exact_backdoor.model, exact_backdoor.splits.val)
    # the same up to float32 rounding of differently blocked convolutions
    np.testing.assert_allclose(small.score(x), psc.score(x), atol=1e-4)
    assert small.threshold_ == pytest.approx(psc.threshold_, abs=1e-4)


def test_unreachable_error_target(exact_backdoor) -> None:
    d = IBDPSC(error_rate=0.999, n_models=3, device="cpu").calibrate(
        exact_backdoor.model, exact_backdoor.splits.val
    )
    n_layers = len(batchnorm_layers(exact_backdoor.model))
    assert not d.error_target_reached_ and d.start_layers_ == n_layers
    assert d.amplifications_ == [(n_layers, 1.5), (n_layers, 2.25), (n_layers, 3.375)]


@pytest.mark.parametrize(
    "params",
    [
        {"scale": 1.0},
        {"scale": 0.5},
        {"n_models": 0},
        {"n_models": 2.5},
        {"error_rate": 0},
        {"error_rate": 1.0},
        {"threshold_method": "otsu"},
        {"frr": 0.0},
        {"frr": 0.5},
        {"threshold": 0},
        {"threshold": 1.0},
        {"batch_size": 0},
        {"device": "tpu"},
    ],
)
def test_parameter_validation(params) -> None:
    with pytest.raises(ValueError):
        IBDPSC(**params)


def test_bad_inputs(exact_backdoor, make_colour_dataset) -> None:
    case = exact_backdoor
    with pytest.raises(ValueError, match="model itself"):
        IBDPSC().fit(case.dataset, forward=case.forward, trusted=case.splits.val)
    with pytest.raises(ValueError, match="trusted"):
        IBDPSC().fit(case.dataset, case.model)
    with pytest.raises(ValueError, match="at least 10"):
        IBDPSC(device="cpu").fit(case.dataset, case.model, trusted=case.splits.val.subset(range(5)))
    with pytest.raises(ValueError, match="classes"):
        colours = make_colour_dataset()
        IBDPSC(device="cpu").fit(colours, case.model, trusted=colours)
    with pytest.raises(ValueError, match="not calibrated"):
        IBDPSC().detect(case.splits.test.x)
    d = IBDPSC(n_models=1, device="cpu").calibrate(case.model, case.splits.val)
    with pytest.raises(ValueError, match="shape"):
        d.detect(np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        d.score(case.splits.test.x.astype(np.float32))


def test_needs_batchnorm(make_colour_dataset) -> None:
    from poisonlab.models.base import PoisonlabModel

    class NoNorm(PoisonlabModel):
        def __init__(self) -> None:
            super().__init__(input_shape=(8, 8, 3), num_classes=3)
            self.linear = torch.nn.Linear(192, 3)

        def features(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)

        def head(self, features: torch.Tensor) -> torch.Tensor:
            return self.linear(features)

    colours = make_colour_dataset()
    with pytest.raises(ValueError, match="BatchNorm"):
        IBDPSC(device="cpu").calibrate(NoNorm(), colours)
