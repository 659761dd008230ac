"""The robustness checks of a single run on constructed models, where the outcome is certain:
the conftest's hand-wired :class:`ExactBackdoor` and :class:`LearnedFlip`, and a clean model blind
to the bottom-right corner where the pattern triggers sit on 8x8 digits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from poisonlab.data.dataset import Splits
from poisonlab.experiments import parse_experiment
from poisonlab.experiments.single.build import attack_targets
from poisonlab.experiments.single.robustness import prepare_robustness, robustness_checks
from poisonlab.models.base import PoisonlabModel

CONFIG = {
    "name": "digits-checks",
    "dataset": {"name": "digits"},
    "attack": {"kind": "backdoor", "trigger": "pattern", "source": "7", "target": "1"},
    "robustness": {"canaries": {"per_class": 3}, "sensitivity": {"triggers": ["pattern", "single_pixel"]}},
}


class CornerBlind(PoisonlabModel):
    """A clean model that never sees the bottom-right 4x4 corner: the pattern and single-pixel
    triggers (all inside it on 8x8 digits) cannot move any of its predictions."""

    arch = "corner-blind"

    def __init__(self, base: PoisonlabModel) -> None:
        mean, std = (tuple(float(v) for v in t.flatten()) for t in (base.mean, base.std))
        super().__init__(input_shape=base.input_shape, num_classes=base.num_classes, mean=mean, std=std)
        self.base = base

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[..., 4:, 4:] = 0.0  # (N, C, H, W): rows and columns 4-7
        return self.base.features(x)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.base.head(features)


@pytest.fixture(scope="module")
def ctx(digits_splits: Splits, clean_digits_model: PoisonlabModel):
    cfg = parse_experiment(CONFIG)
    targets = attack_targets(cfg, digits_splits)
    return prepare_robustness(cfg, digits_splits, clean_digits_model, "clean-id", targets, device="cpu")


def _check(model: PoisonlabModel, ctx, digits_splits: Splits) -> dict:
    return robustness_checks(model.eval(), ctx, digits_splits.class_names, device="cpu")


def test_canaries_come_from_held_out_images_with_their_indices(ctx, digits_splits: Splits) -> None:
    setup = ctx.record["canaries"]
    idx = np.asarray(setup["indices"])
    assert setup["split"] == "test" and len(idx) == 30 and setup["picked_by"] == "clean-id"
    test = digits_splits.test
    assert setup["split_hash"] == test.content_hash
    np.testing.assert_array_equal(test.x[idx], ctx.canaries.images)  # rebuildable from the indices
    assert np.bincount(test.y[idx], minlength=10).tolist() == [3] * 10


def test_a_learned_flip_fails_exactly_the_source_canaries(
    ctx, digits_splits: Splits, clean_digits_model, learned_flip
) -> None:
    clean = _check(clean_digits_model, ctx, digits_splits)["canaries"]
    assert clean["passed"] and clean["n_failures"] == 0  # picked by this model: right by construction
    flipped = _check(learned_flip(clean_digits_model, source=7, target=1), ctx, digits_splits)["canaries"]
    assert not flipped["passed"] and flipped["n_failures"] == 3
    assert flipped["failed_classes"] == ["7"] and flipped["failures_per_class"] == {"7": 3}
    assert {f["predicted_name"] for f in flipped["failures"]} == {"1"}


def test_an_exact_backdoor_is_flagged_and_a_blind_clean_model_passes(
    ctx, digits_splits: Splits, clean_digits_model, exact_backdoor
) -> None:
    backdoor = _check(exact_backdoor.model, ctx, digits_splits)
    assert backdoor["canaries"]["passed"]  # a backdoor keeps clean inputs right: canaries miss it
    sens = backdoor["sensitivity"]
    assert not sens["passed"] and "flip_matrix" not in sens
    spikes = {(s["trigger"], s["source_name"], s["target_name"]): s for s in sens["spikes"]}
    assert spikes[("pattern", "7", "1")]["rate"] == 1.0
    blind = _check(CornerBlind(clean_digits_model), ctx, digits_splits)["sensitivity"]
    assert (
        blind["passed"]
        and blind["spikes"] == []
        and blind["flip_rate"] == {"pattern": 0.0, "single_pixel": 0.0}
    )
