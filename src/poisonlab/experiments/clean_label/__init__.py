"""The clean-label attack benchmark of Schwarzschild et al. 2021 (``poisonlab clean-label``)."""

from poisonlab.experiments.clean_label.config import CleanLabelConfig, load_clean_label, parse_clean_label
from poisonlab.experiments.clean_label.records import CleanLabelResult
from poisonlab.experiments.clean_label.report import summarize, write_clean_label
from poisonlab.experiments.clean_label.run import run_clean_label
from poisonlab.experiments.clean_label.victim import benchmark_data, victim_model

__all__ = [
    "CleanLabelConfig",
    "CleanLabelResult",
    "benchmark_data",
    "load_clean_label",
    "parse_clean_label",
    "run_clean_label",
    "summarize",
    "victim_model",
    "write_clean_label",
]
