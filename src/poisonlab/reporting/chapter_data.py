"""The chapter runs' figures read from their ``results.json`` files, and the book's figures.

Results written before the counts were recorded (``counts`` in each measurement) get their
test-image counts from the confusion matrices they hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from poisonlab.data.cifar10 import CIFAR10_CLASSES
from poisonlab.reporting.results_docs import load_json

__all__ = [
    "BOOK_TEXT",
    "LABELS",
    "METRICS",
    "NOTEBOOK",
    "NOTEBOOK_BATCH",
    "external_counts",
    "figures",
    "hits",
    "load_runs",
]

#: The chapter text's figures (chapter 4 and the ART notebook it follows) per experiment.
BOOK_TEXT: dict[str, dict[str, float]] = {
    "rutan-finetune": {"clean_accuracy": 0.68, "source_to_target": 399},
    "rutan-retrain": {"source_to_target": 25},
    "art-single-pixel": {"clean_accuracy": 0.85, "attack_success_rate": 0.89},
    "art-pattern": {"clean_accuracy": 0.86, "attack_success_rate": 0.93},
    "art-image-insert": {"clean_accuracy": 0.86, "attack_success_rate": 0.89},
}
#: the name suffix of a fine-tune row run at the ART notebook's batch 32 (``art-single-pixel-b32``);
#: the rows without it fine-tune at batch 128 for time. The book's figures were made at batch 32,
#: so such a row carries its base row's book figures.
NOTEBOOK_BATCH = "-b32"
BOOK_TEXT.update(
    {f"{name}{NOTEBOOK_BATCH}": dict(v) for name, v in list(BOOK_TEXT.items()) if name.startswith("art-")}
)
#: The Rutan notebook's own output (as read in issue 14): higher accuracy, fewer airplanes ->
#: bird than the chapter text says.
NOTEBOOK: dict[str, dict[str, float]] = {"rutan-finetune": {"clean_accuracy": 0.84, "source_to_target": 43}}
METRICS = ("clean_accuracy", "attack_success_rate", "source_to_target")
#: each metric's name in the tables
LABELS = {
    "clean_accuracy": "clean accuracy",
    "attack_success_rate": "ASR",
    "source_to_target": "test airplanes -> bird",
}


def load_runs(runs_dir: str | Path) -> dict[str, dict]:
    """``{experiment folder name: results.json}`` of every run under ``runs_dir``, by name."""
    paths = sorted(Path(runs_dir).glob("*/results.json"))
    if not paths:
        raise FileNotFoundError(f"no */results.json under {runs_dir}")
    return {p.parent.name: load_json(p) for p in paths}


def _source(data: Mapping[str, Any]) -> int | None:
    cfg = data["config"]
    name = cfg["metrics"].get("source") or cfg["attack"].get("source")
    return None if name is None else CIFAR10_CLASSES.index(name)


def _counts(data: Mapping[str, Any], m: Mapping[str, Any]) -> dict[str, int]:
    """Test images behind each figure: recorded, else read off the confusion matrix."""
    if m.get("counts"):
        return dict(m["counts"])
    confusion = m["confusion_matrix"]
    out = {"clean_accuracy": sum(map(sum, confusion))}
    src = _source(data)
    if src is not None:
        out["source_to_target"] = out["attack_success_rate"] = sum(confusion[src])
    return out


def figures(data: Mapping[str, Any]) -> dict[str, dict[str, list[tuple[float, int]]]]:
    """``{"clean" | "poisoned": {metric: [(value, n test images), ...]}}`` of one run: one entry
    per distinct clean model, one per seed's poisoned model."""
    cleans = [r["clean_metrics"] for r in data["runs"] if r.get("clean_metrics")] or [data["clean"]]
    out: dict[str, dict[str, list[tuple[float, int]]]] = {}
    for model, measurements in (("clean", cleans), ("poisoned", [r["metrics"] for r in data["runs"]])):
        out[model] = {}
        for key in METRICS:
            pairs = [(m[key], _counts(data, m).get(key)) for m in measurements if m.get(key) is not None]
            if pairs:
                out[model][key] = pairs
    return out


def hits(key: str, pairs: list[tuple[float, int]]) -> tuple[int, int]:
    """(successes, n) of one model at the mean rate: every seed is scored on the *same* test
    images, so pooling them would count each image once per seed and shrink the interval."""
    n = round(sum(n for _, n in pairs) / len(pairs))
    rates = [v / m if key == "source_to_target" else v for v, m in pairs]
    return int(round(n * sum(rates) / len(rates))), int(n)


def external_counts(data: Mapping) -> tuple[int, int, int, int, bool] | None:
    """Over every seed's poisoned model: (photo predictions, bird without trigger, bird with
    trigger, flipped by the trigger, triggered variant present); None without external photos."""
    total = clean_birds = trig_birds = flipped = 0
    triggered = False
    for run in data["runs"]:
        preds = run["metrics"].get("external") or []
        clean = {e["image"]: e for e in preds if e["variant"] == "clean"}
        trig = {e["image"]: e for e in preds if e["variant"] == "triggered"}
        triggered |= bool(trig)
        total += len(clean)
        clean_birds += sum(e["prediction"] == "bird" for e in clean.values())
        trig_birds += sum(e["prediction"] == "bird" for e in trig.values())
        flipped += sum(
            trig[i]["prediction"] == "bird" and clean[i]["prediction"] != "bird" for i in trig if i in clean
        )
    return (total, clean_birds, trig_birds, flipped, triggered) if total else None
