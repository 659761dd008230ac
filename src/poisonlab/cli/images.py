"""``poisonlab images``: turn scraped photos into model-ready arrays (the chapter's resize step)."""

from __future__ import annotations

from pathlib import Path

import typer

from poisonlab.cli._app import App
from poisonlab.cli._errors import cli_errors
from poisonlab.cli.options import out_option

images_app = App(help="Prepare image folders: pad to a centred square, resize, save PNGs and images.npy.")


def parse_pad_color(text: str) -> tuple[int, int, int]:
    """Parse ``"R,G,B"`` (integers in [0, 255]) or a colour name/hex such as ``white``, ``#ffffff``."""
    from PIL import ImageColor

    parts = [p.strip() for p in str(text).split(",")]
    try:
        rgb = tuple(int(p) for p in parts) if len(parts) > 1 else ImageColor.getrgb(str(text).strip())[:3]
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise ValueError(
            f"invalid --pad-color {text!r}: expected R,G,B with integers in [0, 255], e.g. 255,255,255"
        )
    return rgb  # type: ignore[return-value]


@images_app.command("prepare")
@cli_errors
def prepare(
    src: Path = typer.Argument(..., help="Folder of source images (JPEG, PNG, WebP, ...)."),
    out: Path = out_option("Output folder for PNGs, images.npy, filenames.txt."),
    size: int = typer.Option(32, "--size", help="Side length of the square output images."),
    pad_color: str = typer.Option("255,255,255", "--pad-color", help="Padding/background colour as R,G,B."),
) -> None:
    """Pad each image to a centred square, LANCZOS-resize it to SIZE and save the results."""
    from poisonlab.data.images import prepare_images

    color = parse_pad_color(pad_color)
    result = prepare_images(src, out, size=size, pad_color=color)
    typer.echo(
        f"prepared {result.count} image(s) {size}x{size} from {src} into {out} "
        f"(images.npy, filenames.txt, PNGs); skipped {len(result.skipped)}"
    )
    for name, reason in result.skipped:
        typer.echo(f"warning: skipped {name}: {reason}", err=True)
