"""Screening one training set with several defenses at once, and the scan's report.

:func:`scan` (in :mod:`.runner`) builds one :class:`~poisonlab.defenses.context.ScanContext` per
scan, so every detector shares one forward pass of the model over the training set and one over
the trusted set; :mod:`.report` writes ``scan.json``, ``flags.npz`` and the Markdown/HTML report
(imported on its own: it pulls in matplotlib).
"""

from poisonlab.defenses.scan.runner import MethodResult, ScanResult, parse_method, read_scalar, scan

__all__ = ["MethodResult", "ScanResult", "parse_method", "read_scalar", "scan"]
