"""Source tags: which samples came from where, as RONI and the provenance defense select them.

Every sample of a :class:`~poisonlab.data.dataset.Dataset` carries a source tag
(``dataset.source``), e.g. ``"cifar10:train"`` or ``"contrib:alice"``. Defenses that treat
contributors differently select samples by tag prefix (:func:`prefix_mask`) or group them into
provenance segments (:func:`provenance_groups`).
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["GROUP_RULES", "check_sources", "prefix_mask", "provenance_groups"]

GROUP_RULES = ("source", "prefix")


def provenance_groups(source: np.ndarray, rule: str) -> np.ndarray:
    """Group key of every sample (N,): the full source tag, or its part before the first ":"/"/"."""
    tags = source.astype(str)
    if rule == "source":
        return tags
    return np.array([re.split(r"[:/]", t, maxsplit=1)[0] for t in tags], dtype=object).astype(str)


def check_sources(value: object, name: str) -> tuple[str, ...] | None:
    """Validate ``None`` or a non-empty list of non-empty source-tag prefixes."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{name} must be None or a non-empty list of source prefixes, got {value!r}")
    if not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{name} must hold non-empty strings, got {value!r}")
    return tuple(value)


def prefix_mask(source: np.ndarray, prefixes: tuple[str, ...]) -> np.ndarray:
    """True where a source tag (N,) starts with one of ``prefixes``."""
    tags = source.astype(str)
    return np.logical_or.reduce([np.char.startswith(tags, p) for p in prefixes])
