"""Apply each figure's trigger to the blank canvas (and to the photos) and measure what changed.

Nothing here writes files: :func:`run_figures` returns a :class:`FiguresResult` that
:mod:`poisonlab.experiments.figures.report` writes.  A figure whose ``backdoor_path`` is missing,
a photo path that is missing or unreadable, and a figure that does not apply to the photos (a
trigger larger than them, a grey ``mode`` on RGB photos) are skipped with the reason recorded;
a figure that does not apply to its own canvas is a config error (``ValueError``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.experiments.figures.config import FiguresConfig, FigureSpec
from poisonlab.experiments.figures.measure import Change, measure_change
from poisonlab.triggers import TRIGGERS, get_trigger

__all__ = ["FigureRecord", "FiguresResult", "PhotoRecord", "blank_canvas", "run_figures"]


@dataclass(frozen=True)
class FigureRecord:
    """One figure: the trigger's full parameters, the triggered canvas and what changed in it.

    ``image`` is ``(H, W, C)`` float64 in ``[0, 1]`` (the canvas's dtype, as in the chapter).
    """

    spec: FigureSpec
    params: dict[str, Any]
    image: np.ndarray
    change: Change


@dataclass(frozen=True)
class PhotoRecord:
    """One photo at ``photo_size``: the original and, per figure name, the triggered copy.

    Images are ``(S, S, 3)`` ``uint8`` (the triggers act on the 8-bit levels directly, so no
    float round trip can move a pixel the trigger did not touch).
    """

    path: Path
    original: np.ndarray
    triggered: dict[str, np.ndarray] = field(default_factory=dict)
    changes: dict[str, Change] = field(default_factory=dict)


@dataclass(frozen=True)
class FiguresResult:
    """Everything a figures run produced; ``skipped`` lists ``{"what", "path", "reason"}`` dicts."""

    config: FiguresConfig
    canvas: np.ndarray
    figures: list[FigureRecord]
    photos: list[PhotoRecord]
    skipped: list[dict[str, str]]


def blank_canvas(cfg: FiguresConfig) -> np.ndarray:
    """The canvas as a one-image batch: ``(1, H, W, C)`` float64 filled with ``canvas.fill``."""
    c = cfg.canvas
    return np.full((1, c.height, c.width, c.channels), c.fill, dtype=np.float64)


def _bound_params(cfg: FiguresConfig, spec: FigureSpec) -> dict[str, Any]:
    """The overrides to bind: paths resolved, and the config's ``seed`` for seeded triggers."""
    params = cfg.trigger_params(spec)
    random = get_trigger(spec.trigger, **params).params.get("random", True)  # fixed insert: no draws
    accepts = TRIGGERS.lookup(spec.trigger).parameters
    if random and "seed" in accepts and "seed" not in params and "rng" not in params:
        params["seed"] = cfg.seed  # a random placement or key is reproducible from the config
    return params


def _missing_file(params: dict[str, Any]) -> str | None:
    """The ``backdoor_path`` of ``params`` when it names no file (else None)."""
    path = params.get("backdoor_path")
    return None if path is None or Path(path).is_file() else str(path)


def _figure(cfg: FiguresConfig, spec: FigureSpec, canvas: np.ndarray) -> FigureRecord:
    bound = get_trigger(spec.trigger, **_bound_params(cfg, spec))
    try:
        image = bound(canvas)[0]
    except ValueError as exc:
        raise ValueError(f"figure {spec.name!r} ({spec.trigger}) on the canvas: {exc}") from None
    return FigureRecord(spec, dict(bound.params), image, measure_change(canvas[0], image))


def _photo_files(cfg: FiguresConfig, skipped: list[dict[str, str]]) -> list[Path]:
    """Image files named by ``photos`` (folders listed), the missing ones added to ``skipped``."""
    from poisonlab.data.images import list_image_files

    files: list[Path] = []
    for path in cfg.photo_paths():
        if path.is_dir():
            found = list_image_files(path)
            if not found:
                skipped.append({"what": "photos", "path": str(path), "reason": "no image files in it"})
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            skipped.append({"what": "photos", "path": str(path), "reason": "not found"})
    return files


def _load_photos(cfg: FiguresConfig, skipped: list[dict[str, str]]) -> list[PhotoRecord]:
    from poisonlab.data.images import load_image_file

    records = []
    for path in _photo_files(cfg, skipped):
        try:
            records.append(PhotoRecord(path, load_image_file(path, size=cfg.photo_size)))
        except (OSError, ValueError) as exc:  # a corrupt photo is reported, the others still run
            skipped.append({"what": "photo", "path": str(path), "reason": str(exc)})
    return records


def _apply_to_photos(record: FigureRecord, photos: list[PhotoRecord], skipped: list[dict[str, str]]) -> None:
    if not photos:
        return
    batch = np.stack([p.original for p in photos])
    try:  # the very parameters the canvas was drawn with
        out = get_trigger(record.spec.trigger, **record.params)(batch)
    except ValueError as exc:
        what = f"figure {record.spec.name} on the photos"
        skipped.append({"what": what, "path": "", "reason": str(exc)})
        return
    for photo, image in zip(photos, out, strict=True):
        photo.triggered[record.spec.name] = image
        photo.changes[record.spec.name] = measure_change(photo.original, image)


def run_figures(cfg: FiguresConfig) -> FiguresResult:
    """Draw every figure of ``cfg`` on the blank canvas and on the photos, and measure them.

    Parameters
    ----------
    cfg : FiguresConfig

    Returns
    -------
    FiguresResult
        The canvas ``(H, W, C)`` float64, one :class:`FigureRecord` per figure that ran, one
        :class:`PhotoRecord` per photo read, and what was skipped and why.

    Raises
    ------
    ValueError
        When a figure's trigger does not apply to the canvas (does not fit, wrong ``mode``).
    """
    canvas = blank_canvas(cfg)
    skipped: list[dict[str, str]] = []
    figures = []
    for spec in cfg.figures:
        missing = _missing_file(cfg.trigger_params(spec))
        if missing is not None:
            skipped.append(
                {"what": f"figure {spec.name}", "path": missing, "reason": "trigger image not found"}
            )
            continue
        figures.append(_figure(cfg, spec, canvas))
    photos = _load_photos(cfg, skipped)
    for record in figures:
        _apply_to_photos(record, photos, skipped)
    return FiguresResult(cfg, canvas[0], figures, photos, skipped)
