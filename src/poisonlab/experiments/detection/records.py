"""What the detection benchmark writes, and where: provenance, one record per cell, resumable.

An output folder holds

* ``run.json``: the config (every parameter), the seeds and whether they are the development or
  the held-out grid, the network and recipe that train the models (``training``), the planned
  cells, and one *session* per start of the command with its git
  commit (``git rev-parse HEAD``, ``-dirty`` when the tree has changes), the package versions,
  Python, the platform and the threads;
* ``cells.jsonl``: one JSON record per finished cell, appended (and flushed to disk) as each
  cell finishes; a rerun with the same folder reads it and skips the finished cells;
* ``scores/<cell>.npz``: the ground-truth mask and every detector's scores and flags, so other
  operating points can be computed later without rerunning anything.

The per-detector figures are computed here from the scores and the flags (:func:`score_record`),
so every detector and the screen are measured the same way.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.experiments.detection.config import DetectionConfig
from poisonlab.metrics import detection_scores
from poisonlab.provenance import git_commit, machine, package_versions

__all__ = ["MAX_FPR", "ResultsStore", "git_commit", "package_versions", "score_record", "tpr_at_fpr"]

#: the operating point of the benchmark's headline figure: TPR at FPR <= 1 %
MAX_FPR = 0.01


def tpr_at_fpr(mask: np.ndarray, scores: np.ndarray, max_fpr: float = MAX_FPR) -> float | None:
    """The true-positive rate of the best threshold on ``scores`` whose FPR is at most ``max_fpr``.

    Parameters
    ----------
    mask : numpy.ndarray
        bool (N,), True for poison.
    scores : numpy.ndarray
        float (N,), higher = more suspicious; NaN counts as least suspicious.
    max_fpr : float
        Largest admissible false-positive rate, in [0, 1].

    Returns
    -------
    float or None
        In [0, 1]: the share of poison scored strictly above the ``(m + 1)``-th highest clean
        score, ``m = floor(max_fpr * clean)`` (so at most ``m`` clean samples pass; ties at the
        threshold are not flagged); None without poison or without clean samples.
    """
    mask = np.asarray(mask, dtype=bool)
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    clean, poison = s[~mask], s[mask]
    if clean.size == 0 or poison.size == 0:
        return None
    allowed = int(np.floor(max_fpr * clean.size + 1e-9))
    if allowed >= clean.size:
        return 1.0
    threshold = np.sort(clean)[::-1][allowed]
    return float(np.mean(poison > threshold))


def score_record(
    mask: np.ndarray, scores: np.ndarray, flagged: np.ndarray, seconds: float | None, params: dict
) -> dict[str, Any]:
    """One detector (or the screen) on one cell: the figures the report aggregates.

    Returns
    -------
    dict
        ``tpr_at_1fpr`` (:func:`tpr_at_fpr`), ``auroc``; the default decision's ``precision``,
        ``recall``, ``f1``, ``fpr`` (None where undefined, e.g. recall without poison);
        ``flagged``, ``true_positives``, ``poison``, ``clean`` counts; ``seconds``; ``params``.
    """
    mask = np.asarray(mask, dtype=bool)
    flagged = np.asarray(flagged, dtype=bool)
    figures = detection_scores(mask, flagged, scores)
    return {
        "tpr_at_1fpr": tpr_at_fpr(mask, scores),
        "auroc": figures.get("auroc"),
        "precision": figures["precision"],
        "recall": figures["recall"],
        "f1": figures["f1"],
        "fpr": figures["fpr"],
        "flagged": int(flagged.sum()),
        "true_positives": int((flagged & mask).sum()),
        "poison": int(mask.sum()),
        "clean": int((~mask).sum()),
        "seconds": seconds,
        "params": params,
    }


class ResultsStore:
    """The output folder of one benchmark run (see the module docstring).

    Parameters
    ----------
    out : path
        The folder; created when missing.
    """

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        self.header_path = self.out / "run.json"
        self.cells_path = self.out / "cells.jsonl"
        self.scores_dir = self.out / "scores"

    def header(self) -> dict[str, Any] | None:
        """The contents of ``run.json`` (None before the first start)."""
        if not self.header_path.is_file():
            return None
        return json.loads(self.header_path.read_text(encoding="utf-8"))

    def records(self) -> list[dict[str, Any]]:
        """Finished cells in the order they finished; a line cut short by a crash is ignored."""
        if not self.cells_path.is_file():
            return []
        out = []
        for line in self.cells_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def start(self, cfg: DetectionConfig, planned: list[str], extra: dict[str, Any]) -> int:
        """Open a session: refuse a folder that holds another grid, record provenance; its index.

        Raises
        ------
        ValueError
            When ``run.json`` exists and its grid settings differ from ``cfg``'s.
        """
        self.out.mkdir(parents=True, exist_ok=True)
        self._drop_partial_line()
        header = self.header()
        grid = cfg.grid_settings()
        if header is not None and header["grid"] != grid:
            changed = sorted(
                k for k in set(grid) | set(header["grid"]) if grid.get(k) != header["grid"].get(k)
            )
            raise ValueError(
                f"{self.out} holds results of another grid (differs in {', '.join(changed)}); "
                "use a new --out folder"
            )
        session = {
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "versions": package_versions(),
            "platform": platform.platform(),
            "machine": machine(),
            "argv": sys.argv,
            **extra,
        }
        sessions = [] if header is None else header["sessions"]
        sessions.append(session)
        header = {
            "name": cfg.name,
            "split": cfg.seeds.split,
            "seeds": cfg.seeds.values,
            "grid": grid,
            "config": cfg.model_dump(mode="json", exclude={"base_dir"}),
            "training": cfg.recipe(),
            "planned": planned,
            "sessions": sessions,
        }
        tmp = self.header_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(header, indent=2), encoding="utf-8")
        tmp.replace(self.header_path)
        return len(sessions) - 1

    def _drop_partial_line(self) -> None:
        """Cut a last line that a crash left without its newline (it is ignored by :meth:`records`)."""
        if not self.cells_path.is_file():
            return
        data = self.cells_path.read_bytes()
        if data and not data.endswith(b"\n"):
            self.cells_path.write_bytes(data[: data.rfind(b"\n") + 1])

    def append(self, record: dict[str, Any]) -> None:
        """Append one finished cell and force it to disk."""
        with self.cells_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def save_scores(
        self, cell_id: str, mask: np.ndarray, scores: dict[str, tuple[np.ndarray, np.ndarray]]
    ) -> Path:
        """``scores/<cell>.npz``: ``mask`` and ``<name>.scores`` / ``<name>.flagged`` per detector."""
        self.scores_dir.mkdir(parents=True, exist_ok=True)
        arrays = {"mask": np.asarray(mask, dtype=bool)}
        for name, (score, flagged) in scores.items():
            arrays[f"{name}.scores"] = np.asarray(score, dtype=np.float32)
            arrays[f"{name}.flagged"] = np.asarray(flagged, dtype=bool)
        path = self.scores_dir / f"{cell_id}.npz"
        np.savez_compressed(path, **arrays)
        return path
