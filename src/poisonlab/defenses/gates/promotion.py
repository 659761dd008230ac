"""Every promotion gate of a candidate model against the model it would replace, in one call.

:func:`promotion_gates` is what the ImRecS pipeline runs before it promotes a fine-tuned model; it
judges a candidate against a trusted serving model on trusted data only:

1. ``accuracy``: clean accuracy on the gate set not below the serving model's minus
   ``max_accuracy_drop``;
2. ``canaries``: every canary record right (:mod:`.canary`, picked from the canary pool with the
   serving model);
3. ``neural_cleanse``: triggers reverse-engineered from the candidate (:mod:`.neural_cleanse`,
   Wang et al., IEEE S&P 2019) on the trusted set, then stamped on held-out trusted images for
   both models: no outlying class, no shortcut the serving model does not share;
4. ``sensitivity``: the fixed trigger list stamped on the gate set, the serving model's own
   reaction discounted (:mod:`.sensitivity`). The reverse-engineered triggers are judged over all
   source classes together by the previous gate, not per source class here: a trigger optimised
   on the candidate sits on its decision boundary, and per class (36 digits each) a clean
   fine-tune's trigger moved one class 0.52 more than on the serving model (one development run);
5. ``behaviour``: no block of one class moved to another, no class's recall dropped, compared
   with the serving model on the gate set (:mod:`.behaviour`).

A gate that cannot be checked fails (fail closed), with the error as its evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.gates.behaviour import behaviour_shift
from poisonlab.defenses.gates.canary import check_canaries, select_canaries
from poisonlab.defenses.gates.neural_cleanse import neural_cleanse
from poisonlab.defenses.gates.sensitivity import trigger_sensitivity
from poisonlab.evaluation import evaluate
from poisonlab.models.base import PoisonlabModel

__all__ = ["GatePolicy", "promotion_gates"]


@dataclass(frozen=True)
class GatePolicy:
    """Thresholds of :func:`promotion_gates` (the service takes them from its settings).

    ``reverse_engineer_steps = 0`` leaves out the Neural Cleanse search (and its triggers).
    """

    max_accuracy_drop: float = 0.02
    canaries_per_class: int = 5
    sensitivity_spike: float = 0.5
    reverse_engineer_steps: int = 40
    reverse_engineer_gap: float = 0.25
    behaviour_max_shift: float = 0.2
    seed: int = 0


def _guarded(check) -> dict[str, Any]:
    """Run one gate; a gate that cannot run fails with the reason (fail closed)."""
    try:
        return check()
    except ValueError as exc:
        return {"passed": False, "error": str(exc)}


def _accuracy(candidate, serving, gate_set: Dataset, policy: GatePolicy, device: str) -> dict[str, Any]:
    old = evaluate(serving, gate_set, device=device).accuracy
    new = evaluate(candidate, gate_set, device=device).accuracy
    return {
        "passed": bool(new >= old - policy.max_accuracy_drop),
        "serving": round(old, 4),
        "candidate": round(new, 4),
        "max_drop": policy.max_accuracy_drop,
    }


def promotion_gates(
    candidate: PoisonlabModel,
    serving: PoisonlabModel,
    *,
    canary_pool: Dataset,
    gate_set: Dataset,
    trusted: Dataset,
    policy: GatePolicy | None = None,
    device: str = "cpu",
) -> dict[str, dict[str, Any]]:
    """Run the five gates of the module docstring.

    Parameters
    ----------
    candidate : PoisonlabModel
        The fine-tuned model asking for promotion.
    serving : PoisonlabModel
        The trusted model it would replace (the reference of every comparison).
    canary_pool : Dataset
        Trusted images the canaries are picked from (never trained on).
    gate_set : Dataset
        Trusted held-out images for accuracy, the sensitivity test and the behaviour comparison.
    trusted : Dataset
        Trusted images the triggers are reverse-engineered on (and their success measured).
    policy : GatePolicy, optional
        Thresholds; the defaults of :class:`GatePolicy` when omitted.
    device : {"cpu", "cuda", "auto"}

    Returns
    -------
    dict
        Gate name -> JSON-ready verdict with ``passed`` and its evidence.
    """
    p = policy or GatePolicy()
    out: dict[str, dict[str, Any]] = {
        "accuracy": _guarded(lambda: _accuracy(candidate, serving, gate_set, p, device)),
    }

    def canaries() -> dict[str, Any]:
        chosen = select_canaries(
            canary_pool, serving, per_class=p.canaries_per_class, seed=p.seed, device=device
        )
        return check_canaries(candidate, chosen, device=device).to_dict()

    out["canaries"] = _guarded(canaries)
    if p.reverse_engineer_steps > 0:
        out["neural_cleanse"] = _guarded(
            lambda: neural_cleanse(
                candidate, trusted, reference=serving, steps=p.reverse_engineer_steps,
                min_gap=p.reverse_engineer_gap, seed=p.seed, device=device,
            ).to_dict()
        )  # fmt: skip

    def sensitivity() -> dict[str, Any]:
        report = trigger_sensitivity(
            candidate, gate_set, spike_threshold=p.sensitivity_spike, reference=serving, device=device
        )
        return {k: v for k, v in report.to_dict().items() if k != "flip_matrix"}

    out["sensitivity"] = _guarded(sensitivity)
    out["behaviour"] = _guarded(
        lambda: behaviour_shift(
            candidate, serving, gate_set, max_shift=p.behaviour_max_shift, device=device
        ).to_dict()
    )
    return out
