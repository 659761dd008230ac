"""Figures of ``docs/results/service.md`` that the campaign summary does not hold, from the records.

:func:`poisonlab.redteam.summary.summarise` gives the campaign's headline counts; the page also
shows, per campaign, what happened to the gates-alone candidates one by one, how the plain retry
after them ended, which detectors quarantined the clean contributions, and the gate evidence of
the clean fine-tunes. Each function here reads the scenario records of
:func:`poisonlab.redteam.campaign.run_scenario` and nothing else.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "GateCandidate",
    "OUTCOME_KEYS",
    "clean_per_seed",
    "clean_reasons",
    "different_outcomes",
    "flagged_by",
    "gate_candidates",
    "retry_outcomes",
]

#: what a rerun must repeat for its measurements to stand for the first run's
OUTCOME_KEYS = ("status", "screened", "failed_gates", "poison", "clean", "poisoned_promotion", "evidence")


@dataclass(frozen=True)
class GateCandidate:
    """The first ``retry`` run of one seed (screen off: the gates alone) and its evidence."""

    seed: int
    status: str
    failed_gates: tuple[str, ...]
    poisoned: bool
    asr_gain: float | None
    evidence: dict


def _first_runs(records: Sequence[dict]) -> list[tuple[dict, dict]]:
    return [(r, run) for r in records if r["attack"] == "retry" for run in r["runs"] if not run["screened"]]


def gate_candidates(records: Sequence[dict]) -> list[GateCandidate]:
    """The gates-alone candidates by seed; ``asr_gain`` is the attack success of the model
    serving after the run above the base model's (None when the run did not record it)."""
    out = []
    for r, run in sorted(_first_runs(records), key=lambda pair: pair[0]["seed"]):
        gain = None
        if "asr_serving" in run and r["asr_base"] is not None:
            gain = round(run["asr_serving"] - r["asr_base"], 4)
        out.append(
            GateCandidate(
                seed=r["seed"],
                status=run["status"],
                failed_gates=tuple(run["failed_gates"]),
                poisoned=bool(run["poisoned_promotion"]),
                asr_gain=gain,
                evidence=run["evidence"],
            )
        )
    return out


def retry_outcomes(records: Sequence[dict]) -> dict[str, int]:
    """How the plain retry after the gates-alone run ended.

    ``poisoned_first``: first runs that promoted a poisoned model; ``rolled_back``: of those,
    retries whose decision rolled the serving model back (the screen flagged what it was trained
    on); ``poisoned_retry``: retries that promoted a poisoned model; ``accepted_at_end``: poison
    contributions accepted when the scenario ended; ``retries`` and the retries' ``statuses``.
    """
    out = Counter(poisoned_first=0, rolled_back=0, poisoned_retry=0, accepted_at_end=0, retries=0)
    statuses: Counter = Counter()
    for r in records:
        if r["attack"] != "retry":
            continue
        first = [run for run in r["runs"] if not run["screened"]]
        after = [run for run in r["runs"] if run["screened"]]
        poisoned = any(run["poisoned_promotion"] for run in first)
        out["poisoned_first"] += poisoned
        out["retries"] += len(after)
        for run in after:
            statuses[run["status"]] += 1
            out["poisoned_retry"] += bool(run["poisoned_promotion"])
            out["rolled_back"] += poisoned and str(run["decision"] or "").startswith("rolled back")
        out["accepted_at_end"] += r["poison_final"].get("accepted", 0)
    return dict(out) | {"statuses": dict(statuses)}


def clean_per_seed(records: Sequence[dict]) -> list[tuple[int, int, int]]:
    """(seed, clean quarantined, clean sent) of every ``clean`` scenario."""
    return sorted(
        (r["seed"], r["clean_final"].get("quarantined", 0), r["clean_sent"])
        for r in records
        if r["attack"] == "clean"
    )


def clean_reasons(records: Sequence[dict]) -> Counter | None:
    """The quarantine reasons of the ``clean`` scenarios' contributions, as recorded (first 80
    characters); None when the records did not keep them."""
    rows = [r for r in records if r["attack"] == "clean"]
    if not rows or any("clean_reasons" not in r for r in rows):
        return None
    out: Counter = Counter()
    for r in rows:
        out.update(r["clean_reasons"])
    return out


def flagged_by(reasons: Counter, detector: str) -> tuple[int, int]:
    """(contributions whose screen reason names ``detector``, those it flagged alone)."""
    named = alone = 0
    for reason, n in reasons.items():
        if not reason.startswith("screen:"):
            continue
        detectors = [d.strip() for d in reason.removeprefix("screen:").split(",")]
        if detector in detectors:
            named += n
            alone += n if detectors == [detector] else 0
    return named, alone


def _outcome(record: dict) -> tuple:
    runs = tuple(tuple(repr(run.get(k)) for k in OUTCOME_KEYS) for run in record["runs"])
    finals = ("poison_final", "clean_final", "clean_quarantined_by", "poison_sent", "clean_sent")
    return runs, tuple(repr(record[k]) for k in finals)


def different_outcomes(rerun: Sequence[dict], original: Sequence[dict]) -> list[tuple[int, str]]:
    """(seed, attack) of the rerun's scenarios whose outcome differs from the original's (or that
    the original lacks)."""
    first = {(r["seed"], r["attack"]): _outcome(r) for r in original}
    return sorted(
        (r["seed"], r["attack"]) for r in rerun if first.get((r["seed"], r["attack"])) != _outcome(r)
    )
