"""``poisonlab predict MODEL IMAGES...``: classify image files and folders.

One unreadable file must not cost the batch: every readable image is predicted, each unreadable
one is named on its own ``error:`` line on stderr, and the exit status says what happened
(:data:`EXIT_SOME_UNREADABLE`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from poisonlab.cli._console import make_console
from poisonlab.cli._errors import cli_errors
from poisonlab.cli.options import (
    DEVICE_OPT,
    JSON_OPT,
    MODEL_ARG,
    PRECISION_OPT,
    THREADS_OPT,
    check_precision,
    use_threads,
)

console = make_console()

#: exit status when some images could not be read (the others were predicted)
EXIT_SOME_UNREADABLE = 3
#: exit status when no image could be read (as for any bad argument)
EXIT_NONE_READABLE = 2


def expand_images(paths: list[Path]) -> list[Path]:
    """Files as given; a folder becomes its image files (by extension, sorted, not recursive)."""
    from poisonlab.data.images import IMAGE_EXTENSIONS

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise ValueError(f"no image files in folder {path} ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            files += found
        else:
            files.append(path)
    return files


def load_batch(
    files: list[Path], shape: tuple[int, int, int]
) -> tuple[list[Path], Any, list[tuple[Path, str]]]:
    """The readable files, their images at the model's input (N, H, W, C) and (file, reason) of the rest."""
    import numpy as np

    from poisonlab.data.images import load_image_file, rgb_to_gray

    h, _, c = shape
    good, images, bad = [], [], []
    for path in files:
        try:
            images.append(load_image_file(path, size=h))
        except (ValueError, OSError) as exc:
            bad.append((path, str(exc)))
        else:
            good.append(path)
    batch = np.stack(images) if images else np.zeros((0, *shape), np.uint8)
    if c == 1 and len(batch):
        batch = rgb_to_gray(batch)
    return good, batch, bad


@cli_errors
def predict_command(
    model: str = MODEL_ARG,
    images: list[Path] = typer.Argument(..., help="image files or folders of them (any common format)"),
    top: int = typer.Option(3, "--top", min=1, help="probabilities to show per image"),
    device: str = DEVICE_OPT,
    threads: int | None = THREADS_OPT,
    precision: str = PRECISION_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Classify images; external photos are padded to a square and resized like the chapter.

    Unreadable files are reported one per line on stderr and the others are still predicted.
    Exit status: 0 when every image was predicted, 3 when some could not be read, 2 when none
    could (or an argument is wrong).
    """
    from poisonlab.inference import forward_pass
    from poisonlab.models.store import load_model_ref

    use_threads(threads)
    check_precision(precision)
    net, card, path = load_model_ref(model)
    h, w, _ = card.input_shape
    if h != w:
        raise ValueError(f"predict needs a square input model, this one takes {h}x{w}")
    good, batch, bad = load_batch(expand_images(images), tuple(card.input_shape))
    rows = []
    if good:
        probs = forward_pass(net, batch, device=device, precision=precision).probabilities
        rows = [_prediction(p, row, card.class_names, top) for p, row in zip(good, probs, strict=True)]
    if as_json:
        doc = {"model": {"id": card.id, "name": card.name, "path": str(path)}, "predictions": rows}
        doc["errors"] = [{"image": str(p), "error": reason} for p, reason in bad]
        typer.echo(json.dumps(doc, indent=2))
    elif rows:
        _print_table(rows, min(top, len(card.class_names)))
    for _, reason in bad:
        typer.echo(f"error: {reason}", err=True)
    if bad:
        raise typer.Exit(EXIT_SOME_UNREADABLE if good else EXIT_NONE_READABLE)


def _prediction(path: Path, p: Any, class_names: list[str], top: int) -> dict[str, Any]:
    order = (-p).argsort()[:top]
    return {
        "image": str(path),
        "prediction": class_names[int(order[0])],
        "top": [{"class": class_names[int(i)], "probability": round(float(p[i]), 6)} for i in order],
    }


def _print_table(rows: list[dict[str, Any]], top: int) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table("image", "prediction", f"top {top}")
    for row in rows:
        ranked = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in row["top"])
        table.add_row(escape(row["image"]), escape(row["prediction"]), escape(ranked))  # paths may hold [...]
    console.print(table)
