"""The rich console the commands print to."""

from __future__ import annotations

import sys

from rich.console import Console


def make_console() -> Console:
    """A terminal-width console on a TTY; 160 columns when piped (logs, CI), where rich would
    otherwise assume 80 and squeeze tables of ids and paths into ellipses."""
    return Console() if sys.stdout.isatty() else Console(width=160)
