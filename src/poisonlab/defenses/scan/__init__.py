"""Screening one training set with several defenses at once, and the scan's report.

:func:`scan` (in :mod:`.runner`) builds one :class:`~poisonlab.defenses.context.ScanContext` per
scan, so every detector shares one forward pass of the model over the training set and one over
the trusted set; :mod:`.report` writes ``scan.json``, ``flags.npz`` and the Markdown/HTML report
(imported on its own: it pulls in matplotlib).
"""

from poisonlab.defenses.scan.records import MethodResult, ScanResult
from poisonlab.defenses.scan.runner import parse_method, read_scalar, scan
from poisonlab.defenses.scan.screen import (
    ANCHORED_METHODS,
    MIN_VOTES,
    SCREEN_METHODS,
    ScreenVerdict,
    combine,
    screen_methods,
)

__all__ = [
    "ANCHORED_METHODS",
    "MIN_VOTES",
    "SCREEN_METHODS",
    "MethodResult",
    "ScanResult",
    "ScreenVerdict",
    "combine",
    "screen_methods",
    "parse_method",
    "read_scalar",
    "scan",
]
