"""ImRecS: the chapter's image-recognition service, built to be attacked and run safely.

``poisonlab serve`` (or :func:`create_app` with :class:`ServiceSettings`) runs a FastAPI + uvicorn
service over a SQLAlchemy database (SQLite with WAL by default, PostgreSQL by URL) and a
content-addressed file store. Thin routers (:mod:`poisonlab.service.routers`) get the service's
components and the caller's role from :mod:`~.deps` and call the library modules here, which hold
the logic. Library functions take the caller's session and never commit, so one transaction can
span several of them (a promotion is one commit: :mod:`~.decisions`); an unknown id raises
:class:`~.errors.NotFound`, answered 404 by a single handler:

================================  ==============================================================
:mod:`~.deps`                     ``Annotated`` dependencies: state, sessions, server, roles
:mod:`~.auth`                     API keys (sha256-hashed), roles viewer < contributor < trainer
                                  < admin
:mod:`~.audit`                    append-only audit log of every write and refused write
:mod:`~.contributions`            validated, signed, durably stored user contributions
:mod:`~.signing`, :mod:`~.sources`  Ed25519 data signing and registered sources
:mod:`~.registry`                 model versions with lineage, promotion, rollback
:mod:`~.serving`, :mod:`~.batching`  the serving model in memory; dynamic batching of inference
:mod:`~.pipeline`, :mod:`~.runs`  the defended continuous-learning pipeline and its worker
:mod:`~.decisions`                a run's promotion or rejection, one transaction each
:mod:`~.monitoring`, :mod:`~.alerts`  Prometheus metrics, prediction-shift monitor, alerts
================================  ==============================================================

The red-team client that attacks the service through this API is :mod:`poisonlab.redteam`.

Endpoints and the lowest role each needs:

=====================================================  ============
``POST /v1/predict``, ``POST /v1/predict/batch``         viewer
``GET /v1/models``, ``GET /v1/models/{id}``              viewer
``GET /v1/alerts``, ``GET /v1/me``, ``GET /metrics``     viewer
``GET /v1/status`` (serving model and versions)          viewer
``POST /v1/contributions``                               contributor
``GET /v1/contributions[/{id}]``, training runs          trainer
promote, rollback, release, reject, keys, sources,       admin
audit, resolving alerts, changing a run's defenses
``GET /v1/health`` (liveness only), ``GET /``,           no key
``GET /docs`` (pages), ``GET /openapi.json``
=====================================================  ============

Contribution listings and training-run reports need the trainer role on purpose: they show which
contributions the defenses flagged, which would let an attacker tune poison to slip through.
"""

from poisonlab.service.app import create_app
from poisonlab.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
