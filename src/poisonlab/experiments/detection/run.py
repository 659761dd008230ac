"""Run the detection benchmark cell by cell: poison, train from scratch, scan, record.

For every cell of the grid (:func:`poisonlab.experiments.detection.cases.grid`) the runner draws
the case, poisons the training split with the library's attack, trains a model from scratch on
the poisoned set with :func:`poisonlab.training.train` (the dataset's default recipe), measures
its clean accuracy and the attack's success on the test split, and runs the detectors with their
frozen defaults in one :func:`poisonlab.defenses.scan.scan` (one shared forward pass; the
validation split is the trusted set), combined by the screen.  Each detector and the screen are
scored against the ground-truth poison mask (:func:`~.records.score_record`).

The clean model of each seed (the no-poison control, the surrogate of the label-consistent
attack and the reference for the attack's success without poison) is trained once and cached
(:func:`poisonlab.experiments.common.cache.cached_model`).

Cells run through an executor (:mod:`poisonlab.experiments.executor`): in this process one after
the other, or as Ray tasks.  The seeds' clean models come first, each its own cell
(:func:`detection_clean_cell`), then the grid's cells (:func:`detection_cell`), which load the
clean model from the store by key and return their record with the per-sample scores packed in
(``scores_npz``); this process writes both to the output folder as each cell finishes.
The cell itself (and how its memory is measured) is :mod:`.cell`.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.data.catalog import load_splits
from poisonlab.data.dataset import Splits
from poisonlab.experiments.detection.cases import Cell, grid
from poisonlab.experiments.detection.cell import CellContext, cell_record, clean_context, run_cell
from poisonlab.experiments.detection.config import DetectionConfig
from poisonlab.experiments.detection.records import ResultsStore
from poisonlab.experiments.executor import (
    CellOutcome,
    CellTask,
    Executor,
    GridIncomplete,
    LocalExecutor,
    ProcessMemo,
    store_home,
)

__all__ = [
    "CellContext",
    "cell_summary",
    "detection_cell",
    "detection_clean_cell",
    "run_cell",
    "run_detection",
]

#: the splits of the last grid this process ran cells of, and the contexts of its latest seeds
_SPLITS = ProcessMemo(size=1)
_CONTEXTS = ProcessMemo(size=2)


def _seed_context(cfg: DetectionConfig, seed: int, store: str | None, progress: bool) -> CellContext:
    """The seed's :class:`CellContext`, built once per process (splits shared across seeds)."""
    grid_key = (cfg.model_dump_json(), store)

    def splits() -> Splits:
        return load_splits(cfg.dataset.name, data_dir=cfg.data_dir(), seed=cfg.dataset.split_seed)

    return _CONTEXTS.get(
        (grid_key, seed), lambda: clean_context(cfg, _SPLITS.get(grid_key, splits), seed, progress)
    )


def detection_clean_cell(
    cfg: DetectionConfig, seed: int, store: str | None, progress: bool
) -> dict[str, Any]:
    """A seed's first cell: train (or load) its clean model into the store; its figures.

    Returns
    -------
    dict
        ``model_id``, ``cached`` and ``clean_accuracy`` of the seed's clean model.
    """
    with store_home(store):
        return dict(_seed_context(cfg, seed, store, progress).clean)


def detection_cell(cfg: DetectionConfig, cell: Cell, store: str | None, progress: bool) -> dict[str, Any]:
    """One cell of the grid: its record, the per-sample scores packed in as ``scores_npz``.

    Parameters
    ----------
    cfg
        The grid.
    cell
        The cell (seed, family, target mode, rate).
    store
        The model store folder (the seed's clean model is loaded from it).
    progress
        Progress bars while the model trains.

    Returns
    -------
    dict
        The record :func:`run_cell` returns, plus ``scores_npz``: the bytes of
        ``scores/<cell>.npz`` (mask and every detector's scores and flags; tens of KB on digits,
        about 1 MB on CIFAR-10), which the driver writes and drops.
    """
    with store_home(store):
        record, mask, arrays = cell_record(_seed_context(cfg, cell.seed, store, progress), cell)
    blob = io.BytesIO()
    packed = {"mask": np.asarray(mask, dtype=bool)}
    for name, (score, flagged) in arrays.items():
        packed[f"{name}.scores"] = np.asarray(score, dtype=np.float32)
        packed[f"{name}.flagged"] = np.asarray(flagged, dtype=bool)
    np.savez_compressed(blob, **packed)
    return {**record, "scores_npz": blob.getvalue()}


def cell_summary(record: dict[str, Any]) -> str:
    """One line about a finished cell: poisons, clean accuracy, attack success, the screen's TPR."""
    model, screen = record["model"], record.get("screen") or {}
    asr, tpr = model["attack_success"], screen.get("tpr_at_1fpr")
    return (
        f"{record['attack']['poisoned']} poisons, clean acc {model['clean_accuracy']:.3f}, "
        f"attack success {'-' if asr is None else f'{asr:.2f}'}, "
        f"screen TPR@1%FPR {'-' if tpr is None else f'{tpr:.2f}'}"
    )


def _clean_seeds(
    executor: Executor, cfg: DetectionConfig, seeds: list[int], args: tuple
) -> list[CellOutcome]:
    """Train (or load) the clean model of every seed; the failed seeds' outcomes."""
    outcomes: list[CellOutcome] = []
    tasks = [
        CellTask(f"clean-s{s}", detection_clean_cell, (cfg, s, *args), f"s{s} clean model", setup=True)
        for s in seeds
    ]
    executor.run(tasks, on_outcome=outcomes.append)
    return [o for o in outcomes if not o.ok]


def run_detection(
    cfg: DetectionConfig,
    out: str | Path,
    *,
    progress: bool = False,
    on_cell: Callable[[list[dict[str, Any]], dict[str, Any]], None] | None = None,
    session_info: dict[str, Any] | None = None,
    executor: Executor | None = None,
) -> list[dict[str, Any]]:
    """Run every unfinished cell of ``cfg``, writing each record to ``out`` as it finishes.

    Parameters
    ----------
    cfg : DetectionConfig
        The grid.
    out : path
        Output folder (:class:`~.records.ResultsStore`); cells already in ``out/cells.jsonl``
        are skipped, so a rerun resumes where a stopped run ended.
    progress : bool
        Progress bars while models train (where cells run in this process).
    on_cell : callable, optional
        Called with all records so far and the new one after each cell (the CLI rewrites the
        report there).
    session_info : dict, optional
        Extra provenance for this session (threads, command-line overrides).
    executor : Executor, optional
        Where the cells run (default: one after the other in this process).

    Returns
    -------
    list of dict
        Every finished record in ``out``, the earlier sessions' included.

    Raises
    ------
    ValueError
        When ``out`` holds the results of another grid, or for a bad case;
        :class:`~poisonlab.experiments.executor.GridIncomplete` after the last cell when some
        cells failed twice (the others are in ``out``).
    """
    executor = executor or LocalExecutor()
    store = ResultsStore(out)
    cells = grid(cfg)
    info = {"device": cfg.device, "executor": executor.kind, **(session_info or {})}
    session = store.start(cfg, [c.id for c in cells], info)
    commit = store.header()["sessions"][session]["commit"]  # type: ignore[index]
    records = store.records()
    done = {r["cell"] for r in records}
    todo = [c for c in cells if c.id not in done]
    args = (executor.store, progress and executor.in_process)
    failed = _clean_seeds(executor, cfg, list(dict.fromkeys(c.seed for c in todo)), args)
    lost = {int(o.key.removeprefix("clean-s")) for o in failed}

    def on_outcome(outcome: CellOutcome) -> None:
        if not outcome.ok:
            return
        record = dict(outcome.record or {})
        blob = record.pop("scores_npz")
        store.scores_dir.mkdir(parents=True, exist_ok=True)
        (store.scores_dir / f"{record['cell']}.npz").write_bytes(blob)
        finished = datetime.now(UTC).isoformat(timespec="seconds")
        record |= {"session": session, "commit": commit, "finished": finished}
        store.append(record)
        records.append(record)
        if on_cell is not None:
            on_cell(records, record)

    tasks = [CellTask(c.id, detection_cell, (cfg, c, *args)) for c in todo if c.seed not in lost]
    summary = executor.run(
        tasks, on_outcome=on_outcome, describe=cell_summary, device=cfg.device, already=len(done)
    )
    _CONTEXTS.clear()
    _SPLITS.clear()
    failed += summary.failed
    if failed:
        raise GridIncomplete(failed, len(cells), partial=records)
    return records
