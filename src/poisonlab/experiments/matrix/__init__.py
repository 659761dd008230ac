"""Every attack against every defense, detection and mitigation measured (``poisonlab matrix``)."""

from poisonlab.experiments.matrix.config import MatrixConfig, load_matrix, parse_matrix
from poisonlab.experiments.matrix.records import AttackRow, MatrixResult
from poisonlab.experiments.matrix.report import write_matrix
from poisonlab.experiments.matrix.run import matrix_splits, run_matrix

__all__ = [
    "AttackRow",
    "MatrixConfig",
    "MatrixResult",
    "load_matrix",
    "matrix_splits",
    "parse_matrix",
    "run_matrix",
    "write_matrix",
]
