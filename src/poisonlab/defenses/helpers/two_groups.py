"""Two groups on a line: the exact 2-means split of 1-D values and Ashman's D of the split.

A poisoned class often holds two groups of samples (the clean ones and the poison) that a single
direction separates: the top principal direction of the class (spectral signatures, SPECTRE) or
the direction between two subgroup means (SCAn). On a line, 2-means has an exact solution: sort
the values and take the cut that maximises the between-group sum of squares (Fisher, "On
grouping for maximum homogeneity", JASA 53(284), 1958), in O(N log N) and without seeds.

Ashman's D (Ashman, Bird and Zepf, "Detecting bimodality in astronomical datasets", Astronomical
Journal 108, 1994), ``sqrt(2) |m_1 - m_2| / sqrt(s_1^2 + s_2^2)``, says how well separated the
groups are: the two halves of one Gaussian give 2.65; two Gaussians show a dip between them from
D > 2 and no overlap to speak of from about 4.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ashman_d", "split_groups", "two_means_1d"]


def two_means_1d(t: np.ndarray) -> np.ndarray:
    """Exact 2-means split of 1-D values ``t`` (N,), N >= 2: True marks the upper group (N,) bool."""
    t = np.asarray(t, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    s = t[order] - t.mean()  # centred: the between-group sum of squares is then c^2/k + c^2/(n-k)
    n = len(s)
    k = np.arange(1, n)  # size of the lower group
    lower_sum = np.cumsum(s)[:-1]
    between = lower_sum**2 / k + lower_sum**2 / (n - k)  # the upper sum is -lower_sum
    cut = int(np.argmax(between)) + 1
    upper = np.zeros(n, dtype=bool)
    upper[order[cut:]] = True
    return upper


def ashman_d(a: np.ndarray, b: np.ndarray) -> float:
    """Ashman's D >= 0 of two non-empty groups of 1-D values (0 when neither has any spread)."""
    spread = np.sqrt(np.var(a) + np.var(b))
    return float(np.sqrt(2.0) * abs(np.mean(a) - np.mean(b)) / spread) if spread > 0 else 0.0


def split_groups(t: np.ndarray) -> tuple[np.ndarray, float]:
    """The exact 2-means split of ``t`` (N,) and its Ashman's D: ``(upper mask (N,), D)``."""
    upper = two_means_1d(t)
    return upper, ashman_d(t[upper], t[~upper])
