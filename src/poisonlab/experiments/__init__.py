"""Poisoning experiments, one sub-package per kind, each with config / run / records / report.

- :mod:`~poisonlab.experiments.single`: one attack over seeds (``poisonlab run``) and the demo;
- :mod:`~poisonlab.experiments.matrix`: every attack against every defense (``poisonlab matrix``);
- :mod:`~poisonlab.experiments.clean_label`: the clean-label benchmark (``poisonlab clean-label``);
- :mod:`~poisonlab.experiments.common`: config blocks, cached models and measurements they share.

Runners return records; the report modules write them (the CLI calls both).
"""

from poisonlab.experiments.single.config import ExperimentConfig, load_experiment, parse_experiment
from poisonlab.experiments.single.records import ExperimentResult
from poisonlab.experiments.single.report import write_experiment
from poisonlab.experiments.single.run import run_experiment

__all__ = [
    "ExperimentConfig",
    "ExperimentResult",
    "load_experiment",
    "parse_experiment",
    "run_experiment",
    "write_experiment",
]
