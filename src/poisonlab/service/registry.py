"""The model registry: the service's model versions, kept in its database.

Each version row points at a saved model folder (``weights.safetensors`` + ``model.json``,
loaded with :func:`poisonlab.models.checkpoint.load_model`, which checks the weights' sha256) and
records its parent, metrics, the hash of the data snapshot it was trained on and its status:
``serving`` (exactly one), ``retired`` (served before), ``candidate`` (registered, never served)
or ``rejected`` (failed a promotion gate).

Like every library module of the service, the functions here take the caller's session and
never commit: the caller's transaction (``with db.write() as session``) is the unit of work. So a
training run registers its candidate, switches the serving row, accepts the contributions it
was trained on and closes the run in one commit, and a crash leaves either all of it or none.
The in-memory model that follows the serving row is :mod:`poisonlab.service.serving`.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from poisonlab.models.checkpoint import load_model, read_card
from poisonlab.service.audit import Actor, record
from poisonlab.service.db import ModelVersion, utcnow
from poisonlab.service.errors import NotFound

STATUSES = ("serving", "retired", "candidate", "rejected")


def register_version(
    session: Session,
    path: str | Path,
    *,
    actor: Actor,
    status: str = "candidate",
    metrics: dict | None = None,
    snapshot_hash: str | None = None,
    reference: list[float] | None = None,
    run_id: int | None = None,
) -> ModelVersion:
    """Add the saved model at ``path`` to the registry; an id already registered is kept as is.

    Parameters
    ----------
    session : Session
        A write session; the caller commits.
    path : str or Path
        The saved model folder; its card gives the version id and parent.
    actor : Actor
        Who registers it (audited).
    status : {"candidate", "rejected"}
        A new version is never serving: :func:`promote` makes it so.
    metrics : dict, optional
        Merged over the card's metrics.
    snapshot_hash : str, optional
        Hash of the data snapshot it was trained on (default: the card's dataset hash).
    reference : list of float, optional
        Its predicted-class shares on trusted validation data (the shift monitor's baseline).
    run_id : int, optional
        The training run that produced it.

    Returns
    -------
    ModelVersion
        The new row, or the existing one of the same id.
    """
    if status not in ("candidate", "rejected"):
        raise ValueError(f"a new version starts as candidate or rejected, got {status!r}")
    card = read_card(path)
    row = session.get(ModelVersion, card.id)
    if row is not None:
        return row
    row = ModelVersion(
        id=card.id,
        path=str(Path(path).resolve()),
        parent_id=card.parent_id,
        status=status,
        metrics={**card.metrics, **(metrics or {})},
        data_snapshot_hash=snapshot_hash or card.dataset_hash,
        reference_distribution=None if reference is None else {"predicted": list(reference)},
        training_run_id=run_id,
    )
    session.add(row)
    # inserted now: an alert naming it in the same transaction has a foreign key to it, and the
    # unit of work does not order the two inserts by themselves (there is no relationship())
    session.flush()
    record(session, actor, "models.register", f"model:{card.id}", f"ok: {status}")
    return row


def serving_version(session: Session) -> ModelVersion | None:
    """The row marked ``serving``, or None before any model was served."""
    return session.scalar(select(ModelVersion).where(ModelVersion.status == "serving"))


def get_version(session: Session, version_id: str) -> ModelVersion:
    """The version ``version_id``; :class:`~poisonlab.service.errors.NotFound` when unknown."""
    row = session.get(ModelVersion, version_id)
    if row is None:
        raise NotFound(f"no model version {version_id!r}")
    return row


def list_versions(session: Session) -> list[ModelVersion]:
    """Every version, newest first."""
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.created_at.desc())))


def lineage(session: Session, version_id: str) -> list[ModelVersion]:
    """The version and its ancestors known to the service, newest first."""
    chain: list[ModelVersion] = []
    seen: set[str] = set()
    row = session.get(ModelVersion, version_id)
    while row is not None and row.id not in seen:  # ``seen`` guards against a cycle of parents
        chain.append(row)
        seen.add(row.id)
        row = session.get(ModelVersion, row.parent_id) if row.parent_id else None
    return chain


def promote(
    session: Session,
    version_id: str,
    *,
    actor: Actor,
    force: bool = False,
    action: str = "models.promote",
) -> ModelVersion:
    """Mark ``version_id`` serving; the current serving version becomes ``retired``.

    Parameters
    ----------
    session : Session
        A write session; the switch is effective when the caller commits (a
        :class:`~poisonlab.service.serving.ModelServer` then loads the new weights).
    version_id : str
        The version to serve.
    actor : Actor
        Who promotes (audited as ``action``).
    force : bool
        Needed to promote a version that failed a gate (``rejected``).
    action : str
        The audit action: ``models.promote``, ``models.rollback`` or ``models.bootstrap``.

    Returns
    -------
    ModelVersion
        The serving row.

    Raises
    ------
    NotFound
        Unknown id.
    ValueError
        A rejected version without ``force``, or weights that fail their hash check.
    OSError
        Weights that are missing.
    """
    target = get_version(session, version_id)
    if target.status == "serving":
        return target
    if target.status == "rejected" and not force:
        raise ValueError(
            f"model {version_id} failed a promotion gate; promote it with force=true to override"
        )
    load_model(target.path)  # refuse weights that are missing or were tampered with
    for row in session.scalars(select(ModelVersion).where(ModelVersion.status == "serving")):
        row.status = "retired"
    target.status, target.served_at = "serving", utcnow()
    record(session, actor, action, f"model:{version_id}", "ok" + (" (forced)" if force else ""))
    return target


def rollback_target(session: Session) -> ModelVersion:
    """The version served before the current one (ValueError when there is none)."""
    current = serving_version(session)
    query = select(ModelVersion).where(ModelVersion.status == "retired", ModelVersion.served_at.is_not(None))
    previous = session.scalars(query.order_by(ModelVersion.served_at.desc())).first()
    if previous is None:
        raise ValueError("no previously served model to roll back to")
    if current is not None and previous.id == current.id:  # pragma: no cover - statuses exclude it
        raise ValueError("the previous model is the serving one")
    return previous
