"""The chapter's trigger figures (4.11-4.13) as an experiment: triggered canvas, masks, distances.

``poisonlab figures CONFIG --out DIR`` reads a config (:mod:`~.config`), applies each figure's
registered trigger to a blank canvas and to photos (:mod:`~.run`), measures what changed
(:mod:`~.measure`) and writes PNGs, ``results.json`` and ``figures.md`` (:mod:`~.report`).
"""

from poisonlab.experiments.figures.config import FiguresConfig, load_figures, parse_figures
from poisonlab.experiments.figures.measure import Change, measure_change
from poisonlab.experiments.figures.report import write_figures
from poisonlab.experiments.figures.run import FiguresResult, blank_canvas, run_figures

__all__ = [
    "Change",
    "FiguresConfig",
    "FiguresResult",
    "blank_canvas",
    "load_figures",
    "measure_change",
    "parse_figures",
    "run_figures",
    "write_figures",
]
