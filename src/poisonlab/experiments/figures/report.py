"""Write a figures run: the PNGs, ``results.json`` (with provenance), ``figures.md`` and ``run.json``.

Layout of the output folder::

    canvas/<figure>.png          the triggered canvas at its exact size (32x32 for the chapter)
    canvas/<figure>-x<k>.png     the same, each pixel a k x k block (nearest neighbour, for viewing)
    canvas/<figure>-mask-x<k>.png  white where the trigger changed a pixel, black elsewhere
    photos/<nn>-<photo>/original[-x<k>].png and <figure>[-x<k>].png
    results.json, figures.md, run.json
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from poisonlab.experiments.figures.run import FigureRecord, FiguresResult, PhotoRecord
from poisonlab.provenance import claim_run_dir, run_record, write_run_json
from poisonlab.reporting.stamp import jsonable, result_provenance

__all__ = ["figures_record", "to_uint8", "upscale", "write_figures"]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` image as ``uint8``: floats in ``[0, 1]`` rounded from ``x * 255``."""
    if image.dtype == np.uint8:
        return image
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement: every pixel of ``(H, W, ...)`` becomes a ``factor`` square."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _save_png(image: np.ndarray, path: Path) -> str:
    """Save ``(H, W, C)`` (C 1 or 3) or ``(H, W)`` bool/uint8/float; return the file name relative to out."""
    pixels = to_uint8(image.astype(np.uint8) * 255 if image.dtype == bool else image)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path.name


def _save_pair(image: np.ndarray, folder: Path, stem: str, factor: int, out: Path) -> dict[str, str]:
    """The exact PNG and its enlarged copy; their paths relative to ``out``."""
    _save_png(image, folder / f"{stem}.png")
    _save_png(upscale(image, factor), folder / f"{stem}-x{factor}.png")
    rel = folder.relative_to(out).as_posix()
    return {"exact": f"{rel}/{stem}.png", "view": f"{rel}/{stem}-x{factor}.png"}


def _photo_folder(index: int, photo: PhotoRecord) -> str:
    """``03-cat-jpg``: numbered (two folders may hold ``cat.jpg``), the suffix kept (rb-14.webp)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in photo.path.name)
    return f"{index:02d}-{safe}"


def _write_images(result: FiguresResult, out: Path) -> tuple[dict[str, dict], list[dict[str, Any]]]:
    """Every PNG; returns the files of each figure and one entry per photo for results.json."""
    k = result.config.upscale
    files: dict[str, dict] = {}
    for fig in result.figures:
        files[fig.spec.name] = _save_pair(fig.image, out / "canvas", fig.spec.name, k, out)
        mask = out / "canvas" / f"{fig.spec.name}-mask-x{k}.png"
        _save_png(upscale(fig.change.mask, k), mask)
        files[fig.spec.name]["mask"] = f"canvas/{mask.name}"
    photos = []
    for i, photo in enumerate(result.photos):
        folder = out / "photos" / _photo_folder(i, photo)
        entry = {
            "path": str(photo.path),
            "files": {"original": _save_pair(photo.original, folder, "original", k, out)},
        }
        for name, image in photo.triggered.items():
            entry["files"][name] = _save_pair(image, folder, name, k, out)
        entry["changes"] = {name: c.as_dict() for name, c in photo.changes.items()}
        photos.append(entry)
    return files, photos


def _params_json(params: dict[str, Any]) -> dict[str, Any]:
    """Trigger parameters, JSON-ready, paths as strings (``jsonable`` would hide them)."""
    return jsonable({k: str(v) if isinstance(v, os.PathLike) else v for k, v in params.items()})


def _figure_entry(fig: FigureRecord, files: dict[str, str]) -> dict[str, Any]:
    return {
        "name": fig.spec.name,
        "caption": fig.spec.caption,
        "trigger": fig.spec.trigger,
        "params": _params_json(fig.params),
        "files": files,
        **fig.change.as_dict(),
    }


def figures_record(result: FiguresResult, files: dict[str, dict], photos: list[dict]) -> dict[str, Any]:
    """The ``results.json`` document: canvas, figures with their measures, photos, skipped, provenance."""
    cfg = result.config
    config = cfg.model_dump(mode="json", exclude={"base_dir"})
    params = {fig.spec.name: _params_json(fig.params) for fig in result.figures}
    return {
        "name": cfg.name,
        "description": cfg.description,
        "canvas": cfg.canvas.model_dump(),
        "figures": [_figure_entry(fig, files[fig.spec.name]) for fig in result.figures],
        "photos": {"size": cfg.photo_size, "items": photos},
        "skipped": result.skipped,
        "provenance": result_provenance(
            seeds=[cfg.seed], parameters={"config": config, "trigger_params": params}
        ),
    }


def _bbox_text(bbox: dict[str, int] | None) -> str:
    if bbox is None:
        return "none"
    return f"rows {bbox['top']}-{bbox['bottom']}, cols {bbox['left']}-{bbox['right']}"


def _markdown(doc: dict[str, Any]) -> str:
    """``figures.md``: one section per figure, a photo grid, the skipped inputs."""
    c = doc["canvas"]
    lines = [f"# {doc['name']}", "", doc["description"].strip(), ""]
    lines.append(f"Canvas: {c['height']}x{c['width']}x{c['channels']}, fill {c['fill']} (float64).")
    lines.append("Distances on the unit scale over all H x W x C values; L0 counts changed values.\n")
    lines.append("| figure | canvas | changed | trigger, parameters | pixels | values | box | L2 | Linf |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for f in doc["figures"]:
        shown = {k: v for k, v in f["params"].items() if k != "backdoor_path"}
        path = Path(str(f["params"].get("backdoor_path", ""))).name
        trig = f"`{f['trigger']}` {json.dumps(shown)}" + (f" file `{path}`" if path else "")
        lines.append(
            f"| {f['caption'] or f['name']} | ![{f['name']}]({f['files']['view']}) "
            f"| ![mask]({f['files']['mask']}) | {trig} | {f['changed_pixels']} | {f['changed_values']} "
            f"| {_bbox_text(f['bbox'])} | {f['l2']:.4f} | {f['linf']:.4f} |"
        )
    items = doc["photos"]["items"]
    if items:
        names = [f["name"] for f in doc["figures"]]
        lines += ["", f"## On photos ({doc['photos']['size']}x{doc['photos']['size']})", ""]
        lines.append("| photo | original | " + " | ".join(names) + " |")
        lines.append("|---" * (len(names) + 2) + "|")
        for p in items:
            cells = [
                f"![{n}]({p['files'][n]['view']}) {p['changes'][n]['changed_pixels']} px"
                if n in p["files"]
                else "-"
                for n in names
            ]
            lines.append(
                f"| {Path(p['path']).name} | ![original]({p['files']['original']['view']}) | "
                + " | ".join(cells)
                + " |"
            )
    if doc["skipped"]:
        lines += ["", "## Skipped", ""]
        lines += [
            f"- {s['what']}: {s['reason']}" + (f" ({s['path']})" if s["path"] else "") for s in doc["skipped"]
        ]
    return "\n".join(lines) + "\n"


def write_figures(result: FiguresResult, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write every PNG, ``results.json``, ``figures.md`` and ``run.json`` into ``out_dir``.

    Parameters
    ----------
    result : FiguresResult
    out_dir : str or pathlib.Path
        Created if needed.
    overwrite : bool, default False
        Replace an earlier run in ``out_dir`` (else ``FileExistsError``).

    Returns
    -------
    pathlib.Path
        The ``figures.md`` written.
    """
    out = claim_run_dir(out_dir, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    files, photos = _write_images(result, out)
    doc = figures_record(result, files, photos)
    (out / "results.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    page = out / "figures.md"
    page.write_text(_markdown(doc), encoding="utf-8")
    config = result.config.model_dump(mode="json", exclude={"base_dir"})
    write_run_json(out, run_record("figures", config=config, extra={"results": "results.json"}))
    return page
