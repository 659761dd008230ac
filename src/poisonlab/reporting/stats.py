"""Intervals for the figures the reports and docs print, and whether a difference is real.

Two kinds of figures, two kinds of intervals (95 % unless said):

- **A continuous metric over seeds** (clean accuracy of the models of 5 seeds, an F1 over 5
  matrices): the mean, the *sample* standard deviation (``ddof=1``) and the Student-t interval
  of the mean, ``mean +- t(0.975, n-1) * s / sqrt(n)`` (Student 1908). One value has no spread:
  its std and interval are None ("single run"), never 0.
- **A rate with its count** (44 of the 1,000 test airplanes predicted bird, 4 successes in 10
  trials): the Wilson score interval (Wilson 1927), which keeps its coverage for small n and
  rates near 0 or 1 where the normal approximation fails (Brown, Cai and DasGupta, Statistical
  Science 2001). Wilson, not Clopper-Pearson: Clopper-Pearson is conservative (wider than 95 %).

Differences: :func:`rate_difference` is Newcombe's hybrid score interval for the difference of
two independent proportions (Newcombe, Statistics in Medicine 1998, method 10), built from the
two Wilson intervals; :func:`mean_difference` is Welch's t interval for the difference of two
means with unequal variances (Welch 1947); :func:`paired_difference` the Student-t interval of
the mean of per-seed differences, for two figures measured on the same seeds (seed k's poisoned
model against seed k's own clean model). A difference "is outside the interval" when that
interval excludes 0 (:attr:`Difference.excludes_zero`). Two models scored on the *same* test
images are paired, not independent; without per-image predictions the independent-sample
interval is what can be computed, and it is wider than a paired one would usually be.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

__all__ = [
    "Difference",
    "MeanInterval",
    "RateInterval",
    "describe_difference",
    "format_mean",
    "format_rate",
    "mean_difference",
    "mean_interval",
    "paired_difference",
    "rate_difference",
    "rate_interval",
    "wilson_interval",
]


def _check_level(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return float(level)


def _z(level: float) -> float:
    return float(_st.norm.ppf(0.5 + _check_level(level) / 2))


@dataclass(frozen=True)
class MeanInterval:
    """Mean of ``n`` values with its sample std and Student-t interval (None for ``n == 1``)."""

    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None
    level: float = 0.95

    @property
    def single(self) -> bool:
        """One value: no spread, no interval."""
        return self.n == 1

    def contains(self, value: float) -> bool | None:
        """Whether ``value`` lies inside the interval; None for a single run."""
        if self.low is None or self.high is None:
            return None
        return self.low <= value <= self.high

    def to_dict(self) -> dict[str, float | int | str | None]:
        """JSON-ready: ``n``, ``mean``, ``std`` (ddof=1), ``ci_low``, ``ci_high``, ``interval``."""
        return {
            "n": self.n,
            "mean": self.mean,
            "std": self.std,
            "ci_low": self.low,
            "ci_high": self.high,
            "interval": "single run" if self.single else f"student-t {self.level:.0%}",
        }


def mean_interval(
    values: Sequence[float], level: float = 0.95, bounds: tuple[float, float] | None = None
) -> MeanInterval:
    """Mean, sample std and Student-t interval of ``values`` (finite floats, at least one).

    ``bounds`` is the range the quantity cannot leave (``(0, 1)`` for a rate): the t interval is
    symmetric and, over 2-5 seeds, often wider than the range (two seeds at 0.2 and 0.8 give
    -3.3 to 4.3); it is cut to the range, which keeps every value it excluded excluded.

    Raises
    ------
    ValueError
        No values, a NaN / infinite one, or bounds with low > high.
    """
    if bounds is not None and not bounds[0] <= bounds[1]:
        raise ValueError(f"bounds must be (low, high) with low <= high, got {bounds}")
    arr = np.asarray(values, dtype=float).ravel()
    level = _check_level(level)
    if arr.size == 0:
        raise ValueError("mean_interval needs at least one value, got none")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"mean_interval needs finite values, got {arr.tolist()}")
    mean = float(arr.mean())
    if arr.size == 1:
        return MeanInterval(n=1, mean=mean, std=None, low=None, high=None, level=level)
    std = float(arr.std(ddof=1))
    half = float(_st.t.ppf(0.5 + level / 2, arr.size - 1)) * std / math.sqrt(arr.size)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return MeanInterval(n=int(arr.size), mean=mean, std=std, low=low, high=high, level=level)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``successes / n`` (both in [0, 1]); ``(0, 1)`` when ``n == 0``.

    Raises
    ------
    ValueError
        ``n < 0`` or ``successes`` outside ``[0, n]``.
    """
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"wilson_interval needs 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return (0.0, 1.0)
    z = _z(level)
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    # the exact ends: 0 successes has lower end 0, n successes upper end 1 (rounding aside)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


@dataclass(frozen=True)
class RateInterval:
    """``successes`` of ``n`` with the rate and its Wilson interval."""

    successes: int
    n: int
    low: float
    high: float
    level: float = 0.95

    @property
    def rate(self) -> float | None:
        return None if self.n == 0 else self.successes / self.n

    def to_dict(self) -> dict[str, float | int | str | None]:
        """JSON-ready: ``successes``, ``n``, ``rate``, ``ci_low``, ``ci_high``, ``interval``."""
        return {
            "successes": self.successes,
            "n": self.n,
            "rate": self.rate,
            "ci_low": self.low,
            "ci_high": self.high,
            "interval": f"wilson {self.level:.0%}",
        }


def rate_interval(successes: int, n: int, level: float = 0.95) -> RateInterval:
    """:class:`RateInterval` of ``successes / n`` (see :func:`wilson_interval`)."""
    low, high = wilson_interval(int(successes), int(n), level)
    return RateInterval(successes=int(successes), n=int(n), low=low, high=high, level=level)


@dataclass(frozen=True)
class Difference:
    """``estimate = a - b`` with its interval; ``excludes_zero``: the difference is outside the
    interval of "no difference" at this level."""

    estimate: float
    low: float
    high: float
    method: str
    level: float = 0.95

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def rate_difference(
    a_successes: int, a_n: int, b_successes: int, b_n: int, level: float = 0.95
) -> Difference:
    """Newcombe's hybrid score interval of ``a_successes / a_n - b_successes / b_n``.

    Both counts must have ``n >= 1``; the two proportions are taken as independent.
    """
    if a_n < 1 or b_n < 1:
        raise ValueError(f"rate_difference needs n >= 1 on both sides, got {a_n} and {b_n}")
    pa, pb = a_successes / a_n, b_successes / b_n
    la, ua = wilson_interval(a_successes, a_n, level)
    lb, ub = wilson_interval(b_successes, b_n, level)
    d = pa - pb
    low = d - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2)
    high = d + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)
    return Difference(estimate=d, low=low, high=high, method="newcombe", level=level)


def mean_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Difference:
    """Welch's t interval of ``mean(a) - mean(b)``; each side needs at least two values.

    Raises
    ------
    ValueError
        A side with fewer than two values (no variance to estimate), or both variances zero.
    """
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.size < 2 or xb.size < 2:
        raise ValueError(f"mean_difference needs >= 2 values per side, got {xa.size} and {xb.size}")
    va, vb = xa.var(ddof=1) / xa.size, xb.var(ddof=1) / xb.size
    if va + vb == 0:
        raise ValueError("mean_difference: both sides have zero variance; no interval")
    dof = (va + vb) ** 2 / (va**2 / (xa.size - 1) + vb**2 / (xb.size - 1))
    half = float(_st.t.ppf(0.5 + _check_level(level) / 2, dof)) * math.sqrt(va + vb)
    d = float(xa.mean() - xb.mean())
    return Difference(estimate=d, low=d - half, high=d + half, method="welch", level=level)


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Difference:
    """Student-t interval of the mean of ``a[i] - b[i]`` (paired samples, e.g. one pair per seed).

    Pairing removes what the two sides share (seed k's poisoned model is fine-tuned from seed k's
    clean model), so the interval is usually narrower than Welch's on the same values.

    Raises
    ------
    ValueError
        Sides of different lengths, fewer than two pairs, or non-finite values.
    """
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.shape != xb.shape or xa.ndim != 1:
        raise ValueError(
            f"paired_difference needs two 1-d sides of one length, got {xa.shape} and {xb.shape}"
        )
    if xa.size < 2:
        raise ValueError(f"paired_difference needs >= 2 pairs, got {xa.size}")
    stat = mean_interval(xa - xb, level)
    return Difference(estimate=stat.mean, low=stat.low, high=stat.high, method="paired t", level=level)


def format_mean(stat: MeanInterval, digits: int = 4) -> str:
    """``0.7757 ± 0.0063 [0.7600, 0.7913]`` (mean ± sample std [t interval]); one run: ``0.7831``."""
    if stat.single:
        return f"{stat.mean:.{digits}f}"
    return f"{stat.mean:.{digits}f} ± {stat.std:.{digits}f} [{stat.low:.{digits}f}, {stat.high:.{digits}f}]"


def format_rate(stat: RateInterval, digits: int = 1) -> str:
    """``44/1000 = 4.4% [3.3, 5.9]`` (the Wilson interval in percent)."""
    if stat.n == 0:
        return f"0/0 [{100 * stat.low:.{digits}f}, {100 * stat.high:.{digits}f}]"
    return (
        f"{stat.successes}/{stat.n} = {100 * stat.successes / stat.n:.{digits}f}% "
        f"[{100 * stat.low:.{digits}f}, {100 * stat.high:.{digits}f}]"
    )


def describe_difference(
    diff: Difference, *, scale: float = 100.0, unit: str = "points", digits: int = 1
) -> str:
    """``+2.2 points (95% Newcombe interval +0.6 to +3.8, excludes 0)``; ``includes 0`` when the
    difference is inside the interval of no difference."""
    verdict = "excludes 0" if diff.excludes_zero else "includes 0"
    return (
        f"{scale * diff.estimate:+.{digits}f} {unit} ({diff.level:.0%} {diff.method.capitalize()} interval "
        f"{scale * diff.low:+.{digits}f} to {scale * diff.high:+.{digits}f}, {verdict})"
    )
