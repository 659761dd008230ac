"""A single poisoning run over seeds (``poisonlab run``) and the demo built from two of them."""

from poisonlab.experiments.single.config import ExperimentConfig, load_experiment, parse_experiment
from poisonlab.experiments.single.records import ExperimentResult, SeedRun
from poisonlab.experiments.single.report import write_experiment
from poisonlab.experiments.single.run import run_experiment

__all__ = [
    "ExperimentConfig",
    "ExperimentResult",
    "SeedRun",
    "load_experiment",
    "parse_experiment",
    "run_experiment",
    "write_experiment",
]
