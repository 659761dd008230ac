"""The small prose and number formatters every generated results page shares.

The pages under ``docs/results`` (chapter, clean_label, defenses, detection, service) are filled
in by their generators from raw records; the way they wrap a paragraph, print a share as a
percent, a range of values, a count with its Wilson interval or a list of names is written once
here. Where two pages print the same thing differently (decimals, the first-line indent of a
wrapped item, a space before ``%``) the difference is a parameter: each call site passes what its
page has always printed, so the pages stay as they are.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable

from poisonlab.reporting.stats import Difference, RateInterval, rate_interval

__all__ = [
    "WIDTH",
    "and_list",
    "diff_points",
    "duration",
    "k_of_n",
    "num",
    "para",
    "pct",
    "pct_interval",
    "points",
    "rate_cell",
    "rate_pct",
    "span",
    "wilson_pct",
]

#: the line width of every results page
WIDTH = 100
_NBSP = "\u00a0"


def para(
    *pieces: str,
    indent: str = "",
    first: str = "",
    width: int = WIDTH,
    keep_percent: bool = True,
    hyphens: bool = False,
) -> str:
    """One Markdown paragraph: ``pieces`` stripped, joined by spaces and wrapped.

    Parameters
    ----------
    *pieces : str
        The paragraph's parts; blank ones are dropped.
    indent : str
        What starts every line after the first (``"  "`` continues a list item).
    first : str
        What starts the first line (``"1. "`` for a numbered item, ``"> "`` for a quote).
    width : int
        The widest line, indents included (a word longer than that is not broken).
    keep_percent : bool
        Keep a number and its ``" %"`` on one line.
    hyphens : bool
        Allow a line break after a hyphen inside a word.

    Returns
    -------
    str
        The wrapped lines joined by newlines (``""`` for no text).
    """
    text = " ".join(p.strip() for p in pieces if p.strip())
    if keep_percent:
        # textwrap splits only at ASCII whitespace, so a no-break space glues "10" to its "%"
        text = text.replace(" %", _NBSP + "%")
    out = textwrap.fill(
        text,
        width=width,
        initial_indent=first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=hyphens,
    )
    return out.replace(_NBSP, " ") if keep_percent else out


def pct(share: float | None, digits: int | None = None, *, sep: str = " ") -> str:
    """A share in percent: ``0.005`` -> ``0.5 %``.

    Parameters
    ----------
    share : float or None
        The share (1.0 is 100 %); None prints ``-``.
    digits : int or None
        Decimals; None prints the shortest form (``:g``: ``0.5 %``, ``10 %``).
    sep : str
        What stands between the number and ``%`` (``""``: ``12.5%``, for a table cell).

    Returns
    -------
    str
    """
    if share is None:
        return "-"
    spec = "g" if digits is None else f".{digits}f"
    return f"{format(100 * share, spec)}{sep}%"


def pct_interval(low: float, high: float, digits: int = 2) -> str:
    """An interval of shares in percent: ``(0.0017, 0.0082)`` -> ``0.17-0.82 %``.

    Parameters
    ----------
    low, high : float
        The interval's ends, as shares.
    digits : int
        Decimals of both ends.

    Returns
    -------
    str
        Both ends, even where they print alike.
    """
    return f"{100 * low:.{digits}f}-{100 * high:.{digits}f} %"


def wilson_pct(successes: int, n: int, digits: int = 2) -> str:
    """``Wilson 95 %: 0.17-0.82 %``: the Wilson interval of ``successes`` of ``n``, in percent.

    Parameters
    ----------
    successes, n : int
        The count and the number of trials (:func:`~poisonlab.reporting.stats.rate_interval`).
    digits : int
        Decimals of both ends.

    Returns
    -------
    str
    """
    r = rate_interval(successes, n)
    return f"Wilson 95 %: {pct_interval(r.low, r.high, digits)}"


def rate_pct(successes: int, n: int, digits: int = 2, *, empty: str = "-") -> str:
    """``0.38 %, Wilson 95 %: 0.17-0.82 %``: a rate in percent and its Wilson interval.

    Parameters
    ----------
    successes, n : int
        The count and the number of trials.
    digits : int
        Decimals of the rate and of the interval's ends.
    empty : str
        The text when ``n`` is 0 (there is no rate).

    Returns
    -------
    str
    """
    if n == 0:
        return empty
    return f"{pct(successes / n, digits)}, {wilson_pct(successes, n, digits)}"


def rate_cell(stat: RateInterval, digits: int = 2) -> str:
    """``57/60 = 0.95 [0.86, 0.98]``: a count, its rate and its Wilson 95 % interval.

    Parameters
    ----------
    stat : RateInterval
        The count with its interval (``stat.n == 0`` prints ``-``).
    digits : int
        Decimals of the rate and of the interval's ends.

    Returns
    -------
    str
    """
    if stat.n == 0:
        return "-"
    return (
        f"{stat.successes:,}/{stat.n:,} = {stat.successes / stat.n:.{digits}f} "
        f"[{stat.low:.{digits}f}, {stat.high:.{digits}f}]"
    )


def num(value: float | None, digits: int = 2, *, signed: bool = False, missing: str = "-") -> str:
    """A number at ``digits`` decimals, or ``missing`` for None.

    Parameters
    ----------
    value : float or None
        The number.
    digits : int
        Decimals.
    signed : bool
        Print ``+`` before a positive number.
    missing : str
        The text for None (``-`` in a table, ``n/a`` in a sentence).

    Returns
    -------
    str
    """
    if value is None:
        return missing
    return format(value, f"{'+' if signed else ''}.{digits}f")


def span(values: Iterable[float], digits: int = 2, *, signed: bool = False, spec: str | None = None) -> str:
    """The range of ``values``: ``0.25-0.50``, one figure when both ends print alike.

    Parameters
    ----------
    values : iterable of float
        The values (their order does not matter); none prints ``-``.
    digits : int
        Decimals of both ends.
    signed : bool
        Print signs and join the ends with ``to`` (``-0.8 to +0.3``), since a ``-`` between two
        signed numbers reads as a minus.
    spec : str or None
        A format spec that replaces ``digits`` (``",.1f"``: ``1,709.0``; ``""``: the value as
        ``str`` prints it).

    Returns
    -------
    str
    """
    vals = list(values)
    if not vals:
        return "-"
    form = ("+" if signed else "") + (f".{digits}f" if spec is None else spec)
    lo, hi = format(min(vals), form), format(max(vals), form)
    if lo == hi:
        return lo
    return f"{lo} to {hi}" if signed else f"{lo}-{hi}"


def points(share: float, digits: int = 1) -> str:
    """A signed difference of two shares in percentage points: ``-0.038`` -> ``-3.8 points``.

    Parameters
    ----------
    share : float
        The difference, as a share.
    digits : int
        Decimals.

    Returns
    -------
    str
    """
    return f"{100 * share:+.{digits}f} points"


def diff_points(diff: Difference, digits: int = 1) -> str:
    """``-51.4 points [-66.6, -33.3]``: a difference of two rates and its interval, compactly.

    Parameters
    ----------
    diff : Difference
        The estimate and its interval, as shares.
    digits : int
        Decimals of the three figures.

    Returns
    -------
    str
    """
    return f"{points(diff.estimate, digits)} [{100 * diff.low:+.{digits}f}, {100 * diff.high:+.{digits}f}]"


def and_list(items: Iterable[str], empty: str = "none") -> str:
    """The items in a sentence: ``a``, ``a and b``, ``a, b and c``.

    Parameters
    ----------
    items : iterable of str
        The items, in the order to print them.
    empty : str
        The text for no item.

    Returns
    -------
    str
    """
    got = list(items)
    if not got:
        return empty
    return got[0] if len(got) == 1 else ", ".join(got[:-1]) + " and " + got[-1]


def k_of_n(k: int, n: int) -> str:
    """``all 5`` when ``k`` is ``n``, else ``3 of the 5``; of two, ``both`` and ``neither of
    the 2``; ``none of the 5`` for 0.

    Parameters
    ----------
    k, n : int
        The part and the whole.

    Returns
    -------
    str
    """
    if n == 2 and k in (0, 2):
        return "both" if k == 2 else "neither of the 2"
    if k == 0 and n > 0:
        return f"none of the {n}"
    return f"all {n}" if k == n else f"{k} of the {n}"


def duration(seconds: float) -> str:
    """A wall time in minutes and seconds: ``1421.2`` -> ``23 min 41 s``, ``42`` -> ``42 s``.

    Parameters
    ----------
    seconds : float
        The time, rounded to whole seconds (half to even, as :func:`round` does).

    Returns
    -------
    str
    """
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"
