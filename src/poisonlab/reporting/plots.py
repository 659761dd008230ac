"""Figures for reports (matplotlib, headless Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def confusion_matrix_png(
    matrix: np.ndarray,
    class_names: list[str] | tuple[str, ...],
    path: str | Path,
    title: str = "Confusion matrix",
) -> Path:
    """Heatmap of a (K, K) count matrix (rows = true class, columns = predicted), counts annotated."""
    matrix = np.asarray(matrix)
    k = matrix.shape[0]
    size = max(4.0, 0.55 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    thresh = matrix.max() / 2 if matrix.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(int(matrix[i, j])),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if matrix[i, j] > thresh else "black",
            )
    fig.tight_layout()
    return _save(fig, path)


def image_grid_png(
    images: np.ndarray,
    path: str | Path,
    *,
    titles: list[str] | None = None,
    cols: int = 10,
    scale: float = 1.2,
) -> Path:
    """Grid of uint8 images (N, H, W, C) with optional titles; an empty input draws a note."""
    n = len(images)
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * scale, rows * scale * 1.15), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            img = images[i]
            ax.imshow(
                img[..., 0] if img.shape[-1] == 1 else img,
                cmap="gray" if img.shape[-1] == 1 else None,
                interpolation="nearest",
                vmin=0,
                vmax=255,
            )
            if titles:
                ax.set_title(titles[i], fontsize=7)
    if n == 0:
        axes.flat[0].text(0.5, 0.5, "no images", ha="center", va="center")
    fig.tight_layout()
    return _save(fig, path)


def curves_png(
    series: dict[str, list[float]],
    path: str | Path,
    *,
    xlabel: str = "epoch",
    ylabel: str = "accuracy",
    title: str = "",
) -> Path:
    """Line plot of named series over 1..len (missing values as None are skipped)."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, values in series.items():
        xs = [i + 1 for i, v in enumerate(values) if v is not None]
        ys = [v for v in values if v is not None]
        ax.plot(xs, ys, marker="o", ms=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def heatmap_png(
    matrix: np.ndarray,
    path: str | Path,
    *,
    row_labels: list[str],
    col_labels: list[str],
    title: str = "",
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap: str = "viridis",
) -> Path:
    """Annotated heatmap of a float matrix (rows x cols); NaN cells are drawn grey and marked "n/a"."""
    m = np.asarray(matrix, dtype=float)
    if m.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"matrix shape {m.shape} does not match {len(row_labels)}x{len(col_labels)} labels")
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(col_labels), 1.2 + 0.42 * len(row_labels)))
    colormap = plt.get_cmap(cmap).with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(m), cmap=colormap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    mid = (vmin + vmax) / 2
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            v = m[i, j]
            text = "n/a" if np.isnan(v) else f"{v:.2f}"
            color = "black" if np.isnan(v) or v > mid else "white"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(im, ax=ax, fraction=0.04)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def score_histogram_png(
    scores: np.ndarray, path: str | Path, *, poison_mask: np.ndarray | None = None, title: str = ""
) -> Path:
    """Histogram of suspicion scores, split into clean and poison when the truth is known."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    draw_score_histogram(ax, scores, poison_mask=poison_mask)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


#: bottom of the log count axis: below 1, so that a bin of a single sample is a visible bar
_LOG_FLOOR = 0.5


def draw_score_histogram(
    ax: plt.Axes, scores: np.ndarray, *, poison_mask: np.ndarray | None = None
) -> plt.Axes:
    """Draw the score histogram on ``ax``: counts on a log axis, poison drawn over clean.

    The log axis keeps 25 poisons visible beside 40,000 clean samples, but matplotlib's automatic
    limits start it at the smallest count, which leaves a small poison bar a sliver at the
    bottom (or nothing, for a single poisoned sample). The axis starts at 0.5 instead, the
    poison is drawn last, opaque and outlined, and the legend gives both counts.

    Parameters
    ----------
    ax : matplotlib Axes
        Where to draw.
    scores : np.ndarray
        (N,) suspicion scores, higher = more suspicious.
    poison_mask : np.ndarray, optional
        (N,) bool ground truth; without it one histogram of all scores.

    Returns
    -------
    matplotlib Axes
    """
    s = np.asarray(scores, dtype=float)
    bins = np.histogram_bin_edges(s, bins=50) if s.size else 10
    if poison_mask is None:
        ax.hist(s, bins=bins, color="#4c72b0")
    else:
        mask = np.asarray(poison_mask, dtype=bool)
        clean, poison = s[~mask], s[mask]
        ax.hist(clean, bins=bins, alpha=0.6, label=f"clean ({clean.size})", color="#4c72b0")
        ax.hist(
            poison,
            bins=bins,
            alpha=0.9,
            label=f"poison ({poison.size})",
            color="#c44e52",
            edgecolor="#7a1f22",
            linewidth=0.8,
            zorder=3,
        )
        ax.legend()
    ax.set_yscale("log")
    ax.set_ylim(bottom=_LOG_FLOOR)
    ax.set_xlabel("suspicion score (higher = more suspicious)")
    ax.set_ylabel("samples (log scale)")
    return ax


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
