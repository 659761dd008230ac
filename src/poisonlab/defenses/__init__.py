"""Poison detection and mitigation.

Every training-data detector follows one scikit-learn-style contract (see
:mod:`poisonlab.defenses.base`): ``fit(dataset, model=None, *, forward=None, trusted=None)``,
``score_samples()`` (higher = more suspicious) and ``predict()`` (boolean poison mask).
:data:`DEFENSES` maps a registry name to its class; classes are imported on first use so that
``import poisonlab.defenses`` stays cheap.

Model-level checks (canary records, the trigger-sensitivity test), inference-time STRIP,
trigger-augmented training and mitigation live in their own modules of this package.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from poisonlab.defenses.base import Defense, NotFittedError

# name -> "module:Class" inside this package; one file per method.
_SPEC: dict[str, str] = {
    # data validation
    "data_checks": "validation:DataChecks",
    "duplicates": "duplicates:DuplicateDetector",
    "label_drift": "drift:LabelDrift",
    "manifest": "manifest:ManifestCheck",
    # statistical / unsupervised anomaly detection (pixels or penultimate features)
    "zscore": "zscore:ZScoreDetector",
    "kmeans": "kmeans:KMeansDetector",
    "dbscan": "dbscan:DBSCANDetector",
    "isolation_forest": "isolation_forest:IsolationForestDetector",
    "autoencoder": "autoencoder:AutoencoderDetector",
    # representation-space backdoor detectors
    "activation_clustering": "activation_clustering:ActivationClustering",
    "spectral_signatures": "spectral:SpectralSignatures",
    # label noise, influence and provenance
    "confident_learning": "confident_learning:ConfidentLearning",
    "roni": "roni:RONI",
    "provenance": "provenance:ProvenanceDefense",
    # inference-time input filter, usable as a scan of a dataset too
    "strip": "strip:STRIP",
}


class _Registry(Mapping[str, type[Defense]]):
    """Read-only mapping of defense names to classes, importing each module on first access."""

    def __getitem__(self, name: str) -> type[Defense]:
        try:
            module_name, cls_name = _SPEC[name].split(":")
        except KeyError:
            raise KeyError(name) from None
        module = importlib.import_module(f"{__name__}.{module_name}")
        return getattr(module, cls_name)

    def __iter__(self) -> Iterator[str]:
        return iter(_SPEC)

    def __len__(self) -> int:
        return len(_SPEC)


DEFENSES: Mapping[str, type[Defense]] = _Registry()


def get_defense(name: str, **params: Any) -> Defense:
    """Build the defense registered as ``name`` with keyword ``params`` (ValueError if unknown)."""
    if name not in _SPEC:
        raise ValueError(f"unknown defense {name!r}; expected one of {sorted(_SPEC)}")
    return DEFENSES[name](**params)


__all__ = ["DEFENSES", "Defense", "NotFittedError", "get_defense"]
