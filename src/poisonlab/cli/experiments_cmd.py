"""``poisonlab run CONFIG``, ``poisonlab demo`` and ``poisonlab matrix CONFIG``.

The runners return their records; these commands write them (results, reports, heatmaps) and
print the summary tables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import typer
from pydantic import BaseModel
from rich.table import Table

from poisonlab.cli._console import make_console
from poisonlab.cli._errors import cli_errors
from poisonlab.cli.options import (
    CONFIG_DATA_DIR_OPT,
    DATA_DIR_OPT,
    DATASET_OPT,
    DEVICE_OPT,
    QUIET_OPT,
    THREADS_OPT,
    out_option,
    use_threads,
)
from poisonlab.experiments import load_experiment, run_experiment, write_experiment
from poisonlab.experiments.single.demo import run_demo
from poisonlab.experiments.single.demo_report import (
    SCAN_DIR,
    scan_rows,
    screen_verdict_line,
    summary_rows,
    write_demo,
)
from poisonlab.experiments.single.report import metric_rows

console = make_console()

C = TypeVar("C", bound=BaseModel)


def with_data_dir(cfg: C, data_dir: Path | None) -> C:
    """``cfg`` with its dataset's ``data_dir`` replaced by ``--data-dir`` (absolute), if given."""
    if data_dir is None:
        return cfg
    dataset = cfg.dataset.model_copy(update={"data_dir": str(data_dir.resolve())})
    return cfg.model_copy(update={"dataset": dataset})


@cli_errors
def run_command(
    config: Path = typer.Argument(..., help="experiment config (YAML/JSON)"),
    out: Path = out_option("folder for results.json and the report"),
    data_dir: Path | None = CONFIG_DATA_DIR_OPT,
    device: str = DEVICE_OPT,
    threads: int | None = THREADS_OPT,
    quiet: bool = QUIET_OPT,
    save_data: bool = typer.Option(
        False, "--save-data", help="also write each poisoned training set to OUT/data/seed-N.npz (for scan)"
    ),
) -> None:
    """Run one poisoning experiment (clean baseline cached, attack, integration, metrics, report)."""
    use_threads(threads)
    cfg = with_data_dir(load_experiment(config), data_dir)
    result = run_experiment(cfg, out, device=device, progress=not quiet)
    page = write_experiment(result, out, save_data=save_data)
    table = Table(title=cfg.name)
    for column in ("metric", "clean model", "poisoned model"):
        table.add_column(column, no_wrap=column != "metric")
    for row in metric_rows(result):
        table.add_row(*row)
    console.print(table)
    console.print(f"report: {page}", soft_wrap=True)


@cli_errors
def demo_command(
    out: Path = out_option("folder for the reports and the summary", default=Path("demo-output")),
    dataset: str = DATASET_OPT,
    data_dir: Path | None = DATA_DIR_OPT,
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="shorten training (smoke runs)"),
    device: str = DEVICE_OPT,
    threads: int | None = THREADS_OPT,
    quiet: bool = QUIET_OPT,
) -> None:
    """The chapter's lab in one command: clean model, backdoor and mislabel attacks, reports."""
    use_threads(threads)
    shared = os.environ.get("POISONLAB_SHARED")
    shared_dir = Path(shared) if shared else Path.cwd().parent / "shared"
    result = run_demo(
        out,
        dataset=dataset,
        data_dir=str(data_dir) if data_dir else None,
        shared_dir=shared_dir,
        epochs=epochs,
        device=device,
        progress=not quiet,
    )
    summary = write_demo(result, out)
    table = Table(title="poisonlab demo")
    table.add_column("experiment", no_wrap=True)
    for column in ("clean acc", "poisoned acc", "ASR", "src->tgt"):
        table.add_column(column, no_wrap=True)
    rows = summary_rows(result.results)
    for row in rows:
        table.add_row(*row[:-1])
    console.print(table)
    for row in rows:
        console.print(f"report: {out / row[-1]}", soft_wrap=True)
    scan_table = Table(title="defenses on the backdoored training set")
    for column in ("defense", "flagged", "precision", "recall", "F1", "AUROC"):
        scan_table.add_column(column, no_wrap=True)
    for row in scan_rows(result.scan):
        scan_table.add_row(*row)
    console.print(scan_table)
    console.print(screen_verdict_line(result.scan), soft_wrap=True)
    console.print(f"scan report: {out / SCAN_DIR / 'report.html'}", soft_wrap=True)
    console.print(f"summary: {summary}", soft_wrap=True)


@cli_errors
def matrix_command(
    config: Path = typer.Argument(..., help="matrix config (YAML/JSON), e.g. experiments/defenses/*.yaml"),
    out: Path = out_option("folder for matrix.json, heatmaps and the report"),
    data_dir: Path | None = CONFIG_DATA_DIR_OPT,
    device: str = DEVICE_OPT,
    threads: int | None = THREADS_OPT,
    quiet: bool = QUIET_OPT,
) -> None:
    """Run every attack of CONFIG against every defense: detection P/R/F1/AUROC and mitigation."""
    use_threads(threads)
    # imported here to keep CLI start-up light: only this command needs mitigation and the matrix
    from poisonlab.experiments.matrix import load_matrix, run_matrix, write_matrix

    cfg = with_data_dir(load_matrix(config), data_dir)
    # the report is rewritten after every attack: a stopped CPU run keeps its finished rows
    result = run_matrix(
        cfg, device=device, progress=not quiet, on_row=lambda partial: write_matrix(partial, out)
    )
    table = Table(title=f"{cfg.name}: detection F1")
    table.add_column("attack")
    for d in cfg.defenses:
        table.add_column(d.name[:12])
    for row in result.rows:
        cells = [row.detection[d.name].get("f1") for d in cfg.defenses]
        table.add_row(row.name, *("-" if v is None else f"{v:.2f}" for v in cells))
    console.print(table)
    console.print(f"report: {out / 'report.html'}", soft_wrap=True)
