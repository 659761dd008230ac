"""Steps 2 and 3 of a training run: volume caps, then the screen over the whole training snapshot.

:func:`volume_caps` holds back what one source sends beyond its share of a class, and what all
sources send beyond the class itself: a source that outweighs a class of the trusted base data
decides what the model learns of that class whatever any detector says, so that much waits for a
human (quarantined with a ``review: volume cap`` reason; an admin's release lets it in).

:func:`screen` runs the default screen (:mod:`poisonlab.defenses.scan.screen`) over the trusted
base training set plus every contribution still in the run, accepted ones included, with the
serving model and the base data's validation split as the trusted clean set, and the configured
defenses whose flags act alone beside it. It acts on evidence: flagged contributions are
quarantined (see :func:`~poisonlab.service.decisions.quarantine_rows`), flagged base samples are
reported and kept. See :mod:`poisonlab.service.pipeline` for the whole run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.scan import scan, screen_methods
from poisonlab.service.alerts import raise_alert
from poisonlab.service.audit import record
from poisonlab.service.db import Contribution
from poisonlab.service.decisions import identity, quarantine_rows, roll_back_from

if TYPE_CHECKING:  # the pipeline imports this module: its types only for annotations
    from poisonlab.service.pipeline import Run, Snapshot

__all__ = ["PipelineError", "apply_caps", "screen", "volume_caps"]


#: Most trusted images per class the screen compares with (all of them on digits)
TRUSTED_PER_CLASS = 300
#: Quarantine reasons that are evidence against a source (see :func:`distrusted`)
EVIDENCE_PREFIXES = ("screen:", "defense:")


class PipelineError(RuntimeError):
    """A run that cannot go on (no serving model, no trusted data, a defense that fails)."""


def volume_caps(
    ids: Sequence[int],
    labels: Sequence[int],
    pending: Sequence[bool],
    who: Sequence[str],
    base_counts: Sequence[int],
    *,
    source_fraction: float,
    class_fraction: float,
) -> dict[int, str]:
    """The pending contributions to hold for review (id -> reason), in id order.

    Every contribution, accepted ones included, counts against its source's and its class's
    allowance: ``floor(source_fraction * n_c)`` per source and ``floor(class_fraction * n_c)``
    over all sources, ``n_c`` the class's base training samples. A pending contribution beyond
    either is held; accepted ones are never held (they were reviewed or trained on).
    """
    per_source: Counter = Counter()
    per_class: Counter = Counter()
    held: dict[int, str] = {}
    for cid, label, is_pending, source in zip(ids, labels, pending, who, strict=True):
        n = int(base_counts[label]) if label < len(base_counts) else 0
        source_cap, class_cap = int(np.floor(source_fraction * n)), int(np.floor(class_fraction * n))
        if is_pending and per_source[source, label] >= source_cap:
            held[int(cid)] = (
                f"review: volume cap: {source} already contributes {per_source[source, label]} images "
                f"of class {label} (cap {source_cap}: {source_fraction:g} x {n} in the base data)"
            )
        elif is_pending and per_class[label] >= class_cap:
            held[int(cid)] = (
                f"review: volume cap: {per_class[label]} contributions of class {label} already "
                f"(cap {class_cap}: {class_fraction:g} x {n} in the base data)"
            )
        else:
            per_source[source, label] += 1
            per_class[label] += 1
    return held


def apply_caps(run: Run, snap: Snapshot) -> np.ndarray:
    """Step 2: hold what is beyond the volume caps for review; returns the mask of rows still in."""
    s = run.state.settings
    counts = np.bincount(run.splits.train.y, minlength=run.splits.train.num_classes)
    held = volume_caps(
        snap.ids.tolist(), snap.data.y.tolist(), snap.pending.tolist(), snap.who.tolist(), counts.tolist(),
        source_fraction=s.max_source_class_fraction, class_fraction=s.max_class_contribution_fraction,
    )  # fmt: skip
    with run.db.write() as session:
        changed = quarantine_rows(session, held, actor=run.actor)
        run.update_in(session, {"caps": {"held_for_review": changed}})
    return ~np.isin(snap.ids, list(held))


def _methods(
    screen_on: bool, extras: tuple[str, ...], max_fpr: float | None
) -> tuple[list[tuple[str, dict]], list[str]]:
    """(methods to scan with their parameters, extras that act alone): a name that is part of the
    screen only votes; the anchored detector gets the service's false-positive cap."""
    ours = list(screen_methods(True)) if screen_on else []
    alone = [m for m in extras if m not in ours]
    params = {"anchored_knn": {"max_fpr": max_fpr}} if max_fpr is not None else {}
    return [(m, params.get(m, {})) for m in ours + alone], alone


def _reasons(result, offset: int, screen_on: bool, alone: list[str]) -> tuple[np.ndarray, list[str]]:
    """Per contribution of the scan: flagged, and the reason naming the detectors that flagged it."""
    n = len(result.dataset) - offset
    flagged, reasons = np.zeros(n, bool), [[] for _ in range(n)]
    parts = []
    if screen_on:
        screen_flags = result.screen.flagged[offset:]
        voters = [m for m in result.methods if m.name in result.screen.methods]
        parts.append((screen_flags, "screen", voters))
    for name in alone:
        m = result.method(name)
        parts.append((m.flagged[offset:], "defense", [m]))
    for flags, kind, voters in parts:
        flagged |= flags
        for i in np.flatnonzero(flags):
            names = [m.name for m in voters if m.flagged[offset + i]] or [kind]
            reasons[i].append(f"{kind}: {', '.join(names)}")
    return flagged, ["; ".join(r) for r in reasons]


def screen(
    run: Run, snap: Snapshot, active: np.ndarray, defenses: tuple[str, ...] | None
) -> tuple[np.ndarray, str | None]:
    """Step 3: screen base data + every active contribution.

    ``defenses`` is the run's override (None: the settings; an empty tuple: no screening at all).
    Returns the mask of rows to train on, and the version rolled back to when the screen flagged
    contributions the serving model had learnt (:func:`~poisonlab.service.decisions.roll_back_from`).
    """
    s = run.state.settings
    screen_on = s.screen and defenses != ()
    methods, alone = _methods(screen_on, s.defenses if defenses is None else defenses, s.screen_max_fpr)
    if not methods or not active.any():
        note = "no defenses configured" if not methods else "no contribution left to screen"
        run.update({"defenses": {"methods": {}, "note": note}})
        return active, None
    idx = np.flatnonzero(active)
    union = run.splits.train.concat(snap.data.subset(idx), name="base+contributions")
    offset = len(run.splits.train)
    try:
        result = scan(
            union, methods, model=run.loaded.model, trusted=trusted_set(run.splits),
            device=s.device, screen=screen_on,
        )  # fmt: skip
    except (ValueError, ImportError, AttributeError) as exc:
        raise PipelineError(f"defense scan failed, not training on unscreened data: {exc}") from exc
    flagged_part, reason_part = _reasons(result, offset, screen_on, alone)
    flagged = np.zeros(len(snap.ids), bool)
    flagged[idx] = flagged_part
    reasons = {int(snap.ids[j]): reason_part[i] for i, j in enumerate(idx) if flagged_part[i]}
    with run.db.read() as session:
        history = flagged_history(session)
    distrust, sources = distrusted(snap, active, flagged, history, s.source_flag_share, s.source_flag_min)
    reasons.update({cid: r for cid, r in distrust.items() if cid not in reasons})
    flagged |= np.isin(snap.ids, list(distrust))
    base = result.screen.flagged[:offset] if screen_on else np.zeros(offset, bool)
    rolled_back = _record_screen(run, snap, flagged, reasons, base, result, sources)
    return active & ~flagged, rolled_back


def trusted_set(splits) -> Dataset:
    """The screen's trusted clean set: the base data's held-out validation and test splits (never
    trained on, never a contribution), at most :data:`TRUSTED_PER_CLASS` images of each class."""
    held_out = splits.val.concat(splits.test, name="trusted")
    rng = np.random.default_rng(0)
    keep = [
        rng.permutation(np.flatnonzero(held_out.y == c))[:TRUSTED_PER_CLASS]
        for c in range(held_out.num_classes)
    ]
    return held_out.subset(np.sort(np.concatenate(keep)), name="trusted")


def flagged_history(session: Session) -> Counter:
    """Per identity (:func:`~poisonlab.service.decisions.identity`), its contributions quarantined
    on evidence by earlier runs (a screen or defense flag; not caps, policy or distrust)."""
    query = select(Contribution).where(
        Contribution.status == "quarantined",
        or_(*(Contribution.reason.startswith(p) for p in EVIDENCE_PREFIXES)),
    )
    return Counter(identity(row) for row in session.scalars(query))


def distrusted(
    snap: Snapshot, active: np.ndarray, flagged: np.ndarray, history: Counter, share: float, minimum: int
) -> tuple[dict[int, str], dict[str, dict[str, int]]]:
    """Rows of the sources caught sending poison, to quarantine with them (id -> reason), and the
    sources (identity -> counts).

    A source is distrusted when at least ``minimum`` of its contributions carry evidence (flagged
    in this run or quarantined on evidence before) and they are at least ``share`` of all of them:
    an honest source's occasional odd image stays far below that share, while a poisoner's
    unflagged leftovers (the screen's misses) go with the rest of its batch.
    """
    caught: dict[int, str] = {}
    sources: dict[str, dict[str, int]] = {}
    for who in np.unique(snap.who[active]) if active.any() else ():
        rows = active & (snap.who == who)
        evidence = int((flagged & rows).sum()) + history.get(who, 0)
        total = int(rows.sum()) + history.get(who, 0)
        if evidence < minimum or evidence < share * total:
            continue
        sources[str(who)] = {"evidence": evidence, "contributions": total}
        reason = f"source: {who} has {evidence} of {total} contributions flagged (distrusted at {share:.0%})"
        caught.update({int(cid): reason for cid in snap.ids[rows & ~snap.admin]})
    return caught, sources


def _record_screen(
    run: Run, snap: Snapshot, flagged, reasons: dict[int, str], base, result, sources
) -> str | None:
    """Quarantine, rollback, alerts, audit and report of the screen, in one transaction; returns
    the version rolled back to, if any."""
    offset = len(base)
    accepted = flagged & ~snap.pending & ~snap.admin
    admin = flagged & snap.admin
    summary = {
        m.name: {
            "flagged_contributions": int(m.flagged[offset:].sum()),
            "flagged_base": int(m.flagged[:offset].sum()),
            "seconds": round(m.seconds, 3),
        }
        for m in result.methods
    }
    with run.db.write() as session:
        rolled_back = roll_back_from(session, snap.ids[accepted].tolist(), actor=run.actor)
        to_quarantine = {cid: r for cid, r in reasons.items() if cid not in set(snap.ids[admin].tolist())}
        quarantined = quarantine_rows(session, to_quarantine, actor=run.actor)
        base_report = _report_base(run, session, base)
        if accepted.any() or admin.any():
            ids = {"accepted": snap.ids[accepted].tolist(), "admin_released": snap.ids[admin].tolist()}
            served = (
                f"rolled back to {rolled_back}" if rolled_back else f"{run.loaded.version_id} keeps serving"
            )
            raise_alert(
                session, "flagged_accepted",
                f"training run {run.run_id}: the screen flags {int(accepted.sum())} contributions a "
                f"served model was trained on (quarantined again) and {int(admin.sum())} an admin "
                f"released (left out of this run); {served}",
                severity="critical" if accepted.any() else "warning",
                details={"run_id": run.run_id, "rolled_back_to": rolled_back, **ids},
            )  # fmt: skip
        report = {
            "methods": summary,
            "screen": None if result.screen is None else result.screen.to_dict(),
            "quarantined": quarantined,
            "flagged_accepted": int(accepted.sum()),
            "flagged_admin_released": int(admin.sum()),
            "distrusted_sources": sources,
            "rolled_back_to": rolled_back,
            "base": base_report,
        }
        run.update_in(session, {"defenses": report})
    return rolled_back


def _report_base(run: Run, session: Session, base: np.ndarray) -> dict:
    """Flagged trusted base samples: kept in training, reported in an audit entry, and alerted on
    when more than ``base_flag_alert_fraction`` of one class is flagged."""
    y, names = run.splits.train.y, run.loaded.class_names
    counts = np.bincount(y, minlength=len(names))
    hits = np.bincount(y[base], minlength=len(names))
    per_class = {names[c]: int(hits[c]) for c in np.flatnonzero(hits)}
    out = {"flagged": int(base.sum()), "per_class": per_class, "indices": np.flatnonzero(base)[:200].tolist()}
    if not base.any():
        return out
    outcome = f"ok: kept in training: {per_class}"
    record(session, run.actor, "pipeline.base_flagged", f"run:{run.run_id}", outcome)
    limit = run.state.settings.base_flag_alert_fraction
    blocks = [names[c] for c in range(len(names)) if hits[c] > limit * max(counts[c], 1)]
    if blocks:
        raise_alert(
            session, "base_flagged",
            f"training run {run.run_id}: the screen flags more than {limit:.0%} of the trusted base "
            f"samples of class(es) {', '.join(blocks)}; they stay in training, please review them",
            details={"run_id": run.run_id, "per_class": per_class, "indices": out["indices"]},
        )  # fmt: skip
    return out
