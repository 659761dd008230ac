"""``poisonlab bench detection CONFIG --out DIR``: the detection benchmark nobody can tune to.

The runner (:mod:`poisonlab.experiments.detection.run`) appends each finished cell to
``DIR/cells.jsonl``; this command rewrites ``DIR/report.md`` after every cell and the executor
prints one line per cell (``--executor ray``: the cells run as Ray tasks, side by side).  Run it
again with the same ``--out`` to resume: finished cells are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from poisonlab.cli._app import App
from poisonlab.cli._console import make_console
from poisonlab.cli._errors import cli_errors
from poisonlab.cli._executor import EXECUTOR_OPT, RAY_ADDRESS_OPT, STORE_OPT, WORKERS_OPT, executor_session
from poisonlab.cli.options import CONFIG_DATA_DIR_OPT, QUIET_OPT, THREADS_OPT, out_option, use_threads

if TYPE_CHECKING:
    from poisonlab.experiments.detection.config import DetectionConfig

console = make_console()
bench_app = App(help="Benchmarks of the library's own defenses.")


@bench_app.callback()
def _bench() -> None:
    """Benchmarks of the library's own defenses."""


def _with_overrides(cfg: DetectionConfig, origin: Path, data_dir: Path | None, device: str | None) -> Any:
    """``cfg`` with the command-line overrides, validated again as a whole."""
    from poisonlab.cli.experiments_cmd import dataset_location
    from poisonlab.experiments.detection.config import parse_detection

    update: dict[str, Any] = {}
    location = dataset_location(cfg.dataset, data_dir)
    if location != cfg.dataset.data_dir:
        update["dataset"] = {**cfg.dataset.model_dump(), "data_dir": location}
    if device is not None:
        update["device"] = device
    if not update:
        return cfg
    return parse_detection({**cfg.model_dump(), **update}, origin=str(origin))


@bench_app.command("detection")
@cli_errors
def detection_command(
    config: Path = typer.Argument(
        ..., help="benchmark config (YAML/JSON), e.g. experiments/detection/*.yaml"
    ),
    out: Path = out_option("folder for run.json, cells.jsonl, scores/ and report.md (reuse it to resume)"),
    data_dir: Path | None = CONFIG_DATA_DIR_OPT,
    device: str | None = typer.Option(
        None, "--device", help="override the config's device (auto, cpu, cuda)"
    ),
    threads: int | None = THREADS_OPT,
    quiet: bool = QUIET_OPT,
    executor: str = EXECUTOR_OPT,
    ray_address: str | None = RAY_ADDRESS_OPT,
    workers: int | None = WORKERS_OPT,
    store: Path | None = STORE_OPT,
) -> None:
    """Poison seeded cases, train from scratch on each, score every detector with frozen defaults."""
    use_threads(threads)
    # imported here to keep CLI start-up light
    from poisonlab.experiments.detection.config import load_detection
    from poisonlab.experiments.detection.report import write_report
    from poisonlab.experiments.detection.run import run_detection
    from poisonlab.provenance import DETECTION_BENCH, check_resume_target

    cfg = _with_overrides(load_detection(config), config, data_dir, device)
    check_resume_target(out, DETECTION_BENCH)  # a rerun resumes: never into another command's run
    options = {"address": ray_address, "workers": workers, "store": store, "threads": threads}
    with executor_session(executor, quiet=quiet, **options) as runner:
        runner.connect()
        _plan_stage(cfg, out)

        def on_cell(records: list[dict[str, Any]], record: dict[str, Any]) -> None:
            write_report(out)  # the executor prints the cell's line

        session = {"threads": threads, "config_file": str(config)}
        records = run_detection(
            cfg, out, progress=not quiet, on_cell=on_cell, session_info=session, executor=runner
        )
    report = write_report(out)
    console.print(f"{len(records)} cells finished; report: {report}", soft_wrap=True)


def _plan_stage(cfg: DetectionConfig, out: Path) -> int:
    """Print what the run will do (cells, those already finished in ``out``, the time per cell);
    returns the number of cells of the grid."""
    from poisonlab.cli._stages import duration, stage
    from poisonlab.experiments.detection.cases import grid
    from poisonlab.training.config import estimate_train_seconds

    cells = grid(cfg)
    log = out / "cells.jsonl"
    ids = {c.id for c in cells}
    finished = 0
    if log.is_file():
        finished = len(ids & _logged_cells(log.read_text(encoding="utf-8")))
    side, size = (8, 1200) if cfg.dataset.name == "digits" else (32, 40_000)
    per_cell = duration(estimate_train_seconds(cfg.train_config(cfg.seeds.start), size, side))
    resumed = f", {finished} already finished in {out} (resuming)" if finished else ""
    stage(
        f"bench detection {cfg.name}: {len(cells)} cells{resumed}; per seed one clean model, then per "
        f"cell: poisoning, training a model from scratch{per_cell}, scoring the detectors"
    )
    return len(cells)


def _logged_cells(text: str) -> set[str]:
    """Cell ids in a ``cells.jsonl``; a line cut short by a stopped run is skipped (the runner
    runs that cell again)."""
    cells = set()
    for line in text.splitlines():
        try:
            cells.add(json.loads(line)["cell"])
        except (ValueError, KeyError, TypeError):
            continue
    return cells
