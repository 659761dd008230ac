"""Clean-label attack benchmark: craft, train the victim, count successes, run the defenses.

Protocol of Schwarzschild et al., "Just How Toxic is Data Poisoning?", ICML 2021
(arXiv:2006.12557), scaled to a CPU (see :mod:`poisonlab.experiments.clean_label.config`). Every
trial draws one victim test image that the clean victim model classifies correctly and one
adversarial target class; all attacks of a trial share that draw, so their success rates are a
paired comparison. Besides the success of each trial the runner records the *control* (does the
clean victim model already give the target label to the attacker's test input? - the patch alone
can flip an image), clean accuracy, for backdoors the rate over every triggered source-class test
image, the crafting time and memory, and the defenses' detection scores on the poisoned set.
Every (trial, attack) is one cell (:func:`clean_label_trial_cell`) run by an executor
(:mod:`poisonlab.experiments.executor`): in this process one after the other, or as Ray tasks.
The surrogate and the clean victim are prepared first, as their own cell
(:func:`clean_label_prepare_cell`, the surrogate trained once into the store); the trials' draws
are made from its figures in this process, so every executor runs the same trials.  A worker
process loads the surrogate from the store once; the clean victim of the transfer settings (a
linear head or a fine-tune, not cached) is refit once per worker process.  The runner
returns the rows and hands each to ``on_row`` as it finishes, which is where ``poisonlab
clean-label`` rewrites ``results.json`` and the report; with a cell log (``journal``) a rerun
skips the finished rows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.experiments.clean_label.config import CleanLabelConfig
from poisonlab.experiments.clean_label.records import CleanLabelResult
from poisonlab.experiments.clean_label.trial import check_attacks, draw_trial, prepare_context, run_trial
from poisonlab.experiments.executor import (
    CellLog,
    CellOutcome,
    CellTask,
    Executor,
    GridIncomplete,
    LocalExecutor,
    ProcessMemo,
    fingerprint,
    store_home,
)

__all__ = ["clean_label_prepare_cell", "clean_label_trial_cell", "run_clean_label"]

#: the data, surrogate and clean victim of the last benchmark this process ran cells of
_SHARED = ProcessMemo(size=1)


def _shared(cfg: CleanLabelConfig, store: str | None, progress: bool) -> dict[str, Any]:
    """:func:`~.trial.prepare_context`'s context, built once per process."""
    return _SHARED.get((cfg.model_dump_json(), store), lambda: prepare_context(cfg, progress))


def clean_label_prepare_cell(cfg: CleanLabelConfig, store: str | None, progress: bool) -> dict[str, Any]:
    """The benchmark's first cell: the surrogate (trained once into the store), the clean victim.

    Parameters
    ----------
    cfg
        The benchmark.
    store
        The model store folder (``$POISONLAB_HOME`` of the cell; None: this process's).
    progress
        Progress bars while the surrogate / clean victim train.

    Returns
    -------
    dict
        ``clean`` (the result's), ``labels`` (int list, the evaluation set's labels), ``classes``
        and ``correct`` (bool list: the clean victim classifies each evaluation image right),
        what the trials are drawn from.
    """
    with store_home(store):
        ctx = _shared(cfg, store, progress)
        evaluation: Dataset = ctx["evaluation"]
        return {
            "clean": ctx["clean"],
            "labels": evaluation.y.tolist(),
            "classes": evaluation.num_classes,
            "correct": ctx["correct"].tolist(),
        }


def clean_label_trial_cell(
    cfg: CleanLabelConfig, spec: tuple[int, int, tuple[int, int, int]], store: str | None, progress: bool
) -> dict[str, Any]:
    """One (trial, attack): craft, train the victim on the poison, measure, scan.

    Parameters
    ----------
    cfg
        The benchmark.
    spec
        ``(trial, index of the attack in cfg.attacks, (victim index, source class, target class))``.
    store, progress
        As for :func:`clean_label_prepare_cell` (the surrogate is loaded from the store).

    Returns
    -------
    dict
        The trial's row (see :class:`~poisonlab.experiments.clean_label.records.CleanLabelResult`).
    """
    trial, attack, draw = spec
    with store_home(store):
        return run_trial(_shared(cfg, store, progress), cfg.attacks[attack], trial, tuple(draw))


def clean_label_fingerprint(cfg: CleanLabelConfig) -> str:
    """What the benchmark's rows depend on (its cell log refuses another config).

    The number of trials is left out: trial ``k`` draws its victim and target as the ``k``-th
    draw of one seeded stream and crafts with seed ``seed * 1000 + k``, whatever the count, so
    ``--trials 50 --resume`` extends a 10-trial run with the same first 10 trials.
    """
    return fingerprint(_fingerprinted(cfg))


def _fingerprinted(cfg: CleanLabelConfig) -> dict[str, Any]:
    data = cfg.model_dump(mode="json", exclude={"base_dir", "description", "device", "trials"})
    data["dataset"].pop("data_dir", None)
    return data


#: the trial counts whose older fingerprints a cell log still accepts (see below)
_LEGACY_TRIAL_COUNTS = range(1, 1001)


def legacy_clean_label_fingerprints(cfg: CleanLabelConfig) -> frozenset[str]:
    """The fingerprints of ``cfg`` as logs written before the trial count left it spell them.

    Those included ``trials``; since no cell depends on it, a log written with any count up to
    1000 (the committed runs have 4 to 50) is accepted for the same config.
    """
    data = _fingerprinted(cfg)
    return frozenset(fingerprint({**data, "trials": n}) for n in _LEGACY_TRIAL_COUNTS)


def _describe_trial(row: dict[str, Any]) -> str:
    verdict = "success" if row.get("success") else "fail"
    return f"{row['victim_class']} -> {row['target_class']} {verdict} (clean acc {row['clean_accuracy']:.3f})"


def _prepared(executor: Executor, cfg: CleanLabelConfig, args: tuple) -> dict[str, Any]:
    """Run the preparation cell; a failure ends the benchmark (no trial can run without it)."""
    outcomes: list[CellOutcome] = []
    task = CellTask(
        "prepare", clean_label_prepare_cell, (cfg, *args), "surrogate and clean victim", setup=True
    )
    executor.run([task], on_outcome=outcomes.append)
    if not outcomes[0].ok:
        raise GridIncomplete(outcomes, 1)
    prepared = outcomes[0].record or {}
    if not any(prepared["correct"]):
        raise ValueError("the clean victim model classifies no evaluation image correctly; train it longer")
    return prepared


def _trial_tasks(cfg: CleanLabelConfig, prepared: dict[str, Any], args: tuple) -> list[CellTask]:
    """Every (trial, attack) cell; the draws are made here, trial by trial, as they always were."""
    rng = np.random.default_rng(cfg.seed + 7)
    labels, correct = np.asarray(prepared["labels"]), np.asarray(prepared["correct"], dtype=bool)
    tasks = []
    for trial in range(cfg.trials):
        draw = draw_trial(rng, labels, prepared["classes"], correct)
        for i, spec in enumerate(cfg.attacks):
            key, label = f"trial{trial}:{spec.name}", f"trial {trial} {spec.name}"
            tasks.append(CellTask(key, clean_label_trial_cell, (cfg, (trial, i, draw), *args), label))
    return tasks


def run_clean_label(
    cfg: CleanLabelConfig,
    *,
    progress: bool = True,
    on_row: Callable[[CleanLabelResult, dict[str, Any]], None] | None = None,
    executor: Executor | None = None,
    journal: str | Path | None = None,
) -> CleanLabelResult:
    """Run every trial of every attack.

    Parameters
    ----------
    cfg
        The benchmark.
    progress
        Progress bars while the surrogate / clean victim train (where cells run in this process).
    on_row
        Called with the run so far and the row that just finished, after every (trial, attack);
        ``poisonlab clean-label`` rewrites ``results.json`` and the report there, so a stopped
        run keeps its finished trials. Rows are kept in (trial, attack) order.
    executor
        Where the cells run (default: :class:`~poisonlab.experiments.executor.LocalExecutor`).
    journal
        A cell log (``cells.jsonl``): rows found there are not run again; every finished row is
        appended.

    Returns
    -------
    CleanLabelResult
        Write it with :func:`poisonlab.experiments.clean_label.report.write_clean_label`.

    Raises
    ------
    GridIncomplete
        After the last cell, when some cells failed twice.
    """
    check_attacks(cfg)  # before the surrogate trains
    executor = executor or LocalExecutor()
    args = (executor.store, progress and executor.in_process)
    prepared = _prepared(executor, cfg, args)
    run = CleanLabelResult(config=cfg, clean=prepared["clean"])
    tasks = _trial_tasks(cfg, prepared, args)
    order = {t.key: n for n, t in enumerate(tasks)}
    log = (
        None
        if journal is None
        else CellLog(journal, clean_label_fingerprint(cfg), also=legacy_clean_label_fingerprints(cfg))
    )
    rows = {k: r for k, r in ({} if log is None else log.finished()).items() if k in order}

    def on_outcome(outcome: CellOutcome) -> None:
        if not outcome.ok:
            if log is not None:
                log.append_failure(outcome.key, outcome.error or "", outcome.traceback)
            return
        if log is not None:
            log.append(outcome.key, outcome.record or {})
        rows[outcome.key] = outcome.record or {}
        run.trials = [rows[k] for k in sorted(rows, key=order.__getitem__)]
        if on_row is not None:
            on_row(run, rows[outcome.key])

    run.trials = [rows[k] for k in sorted(rows, key=order.__getitem__)]
    todo = [t for t in tasks if t.key not in rows]
    summary = executor.run(
        todo, on_outcome=on_outcome, describe=_describe_trial, device=cfg.device, already=len(rows)
    )
    _SHARED.clear()
    if summary.failed:
        raise GridIncomplete(summary.failed, len(tasks), partial=run)
    return run
