"""The chapter page's note on its clean models' BatchNorm statistics (training revision 1).

From commit 8be58e4 to training revision 2 (commit 8877156) a model trained from scratch had its
BatchNorm statistics re-estimated on *plain* training images, though its weights were trained on
cropped and flipped ones; ``benchmarks/bn_recalibration.py`` re-measured such models with the
augmented pass revision 2 makes (``benchmarks/results/bn_recalibration.json``). This module says,
from that file and the runs' own records, which chapter rows stand on those clean models, by how
much their clean figures sit below today's, and which of their comparisons that touches: a
fine-tune replaces the clean model's running statistics at a rate set by the BatchNorm momentum
(0.01 in the chapter CNN, Keras' default), so after ``s`` steps a share ``0.99 ** s`` of the old
ones is left.
"""

from __future__ import annotations

import inspect
import math
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from poisonlab.models.simple_cnn import SimpleCifarCNN
from poisonlab.provenance import TRAINING_REVISION
from poisonlab.reporting.results_docs import load_json_object

__all__ = [
    "RECALIBRATION_FILE",
    "clean_model_ids",
    "load_recalibration",
    "revision_section",
    "steps_of",
    "training_revision",
]

#: the benchmark's record, relative to the repository root
RECALIBRATION_FILE = "benchmarks/results/bn_recalibration.json"
#: the chapter CNN's BatchNorm momentum (PyTorch convention: the weight of each new batch)
BN_MOMENTUM: float = inspect.signature(SimpleCifarCNN).parameters["bn_momentum"].default


def load_recalibration(path: str | Path) -> dict[str, Any]:
    """The benchmark record, checked for the keys the section reads.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not a JSON object, or ``models`` / ``summary`` entries missing.
    """
    data = load_json_object(path)
    for key in ("models", "summary"):
        if key not in data:
            raise ValueError(f"{path}: no {key!r} in the BatchNorm recalibration record")
    for key in ("as_saved", "augmented", "augmented_minus_as_saved"):
        if key not in data["summary"]:
            raise ValueError(f"{path}: summary has no {key!r}")
    return data


def clean_model_ids(data: Mapping[str, Any]) -> list[str]:
    """The clean models a row's seeds were compared with (per seed, else the row's one)."""
    ids = [run.get("clean_model") or data["clean_model"] for run in data["runs"]]
    return list(dict.fromkeys(ids))


def training_revision(data: Mapping[str, Any]) -> int | None:
    """The training revision a row's record names (``provenance.versions.training_revision``);
    None for records made before it was recorded."""
    value = data.get("provenance", {}).get("versions", {}).get("training_revision")
    return None if value is None else int(value)


def steps_of(data: Mapping[str, Any]) -> int | None:
    """Optimiser steps of the row's first fine-tune (epochs x batches), None when not recorded."""
    training = data.get("provenance", {}).get("parameters", {}).get("poisoned_training", {})
    run = data["runs"][0]
    cfg = training.get(str(run["seed"]))
    if cfg is None or not run.get("poison_rate"):
        return None
    size = round(run["num_poison"] / run["poison_rate"])
    if data["config"].get("integration") == "finetune_poison_only":
        size = run["num_poison"]
    return int(cfg["epochs"]) * math.ceil(size / int(cfg["batch_size"]))


def _names(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names) or "none"


def _impact(runs: Mapping[str, dict], names: list[str]) -> str:
    """What the old statistics touch in each row, from how many steps its fine-tune took."""
    kept, replaced = [], []
    for name in names:
        steps, integration = steps_of(runs[name]), runs[name]["config"].get("integration")
        if integration == "retrain" or steps is None:
            continue
        share = (1 - BN_MOMENTUM) ** steps
        left = f"{share:.0%}" if share >= 0.005 else "<1%"
        (kept if share > 0.01 else replaced).append(f"`{name}` ({steps} steps, {left} kept)")
    text = []
    if replaced:
        text.append(
            f"The fine-tunes of {', '.join(replaced)} replace the old statistics: their poisoned "
            "figures, and their differences against a control fine-tuned the same way, do not depend "
            "on the old pass; their differences against the clean model do."
        )
    if kept:
        text.append(
            f"The short fine-tunes of {', '.join(kept)} keep that share of the clean model's "
            "statistics: their own figures carry the old pass too (both sides of a placebo comparison "
            "share it)."
        )
    return " ".join(text)


def revision_section(runs: Mapping[str, dict], recalibration: Mapping[str, Any] | None) -> list[str]:
    """The ``## Clean models`` section: empty without the benchmark record, or when no row's clean
    models are among the ones it measured (runs of today's code)."""
    if recalibration is None:
        return []
    measured = {m["model"] for m in recalibration["models"]}
    old = [n for n, d in runs.items() if set(clean_model_ids(d)) <= measured]
    if not old:
        return []
    today = [n for n, d in runs.items() if n not in old and training_revision(d) == TRAINING_REVISION]
    other = [n for n in runs if n not in old and n not in today]
    s = recalibration["summary"]
    saved, aug, gain = s["as_saved"], s["augmented"], s["augmented_minus_as_saved"]
    paragraph = " ".join(
        part
        for part in [
            f"The clean models of {_names(old)} ({len(measured)} models, one per seed) were trained at",
            "training revision 1, which re-estimated their BatchNorm statistics on plain training images",
            "while their weights had been trained on cropped and flipped ones. With the pass revision 2",
            f"makes (augmented copies; `{RECALIBRATION_FILE}`) the same weights score {aug['mean']:.4f}",
            f"against {saved['mean']:.4f} ({100 * gain['mean']:+.2f} points, paired t",
            f"{100 * gain['ci_low']:+.2f} to {100 * gain['ci_high']:+.2f} over {gain['n']} models): these",
            "rows' clean figures sit that much below what today's code trains.",
            _impact(runs, old),
            (
                f"Rows whose record names training revision {TRAINING_REVISION} ({_names(today)}) were "
                "run on clean models trained with the augmented pass."
                if today
                else ""
            ),
            f"Rows with other clean models ({_names(other)}) were not re-measured." if other else "",
        ]
        if part
    )
    text = textwrap.fill(paragraph, 100, break_on_hyphens=False, break_long_words=False)
    return ["## Clean models and the BatchNorm recalibration", "", text, ""]
