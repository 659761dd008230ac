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

Memory: ``rss_peak_mib`` is the resident-set peak of the process during the scan (Linux: the
kernel's high-water mark, reset through ``/proc/self/clear_refs`` before the scan; None where
that is not available), ``rss_start_mib`` the resident set before it (the peak minus the start
is what the scan added), ``process_max_rss_mib`` the process's high-water mark so far
(:func:`resource.getrusage`, never decreasing) and ``cuda_peak_mib`` the peak of torch's CUDA
allocator during the scan (None on CPU).  No allocation tracing: :mod:`tracemalloc` made the
tree-based detectors up to ten times slower and would distort their seconds.  The scan fits every
detector on one shared context, so memory is measured per scan, not per detector; seconds are
per detector.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from poisonlab.attacks.base import PoisonResult
from poisonlab.data.catalog import load_splits
from poisonlab.data.dataset import Dataset, Splits
from poisonlab.defenses.scan import ScanResult, scan
from poisonlab.experiments.common.cache import cached_model
from poisonlab.experiments.detection.cases import Case, Cell, grid, make_case
from poisonlab.experiments.detection.config import DetectionConfig
from poisonlab.experiments.detection.records import ResultsStore, score_record
from poisonlab.inference import predict
from poisonlab.models.base import PoisonlabModel
from poisonlab.training import train

__all__ = ["CellContext", "run_cell", "run_detection"]

_MIB = 1024 * 1024
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class CellContext:
    """What every cell of one seed shares: the config, the splits, the seed's clean model."""

    cfg: DetectionConfig
    splits: Splits
    clean_model: PoisonlabModel
    clean: dict[str, Any]
    progress: bool = False


def _clean_context(cfg: DetectionConfig, splits: Splits, seed: int, progress: bool) -> CellContext:
    """The seed's clean model (trained once, cached) and its figures on the test split."""
    model, model_id, _, cached = cached_model(
        splits, cfg.train_config(seed), device=cfg.device, progress=progress, name=f"{cfg.name}-clean-s{seed}"
    )
    accuracy = float(np.mean(predict(model, splits.test.x, device=cfg.device) == splits.test.y))
    clean = {"model_id": model_id, "cached": cached, "clean_accuracy": accuracy}
    return CellContext(cfg, splits, model, clean, progress)


def _success(case: Case, model: PoisonlabModel, test: Dataset, device: str) -> float | None:
    """Share of the attacker's test inputs that get the attacker's label (None: no goal)."""
    inputs = case.success_inputs(test)
    if inputs is None or len(inputs[0]) == 0:
        return None
    images, wanted = inputs
    return float(np.mean(predict(model, images, device=device) == wanted))


def _status_mib(field: str) -> float | None:
    """A ``VmRSS``/``VmHWM`` line of ``/proc/self/status`` in MiB (None where there is none)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux ``clear_refs``); whether it worked."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _measured_scan(cfg: DetectionConfig, data: Dataset, model: PoisonlabModel, trusted: Dataset) -> tuple:
    """The scan with its wall time and memory figures (see the module docstring)."""
    cuda = str(cfg.device).startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rss_start = _status_mib("VmRSS")
    scoped = _reset_peak_rss()
    start = time.perf_counter()
    result = scan(data, cfg.detectors, model=model, trusted=trusted, device=cfg.device, screen=True)
    seconds = time.perf_counter() - start
    peak = _status_mib("VmHWM") if scoped else None
    memory = {
        "seconds": seconds,
        "forward_seconds": result.forward_seconds,
        "rss_start_mib": rss_start,
        "rss_peak_mib": peak,
        "process_max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cuda_peak_mib": torch.cuda.max_memory_allocated() / _MIB if cuda else None,
    }
    return result, memory


def _detection(result: ScanResult, mask: np.ndarray, seconds: float) -> tuple[dict, dict | None, dict]:
    """Per-detector records, the screen's record and the per-sample arrays for ``scores/``."""
    detectors = {m.name: score_record(mask, m.scores, m.flagged, m.seconds, m.params) for m in result.methods}
    arrays = {m.name: (m.scores, m.flagged) for m in result.methods}
    screen = None
    if result.screen is not None:
        v = result.screen
        params = {"methods": list(v.methods), "min_votes": v.min_votes}
        screen = score_record(mask, v.scores, v.flagged, seconds, params)
        arrays["screen"] = (v.scores, v.flagged)
    return detectors, screen, arrays


def _attack_figures(case: Case, result: PoisonResult, seconds: float) -> dict[str, Any]:
    """What the attack did: its name and description, poisons asked for and made, time."""
    return {
        "name": case.params["attack"],
        "description": result.description,
        "requested": case.requested,
        "poisoned": result.num_poison,
        "train_size": len(result.dataset),
        "poison_share": result.poison_rate,
        "seconds": seconds,
        "seconds_crafting": getattr(getattr(result, "report", None), "seconds", None),
    }


def _model_figures(ctx: CellContext, case: Case, model: PoisonlabModel) -> dict[str, Any]:
    """Clean accuracy and attack success of the cell's model, beside the seed's clean model."""
    test, device = ctx.splits.test, ctx.cfg.device
    return {
        "clean_accuracy": float(np.mean(predict(model, test.x, device=device) == test.y)),
        "attack_success": _success(case, model, test, device),
        "clean_model_accuracy": ctx.clean["clean_accuracy"],
        "clean_model_attack_success": _success(case, ctx.clean_model, test, device),
        "clean_model_id": ctx.clean["model_id"],
        "epochs": ctx.cfg.train_config(case.cell.seed).epochs,
    }


def run_cell(ctx: CellContext, cell: Cell, store: ResultsStore | None = None) -> dict[str, Any]:
    """Poison, train, measure and scan one cell; its record (scores saved when ``store`` is given)."""
    cfg, splits = ctx.cfg, ctx.splits
    started = time.perf_counter()
    case = make_case(cell, splits.train, cfg.attacks, surrogate=ctx.clean_model, device=cfg.device)
    result = case.attack.poison(splits.train)
    attack = _attack_figures(case, result, time.perf_counter() - started)
    data = result.dataset
    if cell.family == "control":  # the clean set: the seed's (cached) clean model is this cell's model
        model, train_seconds = ctx.clean_model, None
    else:
        t0 = time.perf_counter()
        model = train(data, cfg.train_config(cell.seed), device=cfg.device, progress=ctx.progress).model
        train_seconds = time.perf_counter() - t0
    scanned, scan_figures = _measured_scan(cfg, data, model, splits.val)
    detectors, screen, arrays = _detection(scanned, data.mask_or_clean(), scan_figures["seconds"])
    if store is not None:
        store.save_scores(cell.id, data.mask_or_clean(), arrays)
    return {
        "cell": cell.id,
        "seed": cell.seed,
        "family": cell.family,
        "target": cell.target,
        "rate": cell.rate,
        "split": cfg.seeds.split,
        "case": case.params,
        "attack": attack,
        "model": {**_model_figures(ctx, case, model), "train_seconds": train_seconds},
        "detectors": detectors,
        "screen": screen,
        "scan": scan_figures,
        "seconds": time.perf_counter() - started,
    }


def run_detection(
    cfg: DetectionConfig,
    out: str | Path,
    *,
    progress: bool = False,
    on_cell: Callable[[list[dict[str, Any]], dict[str, Any]], None] | None = None,
    session_info: dict[str, Any] | None = None,
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
        Progress bars while models train.
    on_cell : callable, optional
        Called with all records so far and the new one after each cell (the CLI rewrites the
        report there).
    session_info : dict, optional
        Extra provenance for this session (threads, command-line overrides).

    Returns
    -------
    list of dict
        Every finished record in ``out``, the earlier sessions' included.

    Raises
    ------
    ValueError
        When ``out`` holds the results of another grid, or for a bad case.
    """
    splits = load_splits(cfg.dataset.name, data_dir=cfg.data_dir(), seed=cfg.dataset.split_seed)
    store = ResultsStore(out)
    cells = grid(cfg)
    session = store.start(cfg, [c.id for c in cells], {"device": cfg.device, **(session_info or {})})
    commit = store.header()["sessions"][session]["commit"]  # type: ignore[index]
    records = store.records()
    done = {r["cell"] for r in records}
    todo = [c for c in cells if c.id not in done]
    for seed in cfg.seeds.values:
        mine = [c for c in todo if c.seed == seed]
        if not mine:
            continue
        ctx = _clean_context(cfg, splits, seed, progress)
        for cell in mine:
            record = run_cell(ctx, cell, store)
            finished = datetime.now(UTC).isoformat(timespec="seconds")
            record |= {"session": session, "commit": commit, "finished": finished}
            store.append(record)
            records.append(record)
            if on_cell is not None:
                on_cell(records, record)
    return records
