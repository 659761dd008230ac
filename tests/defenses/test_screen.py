"""The default screen: agreement of detectors, on constructed detector results (no model involved)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from poisonlab.cli.main import app
from poisonlab.data.dataset import Dataset
from poisonlab.defenses import DEFENSES
from poisonlab.defenses.scan import (
    ANCHORED_METHODS,
    SCREEN_METHODS,
    MethodResult,
    combine,
    scan,
    screen_methods,
)
from poisonlab.defenses.scan.screen import TYPICAL_SPREADS
from poisonlab.metrics import detection_scores


def _dataset(n: int = 12) -> Dataset:
    y = np.arange(n) % 3
    mask = np.zeros(n, bool)
    mask[[0, 3]] = True  # two poisons in class "a"
    return Dataset(np.zeros((n, 4, 4, 1), np.uint8), y, ("a", "b", "c"), poison_mask=mask)


def _result(name: str, flagged_idx: list[int], n: int = 12, poisoned: tuple[str, ...] = ()) -> MethodResult:
    flagged = np.zeros(n, bool)
    flagged[flagged_idx] = True
    scores = np.linspace(0, 1, n) + flagged  # flagged ones score highest
    return MethodResult(
        name=name,
        params={},
        space="features",
        paper="",
        scores=scores,
        flagged=flagged,
        details={"poisoned_classes": list(poisoned)},
        seconds=0.0,
        metrics=None,
        defense=None,  # type: ignore[arg-type]
    )


def test_every_screen_detector_is_registered() -> None:
    assert set(SCREEN_METHODS) <= set(DEFENSES)
    assert all(DEFENSES[name].needs_model for name in SCREEN_METHODS)


def test_two_votes_flag_a_sample_one_does_not() -> None:
    data = _dataset()
    methods = [_result("x", [0, 3, 5], poisoned=("a",)), _result("y", [0, 3]), _result("z", [5, 7])]
    v = combine(methods, data)
    assert v.votes.tolist()[:8] == [2, 0, 0, 2, 0, 2, 0, 1]
    assert np.flatnonzero(v.flagged).tolist() == [0, 3, 5]
    assert v.metrics == detection_scores(data.poison_mask, v.flagged, v.scores)
    # flagged samples rank above every unflagged one
    assert v.scores[v.flagged].min() > v.scores[~v.flagged].max()
    a = next(c for c in v.classes if c["class"] == "a")
    assert a["declared_poisoned_by"] == ["x"] and a["flagged_by"] == {"x": 2, "y": 2}
    assert a["screen_flagged"] == 2
    json.dumps(v.to_dict())


def test_min_votes_is_capped_by_the_number_of_detectors_and_validated() -> None:
    data = _dataset()
    assert np.flatnonzero(combine([_result("x", [4])], data).flagged).tolist() == [4]
    assert combine([_result("x", [4]), _result("y", [4])], data, min_votes=5).min_votes == 2
    with pytest.raises(ValueError, match="min_votes"):
        combine([_result("x", [4])], data, min_votes=0)
    with pytest.raises(ValueError, match="at least one"):
        combine([], data)
    with pytest.raises(ValueError, match="covers 5 samples"):
        combine([_result("x", [1], n=5)], data)


def test_constant_scores_count_as_the_middle() -> None:
    data = _dataset()
    flat = _result("x", [])
    flat = MethodResult(**{**flat.__dict__, "scores": np.zeros(12)})
    v = combine([flat], data)
    np.testing.assert_allclose(v.scores, 0.5)


def test_the_default_screen_needs_a_model(colour_data, tmp_path) -> None:
    with pytest.raises(ValueError, match="needs a model"):
        scan(colour_data)
    result = CliRunner().invoke(app, ["scan", "digits", "--out", str(tmp_path / "scan")])
    assert result.exit_code == 2 and "needs a model" in result.output and "Traceback" not in result.output


def _anchored(flagged_idx: list[int], scores: np.ndarray, n: int = 12) -> MethodResult:
    base = _result("anchored_knn", flagged_idx, n=n)
    details = {"reference_centre": 0.0, "reference_spread": 1.0}
    return MethodResult(**{**base.__dict__, "scores": scores, "details": details})


def test_the_anchored_detector_runs_with_a_trusted_set_only() -> None:
    assert ANCHORED_METHODS == ("anchored_knn",) and set(ANCHORED_METHODS) <= set(DEFENSES)
    assert all(DEFENSES[name].needs_trusted for name in ANCHORED_METHODS)
    assert screen_methods(False) == SCREEN_METHODS
    assert screen_methods(True) == SCREEN_METHODS + ANCHORED_METHODS


def test_an_anchored_flag_is_enough_and_agreement_on_a_typical_sample_is_vetoed() -> None:
    data = _dataset()
    typical, far = 0.5, TYPICAL_SPREADS + 0.5  # in the anchored detector's robust units
    scores = np.full(12, typical)
    scores[[0, 5, 6]] = far
    scores[9] = 10.0
    # x and y agree on 0 (far), 3 (typical) and 6 (far); the anchored detector alone flags 9
    methods = [_result("x", [0, 3, 6]), _result("y", [0, 3, 6]), _anchored([9], scores)]
    v = combine(methods, data)
    assert np.flatnonzero(v.flagged).tolist() == [0, 6, 9]
    assert "anchored_knn" in v.to_dict()["rule"] and "robust SDs" in v.to_dict()["rule"]
    # without the anchored detector, agreement alone decides as before
    assert np.flatnonzero(combine(methods[:2], data).flagged).tolist() == [0, 3, 6]
    # the anchored flag leads the ranking
    assert v.scores[9] == v.scores.max()


def test_no_veto_without_a_known_reference() -> None:
    data = _dataset()
    blind = MethodResult(**{**_anchored([], np.zeros(12)).__dict__, "details": {}})
    v = combine([_result("x", [3]), _result("y", [3]), blind], data)
    assert np.flatnonzero(v.flagged).tolist() == [3]
