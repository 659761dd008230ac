"""Reports in Markdown + HTML, and their figures."""

from poisonlab.reporting.document import Report
from poisonlab.reporting.plots import (
    confusion_matrix_png,
    curves_png,
    heatmap_png,
    image_grid_png,
    score_histogram_png,
)

__all__ = [
    "Report",
    "confusion_matrix_png",
    "curves_png",
    "heatmap_png",
    "image_grid_png",
    "score_histogram_png",
]
