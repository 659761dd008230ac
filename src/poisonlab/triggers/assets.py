"""Draw the trigger images shipped in ``poisonlab/assets`` (our own drawings, made with Pillow).

* ``alert.png``: a 64x64 RGBA warning sign (yellow triangle, dark rim, exclamation mark) on a
  transparent background, the kind of icon used by image-insertion backdoors.
* ``htbd.png``: a 32x32 RGB patch of 8x8 cells in saturated colours, no cell equal to its left or
  upper neighbour, drawn from a seeded generator: a high-contrast patch of the kind used by
  hidden-trigger backdoors.

Regenerate both with ``python -m poisonlab.triggers.assets [--out-dir DIR]``; the drawing is
deterministic, so the shipped files can be checked against a fresh rendering.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from poisonlab.triggers._paths import SHIPPED_TRIGGERS, default_trigger_path

_SUPERSAMPLE = 4  # draw large and downsample for smooth edges
_YELLOW = (255, 204, 0, 255)
_DARK = (24, 24, 24, 255)
_PALETTE = np.array(
    [
        (255, 0, 0),
        (0, 200, 0),
        (0, 64, 255),
        (255, 255, 0),
        (255, 0, 255),
        (0, 255, 255),
        (255, 255, 255),
        (0, 0, 0),
        (255, 128, 0),
    ],
    dtype=np.uint8,
)


def _triangle(side: float, inset: float) -> list[tuple[float, float]]:
    """Vertices of an upward equilateral-ish triangle in a ``side`` square, ``inset`` from it."""
    return [(side / 2, inset), (side - inset, side - inset * 1.3), (inset, side - inset * 1.3)]


def draw_alert(size: int = 64) -> Image.Image:
    """Draw a warning sign: a yellow triangle with a dark rim and a dark exclamation mark.

    Parameters
    ----------
    size : int, default 64
        Width and height of the returned image in pixels.

    Returns
    -------
    PIL.Image.Image
        ``size x size`` RGBA image, transparent outside the triangle.
    """
    big = size * _SUPERSAMPLE
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.polygon(_triangle(big, big * 0.03), fill=_DARK)
    draw.polygon(_triangle(big, big * 0.14), fill=_YELLOW)
    centre, top, bottom = big / 2, big * 0.36, big * 0.66
    half_top, half_bottom = big * 0.055, big * 0.035
    draw.polygon(
        [
            (centre - half_top, top),
            (centre + half_top, top),
            (centre + half_bottom, bottom),
            (centre - half_bottom, bottom),
        ],
        fill=_DARK,
    )
    dot = big * 0.05
    draw.ellipse([centre - dot, big * 0.74 - dot, centre + dot, big * 0.74 + dot], fill=_DARK)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def _checker_cells(cells: int, rng: np.random.Generator) -> np.ndarray:
    """Palette indices for a ``cells x cells`` grid, each differing from its left/upper cell."""
    grid = np.zeros((cells, cells), dtype=np.int64)
    for row in range(cells):
        for col in range(cells):
            banned = {grid[row, col - 1] if col else -1, grid[row - 1, col] if row else -1}
            allowed = [i for i in range(len(_PALETTE)) if i not in banned]
            grid[row, col] = allowed[int(rng.integers(len(allowed)))]
    return grid


def draw_htbd(size: int = 32, cells: int = 8, seed: int = 2017) -> Image.Image:
    """Draw a colourful, high-contrast random checker patch.

    Parameters
    ----------
    size : int, default 32
        Width and height in pixels (a multiple of ``cells``).
    cells : int, default 8
        Number of cells per side.
    seed : int, default 2017
        Seed of ``numpy.random.default_rng`` choosing the cell colours.

    Returns
    -------
    PIL.Image.Image
        ``size x size`` RGB image.
    """
    if size % cells:
        raise ValueError(f"size: expected a multiple of cells={cells}, got {size}")
    grid = _checker_cells(cells, np.random.default_rng(seed))
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    step = size // cells
    for row in range(cells):
        for col in range(cells):
            box = [col * step, row * step, (col + 1) * step - 1, (row + 1) * step - 1]
            draw.rectangle(box, fill=tuple(int(v) for v in _PALETTE[grid[row, col]]))
    return image


DRAWERS = {"alert": draw_alert, "htbd": draw_htbd}


def regenerate(out_dir: str | Path | None = None) -> dict[str, Path]:
    """Draw every shipped trigger and save it as ``<out_dir>/<name>.png``.

    Parameters
    ----------
    out_dir : str or pathlib.Path, optional
        Target folder (created if needed); default the package's ``poisonlab/assets``.

    Returns
    -------
    dict of str to pathlib.Path
        The written file for each name in :data:`SHIPPED_TRIGGERS`.
    """
    written = {}
    for name in SHIPPED_TRIGGERS:
        target = default_trigger_path(name) if out_dir is None else Path(out_dir) / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        DRAWERS[name]().save(target, optimize=True)
        written[name] = target
    return written


def main(argv: list[str] | None = None) -> None:
    """Command line entry: ``python -m poisonlab.triggers.assets [--out-dir DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=None, help="folder to write to (default: poisonlab/assets)")
    args = parser.parse_args(argv)
    for name, path in regenerate(args.out_dir).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
