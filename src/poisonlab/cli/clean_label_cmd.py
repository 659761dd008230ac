"""``poisonlab clean-label CONFIG``: the clean-label attack benchmark (Schwarzschild et al. 2021).

The runner returns its rows one by one (``--executor ray``: as Ray tasks, side by side); this
command rewrites ``results.json`` and ``report.md`` after each, the executor prints one line per
row, and the command prints the summary table at the end.  ``--resume`` keeps the finished rows
of a stopped run in ``--out`` (``cells.jsonl``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from poisonlab.cli._console import make_console
from poisonlab.cli._errors import cli_errors
from poisonlab.cli._executor import (
    EXECUTOR_OPT,
    RAY_ADDRESS_OPT,
    RESUME_OPT,
    STORE_OPT,
    WORKERS_OPT,
    executor_session,
)
from poisonlab.cli._stages import duration, stage
from poisonlab.cli.experiments_cmd import dataset_location
from poisonlab.cli.options import (
    CONFIG_DATA_DIR_OPT,
    GRID_SEEDS_OPT,
    OVERWRITE_OPT,
    QUIET_OPT,
    SEED_OPT,
    THREADS_OPT,
    out_option,
    seed_list,
    use_threads,
)

if TYPE_CHECKING:
    from poisonlab.experiments.clean_label import CleanLabelConfig, CleanLabelResult

console = make_console()


def _with_overrides(
    cfg: CleanLabelConfig, origin: Path, data_dir: Path | None, overrides: dict[str, Any]
) -> CleanLabelConfig:
    """``cfg`` with the command-line overrides (None: not given), validated again as a whole."""
    from poisonlab.experiments.clean_label import parse_clean_label

    update: dict = {k: v for k, v in overrides.items() if v is not None}
    location = dataset_location(cfg.dataset, data_dir)
    if location != cfg.dataset.data_dir:
        update["dataset"] = {**cfg.dataset.model_dump(), "data_dir": location}
    if not update:
        return cfg
    return parse_clean_label({**cfg.model_dump(), **update}, origin=str(origin))


def _print_summary(run: CleanLabelResult) -> None:
    from rich.table import Table

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
    seed: int | None = SEED_OPT,
    seeds: int | None = GRID_SEEDS_OPT,
    executor: str = EXECUTOR_OPT,
    ray_address: str | None = RAY_ADDRESS_OPT,
    workers: int | None = WORKERS_OPT,
    store: Path | None = STORE_OPT,
    resume: bool = RESUME_OPT,
    overwrite: bool = OVERWRITE_OPT,
) -> None:
    """Craft clean-label poisons (hidden trigger, feature collision, clean-label backdoor,
    gradient matching), train the victim, and report success rates beside the published ones."""
    use_threads(threads)
    # imported here to keep CLI start-up light: only this command needs the crafting attacks
    from poisonlab.experiments.clean_label import load_clean_label

    chosen = seed_list(seed, seeds)
    if resume and overwrite:
        raise ValueError("--resume continues the run in --out, --overwrite replaces it: pick one")
    options = {"address": ray_address, "workers": workers, "store": store, "threads": threads}
    with executor_session(executor, quiet=quiet, **options) as runner:  # bad options fail first
        base = load_clean_label(config)
        folders = [Path(out)] if seeds is None else [Path(out) / f"seed-{s}" for s in chosen]
        for folder in {Path(out), *folders}:  # before any training
            _claim(folder, overwrite=overwrite, resume=resume)
        for s, folder in zip(chosen, folders, strict=True):
            overrides = {"device": device, "trials": trials, "seed": s}
            cfg = _with_overrides(base, config, data_dir, overrides)
            run = _run_one(cfg, folder, runner, quiet=quiet, resume=resume)
    if seeds is None:
        _print_summary(run)
        console.print(f"report: {Path(out) / 'report.md'}", soft_wrap=True)
        return
    from poisonlab.experiments.clean_label.report import write_pooled_clean_label

    results = [json.loads((f / "results.json").read_text(encoding="utf-8")) for f in folders]
    report = write_pooled_clean_label(results, out)
    console.print(f"report over {len(folders)} seeds: {report}", soft_wrap=True)


def _claim(folder: Path, *, overwrite: bool, resume: bool) -> None:
    """Refuse a folder holding a clean-label run (its ``run.json``, results or cell log) unless
    ``overwrite`` (a fresh run starts by deleting the cell log, which would lose the finished
    trials), and, with ``resume``, a folder holding another command's run. Runs written before
    clean-label recorded a ``run.json`` are recognised by the other two files."""
    from poisonlab.provenance import RUN_FILE, check_output_folder, check_resume_target

    if resume:
        check_resume_target(folder, "clean-label")
        return
    check_output_folder(folder)  # a file at or above --out: an error now, not after the surrogate
    held = [name for name in (RUN_FILE, "results.json", "cells.jsonl") if (folder / name).is_file()]
    if held and not overwrite:
        raise FileExistsError(
            f"{folder} already holds a clean-label run ({', '.join(held)}); choose another --out, "
            "continue it with --resume, or pass --overwrite to replace it"
        )


def _run_one(cfg: CleanLabelConfig, out: Path, runner: Any, *, quiet: bool, resume: bool) -> CleanLabelResult:
    """One benchmark (one seed) on ``runner``, its report rewritten after every finished row."""
    from poisonlab.experiments.clean_label import run_clean_label, write_clean_label
    from poisonlab.provenance import record_resumable_run, run_record

    runner.connect()
    _plan_stage(cfg)
    journal = out / "cells.jsonl"
    if not resume:  # a fresh run replaces the folder's results, as it always did
        journal.unlink(missing_ok=True)
    config = cfg.model_dump(mode="json", exclude={"base_dir"})
    extra = {"seed": cfg.seed, "results": "results.json", "cells": journal.name}
    record_resumable_run(out, run_record("clean-label", config=config, extra=extra), resume=resume)

    def on_row(run: CleanLabelResult, row: dict[str, Any]) -> None:
        # written after every row: a long CPU run that is stopped keeps its finished trials
        write_clean_label(run, out)
        done = len(run.trials)
        serial = runner.in_process and done % len(cfg.attacks) == 0
        if serial and done < cfg.trials * len(cfg.attacks):
            _trial_stage(cfg, done // len(cfg.attacks))

    return run_clean_label(cfg, progress=not quiet, on_row=on_row, executor=runner, journal=journal)


def _plan_stage(cfg: CleanLabelConfig) -> None:
    """The surrogate's header (pre-trained from scratch, cached between runs) and the first trial's."""
    from poisonlab.training.config import estimate_train_seconds

    size = cfg.pretrain_size or cfg.train_size
    side = 8 if cfg.dataset.name == "digits" else 32
    estimate = duration(estimate_train_seconds(cfg.pretrain_config(), size, side))
    stage(
        f"surrogate model: training on {size} images{estimate} unless cached; then the clean victim; "
        f"then {cfg.trials} trials, each crafting {len(cfg.attacks)} attacks and training their victims"
    )


def _trial_stage(cfg: CleanLabelConfig, trial: int) -> None:
    stage(f"trial {trial} ({trial + 1} of {cfg.trials}): {len(cfg.attacks)} attacks crafted, victims trained")
