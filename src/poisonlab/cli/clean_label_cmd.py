"""``poisonlab clean-label CONFIG``: the clean-label attack benchmark (Schwarzschild et al. 2021)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from poisonlab.cli._console import make_console
from poisonlab.cli._errors import cli_errors

console = make_console()


@cli_errors
def clean_label_command(
    config: Path = typer.Argument(
        ..., help="benchmark config (YAML/JSON), e.g. experiments/clean_label/*.yaml"
    ),
    out: Path = typer.Option(..., "--out", "-o", help="folder for results.json and report.md"),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="override the config's dataset location"),
    device: str | None = typer.Option(
        None, "--device", help="override the config's device (auto, cpu, cuda)"
    ),
    trials: int | None = typer.Option(None, "--trials", min=1, help="override the number of trials"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Craft clean-label poisons (hidden trigger, feature collision, clean-label backdoor,
    gradient matching), train the victim, and report success rates beside the published ones."""
    from poisonlab.experiments.clean_label import run_clean_label
    from poisonlab.experiments.clean_label_config import load_clean_label, parse_clean_label
    from poisonlab.experiments.clean_label_report import summarize

    cfg = load_clean_label(config)
    update: dict = {}
    if data_dir is not None:
        update["dataset"] = {**cfg.dataset.model_dump(), "data_dir": str(data_dir.resolve())}
    if device is not None:
        update["device"] = device
    if trials is not None:
        update["trials"] = trials
    if update:
        cfg = parse_clean_label({**cfg.model_dump(), **update}, origin=str(config))

    def show(row: dict) -> None:
        if not quiet:
            verdict = "success" if row["success"] else "fail"
            console.print(
                f"trial {row['trial']} {row['attack']}: {row['victim_class']} -> {row['target_class']} "
                f"{verdict} (clean acc {row['clean_accuracy']:.3f})"
            )

    run = run_clean_label(cfg, out, progress=not quiet, on_row=show)
    table = Table(title=f"{cfg.name}: success over {cfg.trials} trials")
    for col in ("attack", "successes", "rate", "control", "published", "craft s"):
        table.add_column(col)
    for r in summarize(run):
        table.add_row(
            r["attack"],
            f"{r['successes']}/{r['trials']}",
            f"{100 * (r['success_rate'] or 0):.0f}%",
            f"{r['control']}/{r['trials']}",
            "-" if r["published"] is None else f"{r['published']:.1f}%",
            "-" if r["craft_seconds"] is None else f"{r['craft_seconds']:.1f}",
        )
    console.print(table)
    console.print(f"report: {Path(out) / 'report.md'}", soft_wrap=True)
