"""``poisonlab run CONFIG`` and ``poisonlab demo``."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.table import Table

from poisonlab.cli._console import make_console
from poisonlab.cli._errors import cli_errors
from poisonlab.experiments import load_experiment, run_experiment
from poisonlab.experiments.demo import read_scan_rows, run_demo, summary_rows
from poisonlab.experiments.report import metric_rows

console = make_console()


@cli_errors
def run_command(
    config: Path = typer.Argument(..., help="experiment config (YAML/JSON)"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for results.json and the report"),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="override the config's dataset location"),
    device: str = typer.Option("auto", "--device"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    save_data: bool = typer.Option(
        False, "--save-data", help="also write each poisoned training set to OUT/data/seed-N.npz (for scan)"
    ),
) -> None:
    """Run one poisoning experiment (clean baseline cached, attack, integration, metrics, report)."""
    cfg = load_experiment(config)
    if data_dir is not None:
        cfg = cfg.model_copy(
            update={"dataset": cfg.dataset.model_copy(update={"data_dir": str(data_dir.resolve())})}
        )
    result = run_experiment(cfg, out, device=device, progress=not quiet, save_data=save_data)
    table = Table(title=cfg.name)
    for column in ("metric", "clean model", "poisoned model"):
        table.add_column(column, no_wrap=column != "metric")
    for row in metric_rows(result):
        table.add_row(*row)
    console.print(table)
    console.print(f"report: {out / 'report.html'}", soft_wrap=True)


@cli_errors
def demo_command(
    out: Path = typer.Option(Path("demo-output"), "--out", "-o"),
    dataset: str = typer.Option("digits", "--dataset", "-d", help="digits (embedded, offline) or cifar10"),
    data_dir: Path | None = typer.Option(None, "--data-dir"),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="shorten training (smoke runs)"),
    device: str = typer.Option("auto", "--device"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """The chapter's lab in one command: clean model, backdoor and mislabel attacks, reports."""
    shared = os.environ.get("POISONLAB_SHARED")
    shared_dir = Path(shared) if shared else Path.cwd().parent / "shared"
    results = run_demo(
        out,
        dataset=dataset,
        data_dir=str(data_dir) if data_dir else None,
        shared_dir=shared_dir,
        epochs=epochs,
        device=device,
        progress=not quiet,
    )
    table = Table(title="poisonlab demo")
    table.add_column("experiment", no_wrap=True)
    for column in ("clean acc", "poisoned acc", "ASR", "src->tgt"):
        table.add_column(column, no_wrap=True)
    rows = summary_rows(results)
    for row in rows:
        table.add_row(*row[:-1])
    console.print(table)
    for row in rows:
        console.print(f"report: {out / row[-1]}", soft_wrap=True)
    scan_table = Table(title="defenses on the backdoored training set")
    for column in ("defense", "flagged", "precision", "recall", "F1", "AUROC"):
        scan_table.add_column(column, no_wrap=True)
    for row in read_scan_rows(out / "scan-backdoor" / "scan.json"):
        scan_table.add_row(*row)
    console.print(scan_table)
    console.print(f"scan report: {out / 'scan-backdoor' / 'report.html'}", soft_wrap=True)
    console.print(f"summary: {out / 'summary.html'}", soft_wrap=True)


@cli_errors
def matrix_command(
    config: Path = typer.Argument(..., help="matrix config (YAML/JSON), e.g. experiments/defenses/*.yaml"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for matrix.json, heatmaps and the report"),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="override the config's dataset location"),
    device: str = typer.Option("auto", "--device"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Run every attack of CONFIG against every defense: detection P/R/F1/AUROC and mitigation."""
    from poisonlab.experiments.matrix import run_matrix
    from poisonlab.experiments.matrix_config import load_matrix

    cfg = load_matrix(config)
    if data_dir is not None:
        cfg = cfg.model_copy(
            update={"dataset": cfg.dataset.model_copy(update={"data_dir": str(data_dir.resolve())})}
        )
    result = run_matrix(cfg, out, device=device, progress=not quiet)
    table = Table(title=f"{cfg.name}: detection F1")
    table.add_column("attack")
    for d in cfg.defenses:
        table.add_column(d.name[:12])
    for row in result.rows:
        cells = [row.detection[d.name].get("f1") for d in cfg.defenses]
        table.add_row(row.name, *("-" if v is None else f"{v:.2f}" for v in cells))
    console.print(table)
    console.print(f"report: {out / 'report.html'}", soft_wrap=True)
