"""Declarative poisoning experiments: configs, the runner and its report."""

from poisonlab.experiments.config import ExperimentConfig, load_experiment, parse_experiment
from poisonlab.experiments.runner import ExperimentResult, run_experiment

__all__ = ["ExperimentConfig", "ExperimentResult", "load_experiment", "parse_experiment", "run_experiment"]
