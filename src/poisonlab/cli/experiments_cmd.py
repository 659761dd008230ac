"""``poisonlab run CONFIG``, ``poisonlab demo`` and ``poisonlab matrix CONFIG``.

The runners return their records; these commands write them (results, reports, heatmaps) and
print the summary tables. Before anything trains, each command loads the data, builds every
attack of the config (a bad setting fails in seconds, not after the baseline's 13 minutes) and
trains or loads the clean baseline under its own stage header (:mod:`poisonlab.cli._stages`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
from poisonlab.cli._stages import ensure_baseline, stage, train_time
from poisonlab.cli.options import (
    CONFIG_DATA_DIR_OPT,
    DATA_DIR_OPT,
    DATASET_OPT,
    DEVICE_OPT,
    GRID_SEEDS_OPT,
    MAX_SEEDS,
    OVERWRITE_OPT,
    QUIET_OPT,
    SEED_OPT,
    SEED_RANGE,
    THREADS_OPT,
    out_option,
    seed_list,
    use_threads,
)

console = make_console()

_INTEGRATION = {
    "retrain": "training a model from scratch on the poisoned set",
    "finetune": "fine-tuning the clean model on the poisoned set",
    "finetune_poison_only": "fine-tuning the clean model on the poisoned samples only",
}


def dataset_location(dataset: Any, data_dir: Path | None) -> str | None:
    """The ``data_dir`` a config's dataset block should hold: ``--data-dir`` (absolute), else the
    config's own, else where :func:`poisonlab.data.catalog.resolve_data_dir` finds the dataset."""
    from poisonlab.data.catalog import resolve_data_dir

    if data_dir is not None:
        return str(data_dir.resolve())
    if dataset.data_dir is not None:
        return dataset.data_dir
    found = resolve_data_dir(dataset.name)
    return None if found is None else str(found.resolve())


def with_data_dir(cfg: Any, data_dir: Path | None) -> Any:
    """``cfg`` with its dataset's ``data_dir`` set by :func:`dataset_location`."""
    location = dataset_location(cfg.dataset, data_dir)
    if location == cfg.dataset.data_dir:
        return cfg
    dataset = cfg.dataset.model_copy(update={"data_dir": location})
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
    seed: int | None = SEED_OPT,
    seeds: int | None = typer.Option(
        None,
        "--seeds",
        min=1,
        max=MAX_SEEDS,
        help="replicate N times: seeds 0..N-1, each with its own clean model (baseline per_seed); "
        "the report gives mean, sample std and 95% intervals",
    ),
    overwrite: bool = OVERWRITE_OPT,
    resume: bool = typer.Option(
        False,
        "--resume",
        help="continue a stopped run in --out: the seeds' poisoned models already there are reused "
        "(checked to be this config's: same training config, poisoned data and parent), the rest trained",
    ),
) -> None:
    """Run one poisoning experiment (clean baseline cached, attack, integration, metrics, report)."""
    from rich.table import Table

    from poisonlab.experiments import load_experiment, run_experiment, write_experiment
    from poisonlab.experiments.single.build import check_experiment, experiment_splits
    from poisonlab.experiments.single.report import metric_rows
    from poisonlab.experiments.single.run import claim_experiment_dirs

    use_threads(threads)
    seed_list(seed, seeds)  # not both
    cfg = with_data_dir(load_experiment(config), data_dir)
    if seed is not None:
        cfg = cfg.model_copy(update={"seeds": [seed]})
    if seeds is not None:
        cfg = cfg.model_copy(update={"seeds": list(range(seeds)), "baseline": "per_seed"})
    # a folder holding an earlier run (or one of its models) is refused now, not after the training
    claim_experiment_dirs(cfg, out, overwrite=overwrite, resume=resume)
    stage(f"loading {cfg.dataset.name}")
    splits = experiment_splits(cfg)
    check_experiment(cfg, splits)  # every seed's attack, before any training
    first_clean = cfg.clean_train_config(cfg.seeds[0])  # per_seed: the others train in the run
    ensure_baseline(splits, first_clean, name=None, device=device, progress=not quiet)
    stage(_poison_stage(cfg, splits))
    result = run_experiment(
        cfg, out, device=device, progress=not quiet, splits=splits, overwrite=overwrite, resume=resume
    )
    stage("measuring done; writing the report")
    page = write_experiment(result, out, save_data=save_data, overwrite=overwrite)
    table = Table(title=cfg.name)
    for column in ("metric", "clean model", "poisoned model"):
        table.add_column(column, no_wrap=column != "metric")
    for row in metric_rows(result):
        table.add_row(*row)
    console.print(table)
    console.print(f"report: {page}", soft_wrap=True)


def _poison_stage(cfg: Any, splits: Any) -> str:
    """``poisoning (backdoor), then training ... for seed 0 (~13 min each on 2 idle cores)``."""
    seeds = f"seed{'s' * (len(cfg.seeds) > 1)} {', '.join(map(str, cfg.seeds))}"
    text = f"poisoning ({cfg.attack.kind}), then {_INTEGRATION[cfg.integration]}, {seeds}"
    if cfg.baseline == "per_seed" and len(cfg.seeds) > 1:
        text = f"each seed's own clean model (trained once, then cached), {text}"
    if cfg.integration == "finetune_poison_only":
        return text  # a handful of images: seconds
    estimate = train_time(cfg.poison_train_config(cfg.seeds[0]), splits.train)
    return text + (
        estimate.replace(" on 2 idle cores", " each on 2 idle cores") if len(cfg.seeds) > 1 else estimate
    )


@cli_errors
def demo_command(
    out: Path = out_option("folder for the reports and the summary", default=Path("demo-output")),
    dataset: str = DATASET_OPT,
    data_dir: Path | None = DATA_DIR_OPT,
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="shorten training (smoke runs)"),
    seed: int | None = typer.Option(
        None, "--seed", help="seed of the attacks and poisoned models (default 0)", **SEED_RANGE
    ),
    device: str = DEVICE_OPT,
    threads: int | None = THREADS_OPT,
    quiet: bool = QUIET_OPT,
    overwrite: bool = OVERWRITE_OPT,
) -> None:
    """The chapter's lab in one command: clean model, backdoor and mislabel attacks, reports."""
    from poisonlab.data.catalog import load_named_splits, resolve_data_dir, shared_data_root
    from poisonlab.experiments.single.demo import DEMO_DEFENSES, claim_demo_dirs, demo_configs, run_demo
    from poisonlab.experiments.single.demo_report import write_demo

    use_threads(threads)
    shared_dir = shared_data_root()  # the chapter's photos (Rutan Boomerang) on cifar10
    location = resolve_data_dir(dataset, data_dir)
    seeds = [0 if seed is None else seed]
    configs = demo_configs(
        dataset, data_dir=None if location is None else str(location), shared_dir=shared_dir,
        epochs=epochs, seeds=seeds,
    )  # fmt: skip
    claim_demo_dirs(configs, out, overwrite=overwrite)  # an earlier demo in OUT is refused now, not later
    stage(f"loading {dataset}")
    splits = load_named_splits(dataset, data_dir=location)
    ensure_baseline(splits, configs[0].clean_train_config(), name=None, device=device, progress=not quiet)
    steps = [f"{c.name}: {_poison_stage(c, splits)}" for c in configs]
    stage(
        "; ".join(steps) + f"; then scanning the backdoored training set with {len(DEMO_DEFENSES)} defenses"
    )
    result = run_demo(
        out,
        dataset=dataset,
        data_dir=None if location is None else str(location),
        shared_dir=shared_dir,
        epochs=epochs,
        seeds=seeds,
        device=device,
        progress=not quiet,
        splits=splits,
        overwrite=overwrite,
    )
    stage("writing the reports")
    _print_demo(result, write_demo(result, out, overwrite=overwrite), out)


def _print_demo(result: Any, summary: Path, out: Path) -> None:
    from rich.table import Table

    from poisonlab.experiments.single.demo_report import (
        ATTACKS_LOOKING_AT,
        SCAN_DIR,
        attack_verdicts,
        scan_looking_at,
        scan_rows,
        screen_verdict_line,
        silent_detectors_line,
        summary_rows,
    )

    table = Table(title="poisonlab demo: the attacks")
    table.add_column("experiment", no_wrap=True)
    for column in ("clean acc", "poisoned acc", "ASR", "src->tgt"):
        table.add_column(column, no_wrap=True)
    rows = summary_rows(result.results)
    for row in rows:
        table.add_row(*row[:-1])
    console.print(ATTACKS_LOOKING_AT, soft_wrap=True)
    console.print(table)
    for line in attack_verdicts(result):
        console.print(f"Verdict: {line}", soft_wrap=True, markup=False)
    for row in rows:
        console.print(f"report: {out / row[-1]}", soft_wrap=True)
    scan_table = Table(title="defenses on the backdoored training set")
    for column in ("defense", "flagged", "precision", "recall", "F1", "AUROC"):
        scan_table.add_column(column, no_wrap=True)
    for row in scan_rows(result.scan):
        scan_table.add_row(*row)
    console.print(scan_looking_at(result.scan), soft_wrap=True)
    console.print(scan_table)
    silent = silent_detectors_line(result.scan)
    if silent:
        console.print(silent, soft_wrap=True)
    console.print(screen_verdict_line(result.scan), soft_wrap=True, markup=False)
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
    seed: int | None = SEED_OPT,
    seeds: int | None = GRID_SEEDS_OPT,
    overwrite: bool = OVERWRITE_OPT,
    executor: str = EXECUTOR_OPT,
    ray_address: str | None = RAY_ADDRESS_OPT,
    workers: int | None = WORKERS_OPT,
    store: Path | None = STORE_OPT,
    resume: bool = RESUME_OPT,
) -> None:
    """Run every attack of CONFIG against every defense: detection P/R/F1/AUROC and mitigation."""
    from poisonlab.provenance import claim_run_dirs

    use_threads(threads)
    chosen = seed_list(seed, seeds)
    # --resume continues the run in OUT (refused when another command's); otherwise a finished run
    # there, or in a seed-K folder of an interrupted --seeds run, is refused unless --overwrite
    folders = [out] if seeds is None else [out, *(out / f"seed-{s}" for s in chosen)]
    claim_run_dirs(folders, kind="matrix", overwrite=overwrite, resume=resume)
    options = {"address": ray_address, "workers": workers, "store": store, "threads": threads}
    with executor_session(executor, quiet=quiet, **options) as runner:
        if seeds is None:
            _run_matrix(config, out, data_dir, device, quiet, seed, runner, resume)
            return
        for s in chosen:  # one whole grid per seed, its rows side by side on the executor
            stage(f"seed {s} of 0..{seeds - 1}")
            _run_matrix(config, out / f"seed-{s}", data_dir, device, quiet, s, runner, resume)
    _combine_matrix_seeds(out, [out / f"seed-{s}" for s in chosen])


def _combine_matrix_seeds(out: Path, folders: list[Path]) -> None:
    """``--seeds N``: the per-seed ``matrix.json`` files combined into one report in ``out``."""
    import json

    from poisonlab.experiments.matrix.report import write_matrix_seeds

    results = [json.loads((f / "matrix.json").read_text(encoding="utf-8")) for f in folders]
    paths = write_matrix_seeds(results, out)
    console.print(f"report over {len(folders)} seeds: {paths['report_html']}", soft_wrap=True)


def _run_matrix(
    config: Path,
    out: Path,
    data_dir: Path | None,
    device: str,
    quiet: bool,
    seed: int | None,
    runner: Any,
    resume: bool,
) -> None:
    """The body of ``poisonlab matrix`` once its executor is up."""
    from rich.table import Table

    from poisonlab.experiments.matrix import load_matrix, run_matrix, write_matrix
    from poisonlab.experiments.matrix.run import matrix_splits
    from poisonlab.experiments.single.build import check_experiment

    cfg = with_data_dir(load_matrix(config), data_dir)
    if seed is not None:
        cfg = cfg.model_copy(update={"seed": seed})
    runner.connect()  # Ray's workers start while this process loads the data and checks the attacks
    stage(f"loading {cfg.dataset.name}")
    splits, _ = matrix_splits(cfg)
    for row in cfg.attacks:  # every attack, mislabel images included, before any training
        check_experiment(cfg.experiment(row), splits)
    clean_cfg = cfg.experiment(cfg.attacks[0]).clean_train_config().model_copy(update={"seed": cfg.seed})
    journal = out / "cells.jsonl"
    if not resume:
        journal.unlink(missing_ok=True)  # a fresh run (--overwrite): the old run's cells go
    if runner.in_process:
        ensure_baseline(splits, clean_cfg, name=f"{cfg.name}-clean", device=device, progress=not quiet)
        row_stage = _matrix_row_stage(cfg, splits, clean_cfg)
    else:  # the clean model is the cluster's first task; the rows run side by side
        stage(_ray_stage(cfg, splits, clean_cfg, runner))
        row_stage = None
    if row_stage is not None:
        row_stage(0)

    def on_row(partial: Any) -> None:
        # the report is rewritten after every attack: a stopped CPU run keeps its finished rows
        write_matrix(partial, out)
        if row_stage is not None:
            row_stage(len(partial.rows))

    result = run_matrix(
        cfg, device=device, progress=not quiet, on_row=on_row, executor=runner, journal=journal
    )
    columns = cfg.defense_names()
    table = Table(title=f"{cfg.name}: detection F1")
    table.add_column("attack")
    for name in columns:
        table.add_column(name[:12])
    for row in result.rows:
        cells = [row.detection.get(name, {}).get("f1") for name in columns]
        table.add_row(row.name, *("-" if v is None else f"{v:.2f}" for v in cells))
    console.print(table)
    console.print(f"report: {out / 'report.html'}", soft_wrap=True)


def _ray_stage(cfg: Any, splits: Any, train_cfg: Any, runner: Any) -> str:
    """The header of a matrix on Ray: the clean model first, then every row as its own task."""
    estimate = train_time(train_cfg, splits.train).replace(" on 2 idle cores", " on 2 idle cores each")
    return (
        f"{len(cfg.attacks)} attack rows as Ray tasks ({runner!r}, store {runner.store}): the clean "
        f"model first, then per row poisoning, training{estimate} unless cached, scanning, mitigation"
    )


def _matrix_row_stage(cfg: Any, splits: Any, train_cfg: Any) -> Any:
    """A function printing the header of attack row ``i`` (nothing past the last row)."""
    rows, estimate = cfg.attacks, train_time(train_cfg, splits.train)
    mitigation = "" if cfg.mitigation.defenses == "none" else ", then mitigation retrains"
    defenses = [name for name in cfg.defense_names() if name != "screen"]

    def header(i: int) -> None:
        if i < len(rows):
            stage(
                f"attack {i + 1}/{len(rows)} {rows[i].name}: poisoning, training on the poisoned set"
                f"{estimate} unless cached, scanning with {len(defenses)} defenses{mitigation}"
            )

    return header
