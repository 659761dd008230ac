"""``poisonlab matrix CONFIG``: every attack against every defense, measured.

For each attack (a row): poison the training set, train a model on it from scratch (cached),
measure its clean accuracy and attack success, and scan the poisoned set with every defense
(a column) sharing one forward pass; each cell gets precision / recall / F1 / FPR / AUROC
against the attack's ground-truth poison mask. Without ``defenses`` in the config the columns are
the default screen's detectors (:func:`poisonlab.defenses.scan.screen_methods`, the trusted set
included) and their combined verdict, the ``screen`` column. Then the chosen cells are mitigated:
the flagged samples are dropped (or relabelled), a model is retrained from scratch with the same
recipe, and its clean accuracy and attack success are measured again. By default the screen's
flags are dropped (no ground truth involved); ``"best"`` picks the detector with the highest F1
against the true poison, a reference no user could pick that way; an "oracle" mitigation (drop
the true poison) gives the upper bound.

Attack success is the attack's own goal on the test set: for a backdoor, the share of
triggered source-class test images predicted as the target (all non-target classes for an
all-to-one backdoor); for label attacks, the share of clean source-class test images predicted
as the target.

Models are cached (:mod:`poisonlab.experiments.common.cache`), so a rerun only trains what
changed. Each attack row is one cell (:func:`matrix_row_cell`: poison, train, scan, mitigation
retrains) run by an executor (:mod:`poisonlab.experiments.executor`): in this process one after
the other, or as Ray tasks; the clean model is trained first, once, as its own cell
(:func:`matrix_clean_cell`), and the row cells load it from the store by key. The runner returns
the result and calls ``on_row`` after every finished row, which is where ``poisonlab matrix``
rewrites its report; with a cell log (``journal``) a rerun skips the rows already finished.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from poisonlab.data.dataset import Dataset, Splits
from poisonlab.experiments.common.cache import cached_model
from poisonlab.experiments.common.measure import AttackTargets
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
from poisonlab.experiments.matrix.config import MatrixConfig
from poisonlab.experiments.matrix.records import AttackRow, MatrixResult
from poisonlab.experiments.matrix.row import matrix_splits, model_success, run_row
from poisonlab.models.base import PoisonlabModel

__all__ = ["matrix_clean_cell", "matrix_row_cell", "matrix_splits", "run_matrix"]

#: the splits and trusted set, and the clean model, of the last matrix this process ran cells of
_SPLITS = ProcessMemo(size=1)
_CLEAN = ProcessMemo(size=1)


def _clean_config(cfg: MatrixConfig) -> Any:
    return cfg.experiment(cfg.attacks[0]).clean_train_config().model_copy(update={"seed": cfg.seed})


def _splits(cfg: MatrixConfig) -> tuple[Splits, Dataset]:
    """:func:`matrix_splits`, built once per process."""
    return _SPLITS.get(cfg.model_dump_json(), lambda: matrix_splits(cfg))


def _clean(cfg: MatrixConfig, store: str | None, device: str, progress: bool) -> tuple[PoisonlabModel, str]:
    """The clean model and its id (trained into the store, or loaded from it), once per process."""

    def build() -> tuple[PoisonlabModel, str]:
        splits, _ = _splits(cfg)
        model, model_id, _, _ = cached_model(
            splits, _clean_config(cfg), device=device, progress=progress, name=f"{cfg.name}-clean"
        )
        return model, model_id

    return _CLEAN.get((cfg.model_dump_json(), store, device), build)


def matrix_clean_cell(cfg: MatrixConfig, store: str | None, device: str, progress: bool) -> dict[str, Any]:
    """The matrix's first cell: train (or load) the clean model into the store; its figures.

    Parameters
    ----------
    cfg
        The matrix.
    store
        The model store folder (``$POISONLAB_HOME`` of the cell; None: this process's).
    device, progress
        Torch device and progress bars.

    Returns
    -------
    dict
        ``model_id``, ``clean_accuracy`` and ``attack_success`` (None): the result's ``clean``.
    """
    with store_home(store):
        splits, _ = _splits(cfg)
        model, model_id = _clean(cfg, store, device, progress)
        return {"model_id": model_id, **model_success(model, splits, AttackTargets(None, None), device)}


def matrix_row_cell(
    cfg: MatrixConfig, index: int, store: str | None, device: str, progress: bool
) -> dict[str, Any]:
    """One attack row (``cfg.attacks[index]``): poison, train, scan, mitigation retrains.

    The data is rebuilt from the config (seeded), so only the config and the index travel to a
    worker; the clean model comes from the store once the row's own model has trained (the
    clean cell, submitted first, trains it meanwhile).

    Returns
    -------
    dict
        The row's :class:`~poisonlab.experiments.matrix.records.AttackRow` as a dict (JSON-ready).
    """
    with store_home(store):
        splits, trusted = _splits(cfg)

        def clean_model() -> PoisonlabModel:
            return _clean(cfg, store, device, progress)[0]

        row = run_row(cfg, cfg.attacks[index], splits, trusted, clean_model, device, progress)
        return dataclasses.asdict(row)


def matrix_fingerprint(cfg: MatrixConfig) -> str:
    """What a matrix's figures depend on (its cell log refuses another): the config, less its
    description and the local paths."""
    data = cfg.model_dump(mode="json", exclude={"base_dir", "description"})
    data["dataset"].pop("data_dir", None)
    return fingerprint(data)


def _describe_row(record: dict[str, Any]) -> str:
    poisoned = record.get("poisoned") or {}
    asr, acc = poisoned.get("attack_success"), poisoned.get("clean_accuracy")
    screen = (record.get("detection") or {}).get("screen") or {}
    text = f"{record.get('poison_count')} poisons, clean acc {'-' if acc is None else f'{acc:.3f}'}, "
    text += f"attack success {'-' if asr is None else f'{asr:.2f}'}"
    return text + (f", screen F1 {screen['f1']:.2f}" if screen.get("f1") is not None else "")


def run_matrix(
    cfg: MatrixConfig,
    *,
    device: str = "auto",
    progress: bool = True,
    on_row: Callable[[MatrixResult], None] | None = None,
    executor: Executor | None = None,
    journal: str | Path | None = None,
) -> MatrixResult:
    """Run every attack of ``cfg`` against every defense.

    Parameters
    ----------
    cfg
        The matrix.
    device, progress
        Torch device and progress bars (bars only where the cells run in this process).
    on_row
        Called with the result so far after every finished attack row (``poisonlab matrix``
        rewrites its report there, so a long CPU run that is stopped still leaves its finished
        rows). Rows are kept in config order whatever order they finish in.
    executor
        Where the cells run (default: :class:`~poisonlab.experiments.executor.LocalExecutor`,
        one after the other in this process).
    journal
        A cell log (``cells.jsonl``, :class:`~poisonlab.experiments.executor.CellLog`): rows
        found there are not run again; every finished row is appended.

    Returns
    -------
    MatrixResult
        Write it with :func:`poisonlab.experiments.matrix.report.write_matrix`.

    Raises
    ------
    GridIncomplete
        After the last row, when some rows failed twice (the others are in ``on_row``'s result
        and the journal).
    """
    executor = executor or LocalExecutor()
    start, args = time.perf_counter(), (executor.store, device, progress and executor.in_process)
    result = MatrixResult(config=cfg, rows=[], clean={}, seconds=0.0)
    log = None if journal is None else CellLog(journal, matrix_fingerprint(cfg))
    finished = {} if log is None else log.finished()
    index = {f"attack:{row.name}": i for i, row in enumerate(cfg.attacks)}
    rows = {index[k]: AttackRow(**r) for k, r in finished.items() if k in index}
    # the clean model first (in its own cell), then every unfinished row; on Ray they overlap
    tasks = [CellTask("clean", matrix_clean_cell, (cfg, *args), "clean model", setup=True)]
    tasks += [CellTask(k, matrix_row_cell, (cfg, i, *args), cfg.attacks[i].name) for k, i in index.items()]
    tasks = [t for t in tasks if t.key == "clean" or index[t.key] not in rows]

    def publish() -> None:  # rows wait for the clean model's figures, which the report shows
        result.rows = [rows[i] for i in sorted(rows)]
        result.seconds = time.perf_counter() - start
        if on_row is not None and result.clean and rows:
            on_row(result)

    def on_outcome(outcome: CellOutcome) -> None:
        if not outcome.ok:
            if log is not None:
                log.append_failure(outcome.key, outcome.error or "", outcome.traceback)
        elif outcome.key == "clean":
            result.clean = outcome.record or {}
            publish()
        else:
            if log is not None:
                log.append(outcome.key, outcome.record or {})
            rows[index[outcome.key]] = AttackRow(**(outcome.record or {}))
            publish()

    summary = executor.run(
        tasks, on_outcome=on_outcome, describe=_describe_row, device=device, already=len(rows)
    )
    _SPLITS.clear()  # the clean model and the splits are not needed past the grid
    _CLEAN.clear()
    if summary.failed:
        raise GridIncomplete(summary.failed, len(cfg.attacks) + 1, partial=result)
    return result
