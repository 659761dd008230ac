"""What every benchmark records about the machine: CPU model, library versions, threads."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else the platform's machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def environment() -> dict:
    """Platform, Python/numpy/torch/scikit-learn/ART versions, CPU model and count, torch threads."""
    import sklearn
    import torch

    try:
        import art

        art_version = art.__version__
    except ImportError:  # ART is a benchmark-only dependency
        art_version = None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "scikit-learn": sklearn.__version__,
        "art": art_version,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
