"""Poison detection and mitigation.

Every training-data detector follows one scikit-learn-style contract (see
:mod:`poisonlab.defenses.base`): ``fit(dataset, model=None, *, forward=None, trusted=None)``,
``score_samples()`` (higher = more suspicious) and ``predict()`` (boolean poison mask).
:data:`DEFENSES` maps a registry name to its class; classes are imported on first use so that
``import poisonlab.defenses`` stays cheap.

The package is split into rooms: ``detectors/`` (training-set detectors, one module per method),
``data_checks/`` (validity, duplicates, label drift, signed manifests), ``gates/`` (model-level
checks before promotion: canary records, the trigger-sensitivity test), ``mitigation/`` (drop or
relabel and retrain, trigger-augmented training), ``scan/`` (several defenses over one dataset,
sharing one :class:`~poisonlab.defenses.context.ScanContext`, and the scan report) and
``helpers/`` (what several defenses share). The contract is :mod:`poisonlab.defenses.base`.
"""

from __future__ import annotations

from typing import Any

from poisonlab.defenses.base import Defense, NotFittedError, ScanContext
from poisonlab.registry import Registry

# name -> "module:Class" inside this package; one file per method, in its room.
_SPEC: dict[str, str] = {
    # data validation
    "data_checks": "data_checks.validation:DataChecks",
    "duplicates": "data_checks.duplicates:DuplicateDetector",
    "label_drift": "data_checks.drift:LabelDrift",
    "manifest": "data_checks.manifest:ManifestCheck",
    # statistical / unsupervised anomaly detection (pixels or penultimate features)
    "zscore": "detectors.zscore:ZScoreDetector",
    "kmeans": "detectors.kmeans:KMeansDetector",
    "dbscan": "detectors.dbscan:DBSCANDetector",
    "isolation_forest": "detectors.isolation_forest:IsolationForestDetector",
    "autoencoder": "detectors.autoencoder:AutoencoderDetector",
    # representation-space backdoor detectors
    "activation_clustering": "detectors.activation_clustering:ActivationClustering",
    "spectral_signatures": "detectors.spectral:SpectralSignatures",
    "spectre": "detectors.spectre:SPECTRE",
    "scan_lrt": "detectors.scan_lrt:SCAn",
    "deep_knn": "detectors.deep_knn:DeepKNN",
    "anchored_knn": "detectors.anchored_knn:AnchoredKNN",
    # label noise, influence and provenance
    "confident_learning": "detectors.confident_learning:ConfidentLearning",
    "roni": "detectors.roni:RONI",
    "provenance": "detectors.provenance:ProvenanceDefense",
    # inference-time input filters, usable as a scan of a dataset too
    "strip": "detectors.strip:STRIP",
    "ibd_psc": "detectors.ibd_psc:IBDPSC",
    # all hidden layers, clustered (FLARE-style; holds on all-to-all)
    "flare": "detectors.flare:FLARE",
}


#: name -> defense class; each module is imported on first access (see :class:`poisonlab.registry.Registry`)
DEFENSES: Registry[type[Defense]] = Registry("defense", _SPEC, package=__name__)


def get_defense(name: str, **params: Any) -> Defense:
    """Build the defense registered as ``name`` with keyword ``params`` (ValueError if unknown)."""
    return DEFENSES.create(name, **params)


__all__ = ["DEFENSES", "Defense", "NotFittedError", "ScanContext", "get_defense"]
