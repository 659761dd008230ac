"""``poisonlab figures CONFIG --out DIR``: the chapter's trigger figures as files and numbers.

Its own command rather than a kind of ``poisonlab run``: ``run`` reads one config type (a single
poisoning experiment) with no dispatch on a top-level kind, and a figures run trains nothing.
"""

from __future__ import annotations

from pathlib import Path

import typer

from poisonlab.cli._console import make_console
from poisonlab.cli._errors import cli_errors
from poisonlab.cli.options import OVERWRITE_OPT, out_option

console = make_console()


@cli_errors
def figures_command(
    config: Path = typer.Argument(
        ..., help="figures config (YAML/JSON), e.g. experiments/chapter/trigger-figures.yaml"
    ),
    out: Path = out_option("folder for the PNGs, results.json and figures.md"),
    overwrite: bool = OVERWRITE_OPT,
) -> None:
    """Draw the configured triggers on a blank canvas and on photos; write PNGs, masks, distances."""
    from rich.table import Table

    # imported here to keep CLI start-up light (numpy, Pillow)
    from poisonlab.experiments.figures import load_figures, run_figures, write_figures
    from poisonlab.provenance import claim_run_dir

    cfg = load_figures(config)
    claim_run_dir(out, overwrite=overwrite)  # an earlier run in OUT is refused before any drawing
    result = run_figures(cfg)
    page = write_figures(result, out, overwrite=overwrite)
    table = Table(title=cfg.name)
    for column in ("figure", "trigger", "pixels", "values", "L2", "Linf"):
        table.add_column(column, no_wrap=column != "figure")
    for fig in result.figures:
        c = fig.change
        table.add_row(fig.spec.name, fig.spec.trigger, str(c.changed_pixels), str(c.changed_values),
                      f"{c.l2:.4f}", f"{c.linf:.4f}")  # fmt: skip
    console.print(table)
    console.print(f"photos: {len(result.photos)} drawn on", soft_wrap=True)
    for item in result.skipped:
        where = f" ({item['path']})" if item["path"] else ""
        console.print(f"skipped {item['what']}: {item['reason']}{where}", soft_wrap=True, markup=False)
    console.print(f"report: {page}", soft_wrap=True)
