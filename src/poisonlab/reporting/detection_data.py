"""The raw records behind ``docs/results/detection.md`` and issue 11's targets computed from them.

Everything the page quotes is read here from committed files (:func:`load_sources`): the
held-out and development ``cells.jsonl`` of ``poisonlab bench detection`` with their
``run.json``, the digits matrix that mitigates with the screen (``matrix.json``, ``run.json``)
and the screen's cost on CIFAR-10 (``benchmarks/results/screen_cost_cifar10.json``). The
split sizes the prose needs (trusted images per class, training images per class) are counted
from the dataset named in the held-out ``run.json`` (the embedded digits ship with
scikit-learn, so this needs no download).

Issue 11's targets (:data:`TARGETS`) are checked per cell on the screen's own decision:
a target is met when every cell it covers where the attack took (attack success >=
:data:`TOOK`; label flips always count) reaches the figure. Pooled figures (all the poison of
the cells a target covers, every clean sample of the controls) carry their Wilson interval.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poisonlab.reporting.results_docs import load_json_object
from poisonlab.reporting.stats import RateInterval, rate_interval

__all__ = [
    "BACKDOORS",
    "CONTROL_FPR",
    "TARGETS",
    "TOOK",
    "ControlResult",
    "DetectionSources",
    "SplitCounts",
    "Target",
    "TargetResult",
    "complete_seeds",
    "control_result",
    "load_cells",
    "load_sources",
    "pooled_fpr",
    "pooled_recall",
    "split_counts",
    "target_results",
    "took",
]

#: attack success from which a backdoor counts as implanted ("took")
TOOK = 0.5
#: issue 11's ceiling on the false-positive rate of the no-poison controls
CONTROL_FPR = 0.01
#: the backdoor families the targets cover
BACKDOORS = frozenset({"patch", "blended", "watermark", "warp"})
_REQUIRED = ("cell", "seed", "family", "target", "rate", "model", "detectors", "screen")
_SCREEN_COUNTS = ("true_positives", "poison", "flagged", "clean")
_SEED_OF_CELL = re.compile(r"^s(\d+)-")


@dataclass(frozen=True)
class Target:
    """One of issue 11's targets: the screen's recall on every covered cell >= ``figure``."""

    label: str
    figure: float
    families: frozenset[str]
    targets: frozenset[str]
    rates: tuple[float, float]

    @property
    def name(self) -> str:
        lo, hi = (100 * r for r in self.rates)
        return f"{self.label}, >= {lo:g} %" if hi >= 100 else f"{self.label}, {lo:g}-{hi:g} %"

    def covers(self, record: Mapping[str, Any]) -> bool:
        lo, hi = self.rates
        rate = record["rate"] or 0.0
        return record["family"] in self.families and record["target"] in self.targets and lo <= rate <= hi


TARGETS: tuple[Target, ...] = (
    Target(
        "patch, blend, Trojan watermark all-to-one",
        0.99,
        frozenset({"patch", "blended", "watermark"}),
        frozenset({"all_to_one"}),
        (0.01, 0.1),
    ),
    Target("WaNet (warp)", 0.93, frozenset({"warp"}), frozenset({"all_to_one", "all_to_all"}), (0.005, 0.1)),
    Target(
        "all-to-all (patch, blend, watermark, warp)", 0.95, BACKDOORS, frozenset({"all_to_all"}), (0.005, 0.1)
    ),
    Target("label flips of a class", 0.90, frozenset({"label_flip"}), frozenset({"one_to_one"}), (0.1, 1.0)),
)


@dataclass(frozen=True)
class SplitCounts:
    """Images per class of a dataset's training and validation (trusted) splits."""

    train: tuple[int, ...]
    trusted: tuple[int, ...]
    class_names: tuple[str, ...]
    image_shape: tuple[int, ...]


@dataclass(frozen=True)
class DetectionSources:
    """Every committed file the page is computed from (see :func:`load_sources`)."""

    heldout: list[dict]
    heldout_run: dict
    dev: list[dict]
    dev_run: dict
    matrix: dict
    matrix_run: dict
    cost: dict
    splits: SplitCounts


def _json_line(path: Path, number: int, line: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}, line {number}: not JSON ({exc.msg})") from exc
    if not isinstance(record, dict):
        raise ValueError(f"{path}, line {number}: a cell record must be a JSON object")
    missing = [k for k in _REQUIRED if k not in record]
    screen = record.get("screen") or {}
    missing += [f"screen.{k}" for k in _SCREEN_COUNTS if "screen" in record and k not in screen]
    if missing:
        raise ValueError(f"{path}, line {number}: cell record lacks {', '.join(missing)}")
    return record


def load_cells(path: str | Path) -> list[dict]:
    """The cell records of a detection benchmark's ``cells.jsonl``, in file order.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        A line that is not a JSON object with the fields the page reads, or no record at all.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"cells file not found: {p}")
    lines = p.read_text(encoding="utf-8").splitlines()
    records = [_json_line(p, i, line) for i, line in enumerate(lines, 1) if line.strip()]
    if not records:
        raise ValueError(f"{p}: no cell records")
    return records


def split_counts(dataset: str, split_seed: int) -> SplitCounts:
    """Per-class sizes of ``dataset``'s training and validation splits (the benchmark's trusted set)."""
    from poisonlab.data.catalog import load_splits  # the dataset is read only for the page

    splits = load_splits(dataset, seed=split_seed)
    return SplitCounts(
        train=tuple(int(c) for c in splits.train.class_counts()),
        trusted=tuple(int(c) for c in splits.val.class_counts()),
        class_names=tuple(splits.train.class_names),
        image_shape=tuple(int(s) for s in splits.train.image_shape),
    )


def load_sources(
    results: str | Path, cost: str | Path, splits: SplitCounts | None = None
) -> DetectionSources:
    """Read the committed files under ``results`` (``docs/results``) and the cost record ``cost``.

    ``splits`` defaults to :func:`split_counts` of the held-out run's dataset and split seed.
    """
    root = Path(results) / "detection"
    heldout_run = load_json_object(
        root / "digits-heldout" / "run.json", ("name", "planned", "sessions", "config")
    )
    if splits is None:
        dataset = heldout_run["config"]["dataset"]
        splits = split_counts(dataset["name"], int(dataset.get("split_seed") or 0))
    return DetectionSources(
        heldout=load_cells(root / "digits-heldout" / "cells.jsonl"),
        heldout_run=heldout_run,
        dev=load_cells(root / "digits-dev-seed0" / "cells.jsonl"),
        dev_run=load_json_object(root / "digits-dev-seed0" / "run.json", ("name", "sessions")),
        matrix=load_json_object(root / "matrix-digits-screen" / "matrix.json", ("rows", "clean_model")),
        matrix_run=load_json_object(root / "matrix-digits-screen" / "run.json", ("config", "command")),
        cost=load_json_object(
            Path(cost), ("seconds_total", "forward_seconds_penultimate", "detector_seconds", "rss_peak_mib")
        ),
        splits=splits,
    )


def complete_seeds(records: Iterable[Mapping[str, Any]], planned: Sequence[str]) -> list[int]:
    """Seeds whose every planned cell (``run.json``'s ``planned`` ids, ``s<seed>-...``) has a record."""
    wanted: dict[int, set[str]] = {}
    for cell in planned:
        match = _SEED_OF_CELL.match(cell)
        if match is None:
            raise ValueError(f"planned cell id {cell!r} does not start with s<seed>-")
        wanted.setdefault(int(match.group(1)), set()).add(cell)
    done = {r["cell"] for r in records}
    return sorted(seed for seed, cells in wanted.items() if cells <= done)


def took(record: Mapping[str, Any]) -> bool:
    """Whether the attack took (label flips always do: there is no backdoor to implant)."""
    if record["family"] == "label_flip":
        return True
    return (record["model"].get("attack_success") or 0.0) >= TOOK


def pooled_recall(cells: Iterable[Mapping[str, Any]]) -> RateInterval:
    """The screen's true positives over all the poison of ``cells``, with its Wilson interval."""
    cells = list(cells)
    return rate_interval(
        sum(c["screen"]["true_positives"] for c in cells), sum(c["screen"]["poison"] for c in cells)
    )


def pooled_fpr(cells: Iterable[Mapping[str, Any]]) -> RateInterval:
    """The screen's false positives over all the clean samples of ``cells``, with its Wilson interval."""
    cells = list(cells)
    false = sum(c["screen"]["flagged"] - c["screen"]["true_positives"] for c in cells)
    return rate_interval(false, sum(c["screen"]["clean"] for c in cells))


@dataclass(frozen=True)
class TargetResult:
    """A target against the records: the cells it covers, those that took, the pooled recall."""

    target: Target
    cells: tuple[dict, ...]
    took: tuple[dict, ...]
    pooled: RateInterval

    @property
    def recalls(self) -> list[float]:
        """The screen's recall on each cell that took (cells without poison left out)."""
        return [c["screen"]["recall"] for c in self.took if c["screen"].get("recall") is not None]

    @property
    def met(self) -> bool:
        return bool(self.recalls) and min(self.recalls) >= self.target.figure

    @property
    def misses(self) -> list[dict]:
        """The cells that took and fall short of the figure."""
        return [c for c in self.took if (c["screen"].get("recall") or 0.0) < self.target.figure]


def target_results(records: Sequence[Mapping[str, Any]]) -> list[TargetResult]:
    """Every target of :data:`TARGETS` against ``records``."""
    out = []
    for target in TARGETS:
        cells = tuple(dict(r) for r in records if target.covers(r))
        out.append(TargetResult(target, cells, tuple(c for c in cells if took(c)), pooled_recall(cells)))
    return out


@dataclass(frozen=True)
class ControlResult:
    """The no-poison controls: the screen's FPR per cell and pooled."""

    cells: tuple[dict, ...]
    pooled: RateInterval

    @property
    def fprs(self) -> list[float]:
        return [c["screen"]["fpr"] for c in self.cells]

    @property
    def met(self) -> bool:
        return bool(self.cells) and max(self.fprs) <= CONTROL_FPR


def control_result(records: Sequence[Mapping[str, Any]]) -> ControlResult:
    """The control cells of ``records`` (family ``control``)."""
    cells = tuple(dict(r) for r in records if r["family"] == "control")
    return ControlResult(cells, pooled_fpr(cells))
