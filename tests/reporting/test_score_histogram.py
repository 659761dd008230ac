"""The score histogram keeps a small poison group visible beside a large clean one."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from poisonlab.reporting.plots import draw_score_histogram, score_histogram_png  # noqa: E402


def _visible_fraction(ax, patch) -> float:
    """Height of a bar in axes units (0..1 of the plot's height) as drawn on the log axis."""
    x, y = patch.get_x(), patch.get_height()
    bottom = ax.transLimits.transform(ax.transScale.transform((x, ax.get_ylim()[0])))[1]
    top = ax.transLimits.transform(ax.transScale.transform((x, max(y, 1e-12))))[1]
    return top - bottom


@pytest.mark.parametrize("n_poison", [1, 25])
def test_the_poison_bar_is_visible_beside_40000_clean_samples(n_poison):
    # provenance-like scores: every sample of a source group shares its group's score
    scores = np.concatenate([np.zeros(40000), np.full(n_poison, 0.024)])
    mask = np.zeros(scores.size, dtype=bool)
    mask[40000:] = True
    fig, ax = plt.subplots()
    try:
        draw_score_histogram(ax, scores, poison_mask=mask)
        assert ax.get_ylim()[0] < 1  # a single sample is a bar, not the axis' floor
        poison_bars = [p for p in ax.containers[1] if p.get_height() > 0]
        assert sum(p.get_height() for p in poison_bars) == n_poison
        for bar in poison_bars:
            assert _visible_fraction(ax, bar) > 0.05
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == ["clean (40000)", f"poison ({n_poison})"]
        assert ax.containers[1][0].get_zorder() > ax.containers[0][0].get_zorder()  # drawn over clean
    finally:
        plt.close(fig)


def test_the_png_is_written(tmp_path):
    scores = np.r_[np.zeros(100), np.ones(2)]
    mask = np.r_[np.zeros(100, bool), np.ones(2, bool)]
    path = score_histogram_png(scores, tmp_path / "h.png", poison_mask=mask, title="provenance")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert score_histogram_png(scores, tmp_path / "all.png").is_file()
