"""The Neural Cleanse gate: mechanics on constructed inputs.

The backdoored model is hand-wired (:class:`CornerBackdoor`): a bright 2x2 square in the
bottom-right corner sends any digit to "1", through a smooth response as a learnt backdoor's is
(the conftest's :class:`ExactBackdoor` answers only when every pixel of its pattern is saturated,
so no gradient reaches a search that starts from a faint mask). What is asserted is what the
search does with a backdoor that surely exists, not a figure of one trained checkpoint.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from poisonlab.defenses.gates.neural_cleanse import ReversedTrigger, anomaly_index, neural_cleanse
from poisonlab.models.base import PoisonlabModel

TARGET = 1


class CornerBackdoor(PoisonlabModel):
    """A clean model plus ``margin * sigmoid(sharpness * (corner brightness - 0.6))`` on ``target``."""

    arch = "corner-backdoor"

    def __init__(
        self, clean: PoisonlabModel, target: int, margin: float = 30.0, sharpness: float = 12.0
    ) -> None:
        mean, std = (tuple(float(v) for v in t.flatten()) for t in (clean.mean, clean.std))
        super().__init__(input_shape=clean.input_shape, num_classes=clean.num_classes, mean=mean, std=std)
        self.clean, self.target, self.margin, self.sharpness = clean, target, margin, sharpness

    def features(self, x: torch.Tensor) -> torch.Tensor:
        corner = x[:, :, -2:, -2:].mean(dim=(1, 2, 3))[:, None]
        return torch.cat([self.clean.features(x), corner], dim=1)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.clean.head(features[:, :-1])
        boost = self.margin * torch.sigmoid(self.sharpness * (features[:, -1] - 0.6))
        return logits + boost[:, None] * torch.nn.functional.one_hot(
            torch.tensor(self.target), self.num_classes
        ).to(logits.dtype)


@pytest.fixture(scope="module")
def backdoored_model(clean_digits_model):
    return CornerBackdoor(clean_digits_model, TARGET).eval()


@pytest.fixture(scope="module")
def backdoor_report(backdoored_model, clean_digits_model, digits_splits):
    return neural_cleanse(backdoored_model, digits_splits.val, reference=clean_digits_model, device="cpu")


def test_the_constructed_backdoor_works_and_clean_digits_do_not_trip_it(
    backdoored_model, digits_splits
) -> None:
    from poisonlab.inference import predict

    x = digits_splits.test.x
    triggered = x.copy()
    triggered[:, -2:, -2:, :] = 255
    assert np.mean(predict(backdoored_model, triggered, device="cpu") == TARGET) == 1.0
    clean_pred = predict(backdoored_model, x, device="cpu")
    assert np.mean(clean_pred == digits_splits.test.y) > 0.9


def test_anomaly_index_is_the_papers_mad_rule() -> None:
    norms = np.array([20.0, 22.0, 18.0, 21.0, 19.0, 20.0, 23.0, 17.0, 20.0, 3.0])
    index = anomaly_index(norms)
    mad = 1.4826 * np.median(np.abs(norms - 20.0))
    assert index[-1] == pytest.approx((20.0 - 3.0) / mad) and index[-1] > 2
    assert np.all(index[:-1] <= 2)  # larger masks than typical are never outliers of the small side
    assert anomaly_index(np.full(5, 7.0)).tolist() == [0.0] * 5  # no spread: nobody stands out


def test_a_trigger_stamps_its_mask_and_pattern_on_uint8_images() -> None:
    mask = np.zeros((8, 8), np.float32)
    mask[0, 0], mask[7, 7] = 1.0, 0.5
    pattern = np.ones((8, 8, 1), np.float32)
    trigger = ReversedTrigger(1, "1", mask, pattern, norm=1.5, reached=True)
    x = np.zeros((2, 8, 8, 1), np.uint8)
    out = trigger.apply(x)
    assert out.dtype == np.uint8 and out.shape == x.shape
    assert out[0, 0, 0, 0] == 255 and out[0, 7, 7, 0] == 128 and out[0, 3, 3, 0] == 0


def test_the_backdoor_target_is_found_and_flagged(backdoor_report) -> None:
    r = backdoor_report
    target = TARGET
    assert not r.passed and r.flagged == [r.class_names[target]]
    # the shortcut works on the backdoored model and not on the clean reference
    assert r.success[target] >= 0.9 and r.reference_success[target] <= 0.2
    # it is also the smallest mask by far, the most anomalous class (whether its index clears the
    # paper's 2 depends on how the clean classes' masks spread, which varies with the model seed)
    assert int(np.argmax(r.anomaly_index)) == target and r.anomaly_index[target] > 1
    assert r.norms[target] < 0.5 * np.median(r.norms)
    assert set(r.trigger_callables()) >= {f"nc:{r.class_names[target]}"}
    assert "triggers" not in r.to_dict() and r.to_dict()["flagged"] == r.flagged


def test_a_model_compared_with_itself_is_never_flagged(clean_digits_model, digits_splits) -> None:
    """With the reference identical to the candidate, no trigger can work better on one of them,
    whatever the masks' norms (the anomaly alone needs half the gap)."""
    r = neural_cleanse(
        clean_digits_model, digits_splits.val, reference=clean_digits_model, steps=10, device="cpu"
    )
    assert r.passed and r.success == r.reference_success


def test_the_search_is_deterministic_and_leaves_the_model_as_it_was(
    clean_digits_model, digits_splits
) -> None:
    before = {k: v.clone() for k, v in clean_digits_model.state_dict().items()}
    kwargs = {"steps": 5, "n_images": 40, "batch_size": 8, "seed": 3, "device": "cpu"}
    a = neural_cleanse(clean_digits_model, digits_splits.val, **kwargs)
    b = neural_cleanse(clean_digits_model, digits_splits.val, **kwargs)
    assert a.norms == b.norms and a.success == b.success
    assert a.n_optimised == 40 and a.n_held_out == 40 and a.reference_success is None
    after = clean_digits_model.state_dict()
    assert all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)
    assert all(p.requires_grad for p in clean_digits_model.parameters())


@pytest.mark.parametrize(
    "kwargs",
    [{"steps": 0}, {"n_images": 0}, {"target_success": 1.5}, {"min_gap": 0}, {"lr": -1}, {"batch_size": 0}],
)
def test_bad_parameters_are_refused(kwargs, clean_digits_model, digits_splits) -> None:
    with pytest.raises(ValueError):
        neural_cleanse(clean_digits_model, digits_splits.val, device="cpu", **kwargs)


def test_inputs_that_do_not_fit_are_refused(clean_digits_model, digits_splits, tiny_model) -> None:
    with pytest.raises(ValueError, match="Dataset"):
        neural_cleanse(clean_digits_model, digits_splits.val.x)
    with pytest.raises(ValueError, match="classes"):
        neural_cleanse(tiny_model, digits_splits.val)
