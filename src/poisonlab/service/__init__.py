"""ImRecS: the chapter's image-recognition service, built to be attacked and run safely.

``poisonlab serve`` (or :func:`create_app` with :class:`ServiceSettings`) runs a FastAPI + uvicorn
service over a SQLAlchemy database (SQLite with WAL by default, PostgreSQL by URL) and a
content-addressed file store. Thin routers (:mod:`poisonlab.service.routers`) call the library
modules here, which hold the logic:

================================  ==============================================================
:mod:`~.auth`                     API keys (sha256-hashed), roles viewer < contributor < trainer
                                  < admin, the ``require(role)`` dependency
:mod:`~.audit`                    append-only audit log of every write and refused write
:mod:`~.contributions`            validated, signed, durably stored user contributions
:mod:`~.signing`, :mod:`~.sources`  Ed25519 data signing and registered sources
:mod:`~.versions`                 model versions with lineage, promotion, rollback, serving
:mod:`~.batching`                 dynamic batching of concurrent inference
:mod:`~.pipeline`, :mod:`~.runs`  the defended continuous-learning pipeline and its worker
:mod:`~.monitoring`, :mod:`~.alerts`  Prometheus metrics, prediction-shift monitor, alerts
================================  ==============================================================

Endpoints and the lowest role each needs:

=====================================================  ============
``POST /v1/predict``, ``POST /v1/predict/batch``         viewer
``GET /v1/models``, ``GET /v1/models/{id}``              viewer
``GET /v1/alerts``, ``GET /v1/me``, ``GET /metrics``     viewer
``POST /v1/contributions``                               contributor
``GET /v1/contributions[/{id}]``, training runs          trainer
promote, rollback, release, reject, keys, sources,       admin
audit, resolving alerts, changing a run's defenses
``GET /v1/health``, ``GET /`` (the web page)             no key
=====================================================  ============

Contribution listings and training-run reports need the trainer role on purpose: they show which
contributions the defenses flagged, which would let an attacker tune poison to slip through.
"""

from poisonlab.service.app import create_app
from poisonlab.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
