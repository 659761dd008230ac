"""One cell of the detection benchmark: poison, train from scratch, measure, scan, score.

The science of :mod:`poisonlab.experiments.detection.run` (see its docstring for the protocol);
the runner there turns each cell into a task an executor runs.

Memory: ``rss_peak_mib`` is the resident-set peak of the process during the scan (Linux: the
kernel's high-water mark, reset through ``/proc/self/clear_refs`` before the scan; None where
that is not available), ``rss_start_mib`` the resident set before it (the peak minus the start
is what the scan added), ``process_max_rss_mib`` the process's high-water mark so far
(:func:`resource.getrusage`, never decreasing) and ``cuda_peak_mib`` the peak of torch's CUDA
allocator during the scan (None on CPU).  No allocation tracing: :mod:`tracemalloc` made the
tree-based detectors up to ten times slower and would distort their seconds.  The scan fits every
detector on one shared context, so memory is measured per scan, not per detector; seconds are
per detector.  In a Ray worker these are the worker process's figures.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from poisonlab.attacks.base import PoisonResult
from poisonlab.data.dataset import Dataset, Splits
from poisonlab.defenses.scan import ScanResult, scan
from poisonlab.experiments.common.cache import cached_model
from poisonlab.experiments.detection.cases import Case, Cell, make_case
from poisonlab.experiments.detection.config import DetectionConfig
from poisonlab.experiments.detection.records import ResultsStore, score_record
from poisonlab.inference import predict
from poisonlab.models.base import PoisonlabModel
from poisonlab.training import train

__all__ = ["CellContext", "attack_success", "cell_record", "clean_context", "run_cell"]

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


def clean_context(cfg: DetectionConfig, splits: Splits, seed: int, progress: bool) -> CellContext:
    """The seed's clean model (trained once, cached) and its figures on the test split."""
    model, model_id, _, cached = cached_model(
        splits, cfg.train_config(seed), device=cfg.device, progress=progress, name=f"{cfg.name}-clean-s{seed}"
    )
    accuracy = float(np.mean(predict(model, splits.test.x, device=cfg.device) == splits.test.y))
    clean = {"model_id": model_id, "cached": cached, "clean_accuracy": accuracy}
    return CellContext(cfg, splits, model, clean, progress)


def attack_success(case: Case, model: PoisonlabModel, test: Dataset, device: str) -> float | None:
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
    """Clean accuracy and attack success of the cell's model, beside the seed's clean model, and
    what trained it (``arch``, ``recipe``, ``epochs``: :meth:`DetectionConfig.recipe`)."""
    test, device = ctx.splits.test, ctx.cfg.device
    return {
        "clean_accuracy": float(np.mean(predict(model, test.x, device=device) == test.y)),
        "attack_success": attack_success(case, model, test, device),
        "clean_model_accuracy": ctx.clean["clean_accuracy"],
        "clean_model_attack_success": attack_success(case, ctx.clean_model, test, device),
        "clean_model_id": ctx.clean["model_id"],
        **ctx.cfg.recipe(),  # arch, recipe name and epochs: which network the figures are of
    }


def cell_record(ctx: CellContext, cell: Cell) -> tuple[dict[str, Any], np.ndarray, dict]:
    """Poison, train, measure and scan one cell: its record, the poison mask, the score arrays."""
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
    record = {
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
    return record, data.mask_or_clean(), arrays


def run_cell(ctx: CellContext, cell: Cell, store: ResultsStore | None = None) -> dict[str, Any]:
    """Poison, train, measure and scan one cell; its record (scores saved when ``store`` is given)."""
    record, mask, arrays = cell_record(ctx, cell)
    if store is not None:
        store.save_scores(cell.id, mask, arrays)
    return record
