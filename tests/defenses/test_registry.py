"""Every registered defense honours the contract of ``poisonlab.defenses.base.Defense``.

Parametrized over :data:`poisonlab.defenses.DEFENSES`, on the planted pattern backdoor of the
``backdoored`` fixture (real poison, real model).
"""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest

from poisonlab.defenses import DEFENSES, Defense, NotFittedError, get_defense
from poisonlab.metrics import detection_scores

NAMES = sorted(DEFENSES)


def build(name: str, case) -> Defense:
    """Default instance; the manifest check needs a manifest signed over the clean training set."""
    if name == "manifest":
        from poisonlab.defenses.data_checks.manifest import generate_keypair, sign_manifest

        private, public = generate_keypair()
        return get_defense(name, manifest=sign_manifest(case.splits.train, private), public_key=public)
    return get_defense(name)


def fit(defense: Defense, case) -> Defense:
    return defense.fit(case.dataset, case.model, forward=case.forward, trusted=case.splits.val)


def test_registry_names_match_classes() -> None:
    assert len(NAMES) >= 15
    for name in NAMES:
        cls = DEFENSES[name]
        assert issubclass(cls, Defense)
        assert cls.name == name
        assert cls.space in ("pixels", "features", "labels")
        assert cls.paper, f"{name} must cite its paper or standard"


def test_unknown_defense_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown defense 'nope'; expected one of"):
        get_defense("nope")


@pytest.mark.parametrize("name", NAMES)
def test_constructor_is_keyword_only(name: str) -> None:
    params = inspect.signature(DEFENSES[name].__init__).parameters.values()
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert positional == ["self"], f"{name}: positional parameters {positional[1:]}"


@pytest.mark.parametrize("name", NAMES)
def test_contract_on_planted_backdoor(name: str, backdoored) -> None:
    defense = build(name, backdoored)
    with pytest.raises(NotFittedError, match="not fitted"):
        defense.predict()
    assert fit(defense, backdoored) is defense
    n = len(backdoored.dataset)
    scores, flagged = defense.score_samples(), defense.predict()
    assert scores.shape == (n,) and scores.dtype == np.float64 and np.all(np.isfinite(scores))
    assert flagged.shape == (n,) and flagged.dtype == bool
    assert defense.n_samples_ == n
    json.dumps(defense.details_)  # reports need JSON-ready details
    # returned arrays are copies: a caller cannot corrupt the fitted state
    flagged[:] = ~flagged
    assert not np.array_equal(defense.predict(), flagged)
    assert all(not k.endswith("_") for k in defense.get_params())
    assert type(defense).__name__ in repr(defense)
    # the metrics the reports use are defined for every defense
    detection_scores(backdoored.mask, defense.predict(), defense.score_samples())


@pytest.mark.parametrize("name", NAMES)
def test_refuses_missing_requirements(name: str, backdoored) -> None:
    cls = DEFENSES[name]
    if not (cls.needs_model or cls.needs_trusted):
        pytest.skip(f"{name} needs neither a model nor trusted data")
    defense = build(name, backdoored)
    if cls.needs_model:
        with pytest.raises(ValueError, match="needs a model"):
            defense.fit(backdoored.dataset, trusted=backdoored.splits.val)
    if cls.needs_trusted:
        with pytest.raises(ValueError, match="needs a trusted"):
            defense.fit(backdoored.dataset, backdoored.model, forward=backdoored.forward)


@pytest.mark.parametrize("name", NAMES)
def test_refuses_bad_datasets(name: str, backdoored, colour_data) -> None:
    defense = build(name, backdoored)
    with pytest.raises(ValueError, match="Dataset"):
        defense.fit(backdoored.dataset.x)  # raw arrays are not a Dataset
    with pytest.raises(ValueError):
        # trusted data of another kind (other shape and classes) than the scanned set
        defense.fit(backdoored.dataset, backdoored.model, forward=backdoored.forward, trusted=colour_data)


@pytest.mark.parametrize("name", NAMES)
def test_refuses_a_forward_pass_of_other_data(name: str, backdoored) -> None:
    cls = DEFENSES[name]
    if not (cls.needs_model or cls.space == "features"):
        pytest.skip(f"{name} does not use the model")
    defense = build(name, backdoored)
    short = backdoored.dataset.subset(np.arange(100))
    with pytest.raises(ValueError, match="forward pass covers"):
        defense.fit(short, backdoored.model, forward=backdoored.forward, trusted=backdoored.splits.val)
