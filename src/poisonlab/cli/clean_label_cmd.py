"""``poisonlab clean-label CONFIG``: the clean-label attack benchmark (Schwarzschild et al. 2021).

The runner returns its rows one by one; this command rewrites ``results.json`` and ``report.md``
after each, prints it, and prints the summary table at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from poisonlab.cli._console import make_console
from poisonlab.cli._errors import cli_errors
from poisonlab.cli.options import CONFIG_DATA_DIR_OPT, QUIET_OPT, THREADS_OPT, out_option, use_threads

if TYPE_CHECKING:
    from poisonlab.experiments.clean_label import CleanLabelConfig, CleanLabelResult

console = make_console()


def _with_overrides(
    cfg: CleanLabelConfig, origin: Path, data_dir: Path | None, device: str | None, trials: int | None
) -> CleanLabelConfig:
    """``cfg`` with the command-line overrides, validated again as a whole."""
    from poisonlab.experiments.clean_label import parse_clean_label

    update: dict = {}
    if data_dir is not None:
        update["dataset"] = {**cfg.dataset.model_dump(), "data_dir": str(data_dir.resolve())}
    if device is not None:
        update["device"] = device
    if trials is not None:
        update["trials"] = trials
    if not update:
        return cfg
    return parse_clean_label({**cfg.model_dump(), **update}, origin=str(origin))


def _print_summary(run: CleanLabelResult) -> None:
    from poisonlab.experiments.clean_label import summarize

    table = Table(title=f"{run.config.name}: success over {run.config.trials} trials")
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


@cli_errors
def clean_label_command(
    config: Path = typer.Argument(
        ..., help="benchmark config (YAML/JSON), e.g. experiments/clean_label/*.yaml"
    ),
    out: Path = out_option("folder for results.json and report.md"),
    data_dir: Path | None = CONFIG_DATA_DIR_OPT,
    device: str | None = typer.Option(
        None, "--device", help="override the config's device (auto, cpu, cuda)"
    ),
    trials: int | None = typer.Option(None, "--trials", min=1, help="override the number of trials"),
    threads: int | None = THREADS_OPT,
    quiet: bool = QUIET_OPT,
) -> None:
    """Craft clean-label poisons (hidden trigger, feature collision, clean-label backdoor,
    gradient matching), train the victim, and report success rates beside the published ones."""
    use_threads(threads)
    # imported here to keep CLI start-up light: only this command needs the crafting attacks
    from poisonlab.experiments.clean_label import load_clean_label, run_clean_label, write_clean_label

    cfg = _with_overrides(load_clean_label(config), config, data_dir, device, trials)

    def on_row(run: CleanLabelResult, row: dict[str, Any]) -> None:
        # written after every row: a long CPU run that is stopped keeps its finished trials
        write_clean_label(run, out)
        if not quiet:
            verdict = "success" if row["success"] else "fail"
            console.print(
                f"trial {row['trial']} {row['attack']}: {row['victim_class']} -> {row['target_class']} "
                f"{verdict} (clean acc {row['clean_accuracy']:.3f})"
            )

    run = run_clean_label(cfg, progress=not quiet, on_row=on_row)
    _print_summary(run)
    console.print(f"report: {Path(out) / 'report.md'}", soft_wrap=True)
