"""The detection benchmark (``poisonlab bench detection``): seeded poisoning cases, a model
trained from scratch on each, every detector scored with its frozen defaults.

:mod:`.config` (the grid), :mod:`.cases` (cells and their seeded cases), :mod:`.run` (the
runner, resumable), :mod:`.records` (provenance, per-detector figures, the output folder) and
:mod:`.report` (``report.md``).
"""

from poisonlab.experiments.detection.cases import Case, Cell, grid, make_case
from poisonlab.experiments.detection.config import DetectionConfig, load_detection, parse_detection
from poisonlab.experiments.detection.records import ResultsStore, score_record, tpr_at_fpr
from poisonlab.experiments.detection.report import write_report
from poisonlab.experiments.detection.run import run_cell, run_detection

__all__ = [
    "Case",
    "Cell",
    "DetectionConfig",
    "ResultsStore",
    "grid",
    "load_detection",
    "make_case",
    "parse_detection",
    "run_cell",
    "run_detection",
    "score_record",
    "tpr_at_fpr",
    "write_report",
]
