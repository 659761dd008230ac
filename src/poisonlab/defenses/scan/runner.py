"""Run several defenses over one dataset, sharing one forward pass, and score them against the truth.

:func:`scan` is what ``poisonlab scan`` and the attacks x defenses matrix call: it computes the
model's logits and penultimate features once, builds one
:class:`~poisonlab.defenses.context.ScanContext` that every defense of the scan is fitted on (so
feature-space defenses reuse the pass and the trusted set is embedded at most once), times each
defense, and, when the dataset carries a ground-truth ``poison_mask``, scores the flags with
precision / recall / F1 / FPR / AUROC (:func:`poisonlab.metrics.detection_scores`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import yaml

from poisonlab.data.dataset import Dataset
from poisonlab.defenses import DEFENSES, get_defense
from poisonlab.defenses.base import Defense, ScanContext
from poisonlab.defenses.scan.records import MethodResult, ScanResult
from poisonlab.defenses.scan.screen import (
    ANCHORED_METHODS,
    MIN_VOTES,
    SCREEN_METHODS,
    combine,
    screen_methods,
)
from poisonlab.inference import ForwardResult, forward_pass
from poisonlab.metrics import detection_scores
from poisonlab.models.base import PoisonlabModel

__all__ = ["MethodResult", "ScanResult", "parse_method", "read_scalar", "scan"]


def read_scalar(key: str, value: str, where: str) -> Any:
    """One ``key=value`` value read as a YAML scalar, plus ``None``/``none`` and exponent floats
    without a dot (``1e-3``), which YAML 1.1 would keep as strings."""
    if value.strip() in ("None", "none"):
        return None
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ValueError(f"cannot read the value of {key!r} in {where!r}: {exc}") from None
    if isinstance(parsed, str):
        for cast in (int, float):
            try:
                return cast(parsed)
            except ValueError:
                pass
    return parsed


def parse_method(text: str) -> tuple[str, dict[str, Any]]:
    """Parse ``"name"`` or ``"name:key=value,key=value"`` (values read as YAML scalars).

    Example: ``"spectral_signatures:mode=paper,expected_fraction=0.1"``.
    """
    name, _, rest = str(text).partition(":")
    name = name.strip()
    if name not in DEFENSES:
        raise ValueError(f"unknown defense {name!r}; expected one of {sorted(DEFENSES)}")
    params: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"defense parameter must look like key=value, got {item!r} in {text!r}")
        params[key.strip()] = read_scalar(key.strip(), value, text)
    return name, params


def _build(method: Defense | str | tuple[str, dict[str, Any]]) -> Defense:
    if isinstance(method, Defense):
        return method
    if isinstance(method, str):
        name, params = parse_method(method)
    else:
        name, params = method
    try:
        return get_defense(name, **params)
    except TypeError as exc:  # an unknown keyword: name the accepted ones
        raise ValueError(f"bad parameters for defense {name!r}: {exc}") from None


def scan(
    dataset: Dataset,
    methods: Sequence[Defense | str | tuple[str, dict[str, Any]]] | None = None,
    *,
    model: PoisonlabModel | None = None,
    trusted: Dataset | None = None,
    forward: ForwardResult | None = None,
    device: str = "auto",
    screen: bool | None = None,
    min_votes: int = MIN_VOTES,
) -> ScanResult:
    """Fit every defense in ``methods`` on ``dataset``.

    Parameters
    ----------
    dataset : Dataset
        The training set to screen (uint8 images (N, H, W, C)); with a ``poison_mask`` the
        result carries detection metrics.
    methods : sequence, optional
        Defense instances, registry names, ``"name:key=value,..."`` strings or ``(name, params)``;
        ``None`` runs the default screen's detectors (:func:`~.screen.screen_methods`: they need
        a model, and the anchored ones a trusted set).
    screen : bool, optional
        Combine the methods into the screen's verdict (:func:`~.screen.combine`); default: only
        when ``methods`` is None.
    min_votes : int
        Detectors that must agree for the screen to flag a sample.
    model : PoisonlabModel, optional
        The model trained on ``dataset``; required by feature-space defenses.
    trusted : Dataset, optional
        Clean reference data (RONI, provenance, drift, STRIP need it).
    forward : ForwardResult, optional
        A precomputed pass of ``model`` over ``dataset.x`` with features; computed once here
        otherwise (only when a model is given).
    """
    if methods is None:
        if model is None and forward is None:
            raise ValueError("the default screen needs a model (--model), or name the methods to run")
        methods, screen = screen_methods(trusted is not None), True if screen is None else screen
    if not methods:
        raise ValueError("scan needs at least one defense method")
    defenses = [_build(m) for m in methods]
    names = [d.name for d in defenses]
    if len(set(names)) != len(names):
        raise ValueError(f"each defense may run once per scan, got {names}")
    forward_seconds = None
    if (
        forward is None
        and model is not None
        and any(d.needs_model or d.space == "features" for d in defenses)
    ):
        if model.num_classes != dataset.num_classes:
            raise ValueError(f"model has {model.num_classes} classes, dataset has {dataset.num_classes}")
        start = time.perf_counter()
        forward = forward_pass(model, dataset.x, features=True, device=device)
        forward_seconds = time.perf_counter() - start
    context = ScanContext(dataset, model, forward=forward, trusted=trusted, device=device)
    results = [_run_one(d, context) for d in defenses]
    verdict = combine(_screened(results), dataset, min_votes=min_votes) if screen else None
    return ScanResult(
        dataset=dataset, methods=results, forward_seconds=forward_seconds, forward=forward, screen=verdict
    )


def _screened(results: list[MethodResult]) -> list[MethodResult]:
    """What the screen combines: its own detectors when all of them ran (other methods of the
    scan are shown beside it, not mixed in), else every method given."""
    names = {r.name for r in results}
    if set(SCREEN_METHODS) <= names:
        return [r for r in results if r.name in SCREEN_METHODS + ANCHORED_METHODS]
    return results


def _run_one(defense: Defense, context: ScanContext) -> MethodResult:
    start = time.perf_counter()
    defense.fit_context(context)
    seconds = time.perf_counter() - start
    scores, flagged = defense.score_samples(), defense.predict()
    mask = context.dataset.poison_mask
    return MethodResult(
        name=defense.name,
        params=_jsonable(defense.get_params()),
        space=str(getattr(defense, "space", "")),
        paper=defense.paper,
        scores=scores,
        flagged=flagged,
        details=defense.details_,
        seconds=seconds,
        metrics=None if mask is None else detection_scores(mask, flagged, scores),
        defense=defense,
    )


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    """Constructor parameters with non-JSON values (arrays, objects) shown as short strings."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None or isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str)) for v in value):
            out[key] = list(value)
        else:
            out[key] = f"<{type(value).__name__}>"
    return out
