"""``report.md`` of the detection benchmark: tables per attack family x rate over the cells.

Every figure in a table is the mean over the cells of its row (one cell per seed) with a 95 %
interval.  All figures are rates in [0, 1], so the interval is the Wilson score interval
(:func:`poisonlab.experiments.clean_label.report.wilson_interval`) with the number of cells as
trials and the summed per-cell rates as successes: a rate in [0, 1] has at most the variance of a
coin with the same mean, so the interval is conservative, and with few seeds it is wide, as it
should be.  Cells where a figure is undefined (recall without poison, precision with nothing
flagged, the attack's success for random flips) are left out of that figure's mean.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.experiments.clean_label.report import wilson_interval
from poisonlab.experiments.detection.config import FAMILIES, TARGET_MODES
from poisonlab.experiments.detection.records import ResultsStore

__all__ = ["TOOK", "group_rows", "summarize", "write_report"]

#: attack success from which a cell counts as "the backdoor took"
TOOK = 0.5
_ORDER = {name: i for i, name in enumerate(("control", *FAMILIES))}
_TARGET_ORDER = {name: i for i, name in enumerate(("none", *TARGET_MODES, "one_to_one", "random"))}
_FIGURES = ("tpr_at_1fpr", "auroc", "precision", "recall", "fpr")


def summarize(values: list[float | None]) -> dict[str, Any] | None:
    """Mean, 95 % Wilson interval over cells and count of the defined values (None if none)."""
    defined = [float(v) for v in values if v is not None]
    if not defined:
        return None
    lo, hi = wilson_interval(sum(defined), len(defined))  # type: ignore[arg-type]  # summed rates
    return {"mean": float(np.mean(defined)), "low": lo, "high": hi, "n": len(defined)}


def group_rows(records: list[dict[str, Any]]) -> list[tuple[tuple, list[dict[str, Any]]]]:
    """Records grouped by (family, target, rate), in report order (the controls first)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["family"], r["target"], r["rate"]), []).append(r)

    def order(key: tuple) -> tuple:
        return (_ORDER.get(key[0], 99), _TARGET_ORDER.get(key[1], 99), key[2] or 0.0)

    return [(key, groups[key]) for key in sorted(groups, key=order)]


def _fmt(stat: dict[str, Any] | None, cells: int) -> str:
    if stat is None:
        return "-"
    text = f"{stat['mean']:.2f} [{stat['low']:.2f}, {stat['high']:.2f}]"
    return text if stat["n"] == cells else f"{text} (n={stat['n']})"


def _label(key: tuple) -> str:
    family, target, rate = key
    return "control | - | -" if family == "control" else f"{family} | {target} | {100 * rate:g}%"


def _spread(values: list[float]) -> str:
    """``mean (min-max)`` of a figure that is not a rate over cells (accuracy on a fixed test set)."""
    return f"{np.mean(values):.3f} ({np.min(values):.3f}-{np.max(values):.3f})" if values else "-"


def _attack_table(groups: list) -> list[str]:
    lines = [
        "| family | target | rate | cells | poisons | attack success | clean model's | took "
        "| clean accuracy (min-max) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, rows in groups:
        n = len(rows)
        asr = [r["model"]["attack_success"] for r in rows]
        took = sum(1 for a in asr if a is not None and a >= TOOK)
        defined = sum(1 for a in asr if a is not None)
        took_text = f"{took}/{defined}" if defined else "-"
        poisons = np.mean([r["attack"]["poisoned"] for r in rows])
        baseline = summarize([r["model"]["clean_model_attack_success"] for r in rows])
        lines.append(
            f"| {_label(key)} | {n} | {poisons:.1f} | {_fmt(summarize(asr), n)} | {_fmt(baseline, n)} "
            f"| {took_text} | {_spread([r['model']['clean_accuracy'] for r in rows])} |"
        )
    return lines


def _screen_table(groups: list) -> list[str]:
    lines = [
        "| family | target | rate | TPR at FPR <= 1% | AUROC | precision | recall | FPR |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, rows in groups:
        screens = [r["screen"] for r in rows if r.get("screen")]
        if not screens:
            continue
        cells = [_fmt(summarize([s[f] for s in screens]), len(screens)) for f in _FIGURES]
        lines.append(f"| {_label(key)} | " + " | ".join(cells) + " |")
    return lines


def _detector_names(records: list[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for r in records:
        names.update(dict.fromkeys(r["detectors"]))
    return list(names)


def _per_detector_table(groups: list, names: list[str], figure: str) -> list[str]:
    lines = ["| family | target | rate | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for key, rows in groups:
        if key[0] == "control":
            continue
        cells = []
        for name in names:
            values = [r["detectors"][name][figure] for r in rows if name in r["detectors"]]
            cells.append(_fmt(summarize(values), len(rows)))
        lines.append(f"| {_label(key)} | " + " | ".join(cells) + " |")
    return lines


def _control_table(records: list[dict[str, Any]], names: list[str]) -> list[str]:
    controls = [r for r in records if r["family"] == "control"]
    if not controls:
        return ["No control cells."]
    lines = ["| detector | FPR of the default decision | flagged per cell |", "|---|---|---|"]
    entries = [(n, [r["detectors"].get(n) for r in controls]) for n in names]
    entries.append(("screen", [r.get("screen") for r in controls]))
    for name, figures in entries:
        defined = [f for f in figures if f]
        flagged = np.mean([f["flagged"] for f in defined]) if defined else float("nan")
        lines.append(
            f"| {name} | {_fmt(summarize([f['fpr'] for f in defined]), len(controls))} | {flagged:.1f} |"
        )
    return lines


def _cost_table(records: list[dict[str, Any]], names: list[str]) -> list[str]:
    lines = ["| detector | seconds mean | seconds max |", "|---|---|---|"]
    for name in names:
        secs = [r["detectors"][name]["seconds"] for r in records if name in r["detectors"]]
        lines.append(f"| {name} | {np.mean(secs):.2f} | {np.max(secs):.2f} |")
    scans = [r["scan"] for r in records]
    peaks = [s["rss_peak_mib"] - (s["rss_start_mib"] or 0) for s in scans if s.get("rss_peak_mib")]
    trains = [r["model"]["train_seconds"] for r in records if r["model"]["train_seconds"] is not None]
    poisoned = [r["seconds"] for r in records if r["family"] != "control"]
    lines += [
        "",
        f"Whole scan (shared forward pass + every detector + the screen): "
        f"{np.mean([s['seconds'] for s in scans]):.1f} s mean per cell"
        + (
            f"; resident memory added during the scan {np.mean(peaks):.0f} MiB mean, {np.max(peaks):.0f} max"
            if peaks
            else ""
        )
        + ". Training from scratch: "
        + (f"{np.mean(trains):.1f} s mean per cell" if trains else "-")
        + (f"; a whole poisoned cell {np.mean(poisoned):.1f} s mean." if poisoned else "."),
    ]
    return lines


def _training_line(header: dict[str, Any]) -> str:
    """The network and recipe every model of the grid trained with.

    ``run.json`` files written before the ``training`` block existed name neither: their models
    are the chapter CNN with the dataset's default recipe.
    """
    cfg = header["config"]
    training = header.get("training") or {
        "arch": "simple-cifar10",
        "recipe": f"the {cfg['dataset']['name']} default recipe",
        "epochs": cfg["epochs"] or "the recipe's default",
    }
    return (
        f"Models: {training['arch']}, trained from scratch with {training['recipe']}; "
        f"epochs: {training['epochs']}."
    )


def _provenance(header: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
    cfg, sessions = header["config"], header["sessions"]
    seeds = header["seeds"]
    split = (
        "held-out grid (seeds >= 1000)"
        if header["split"] == "held-out"
        else "development grid (seeds < 1000)"
    )
    detectors = ", ".join(cfg["detectors"]) if cfg["detectors"] else "the default screen"
    commits = sorted({str(s["commit"]) for s in sessions})
    return [
        f"**{split}**: seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}) on {cfg['dataset']['name']}; "
        f"{len(records)} of {len(header['planned'])} cells finished. {_training_line(header)} "
        f"Detectors (frozen defaults): {detectors}.",
        "",
        f"Commit(s): {', '.join(commits)}. Versions (last session): "
        + ", ".join(f"{k} {v}" for k, v in sessions[-1]["versions"].items())
        + ".",
    ]


def write_report(out: str | Path) -> Path:
    """Write ``out/report.md`` from ``run.json`` and ``cells.jsonl``; return its path."""
    store = ResultsStore(out)
    header = store.header()
    if header is None:
        raise ValueError(f"{out} holds no detection benchmark run (no run.json)")
    records = store.records()
    groups = group_rows(records)
    names = _detector_names(records)
    lines = [f"# Detection benchmark: {header['name']}", ""]
    if header["config"].get("description"):
        lines += [header["config"]["description"], ""]
    lines += _provenance(header, records)
    lines += [
        "",
        "Each cell poisons the training set with one seeded case, trains a model from scratch on it "
        "and runs every detector on the poisoned set. Figures: mean over the cells of a row "
        "[95% Wilson interval, cells as trials]. *TPR at FPR <= 1%*: share of the poison ranked above "
        "all but 1% of the clean samples by the detector's scores; precision / recall / FPR: the "
        f"detector's own default decision. *Took*: cells whose attack success is >= {TOOK:g}; "
        "*clean model's*: the same test inputs on the seed's model trained without poison.",
    ]
    if not records:
        lines += ["", "No cell has finished yet."]
    else:
        lines += ["", "## Did the attack take?", "", *_attack_table(groups)]
        lines += ["", "## The screen (combined detectors)", "", *_screen_table(groups)]
        lines += [
            "",
            "## TPR at FPR <= 1% per detector",
            "",
            *_per_detector_table(groups, names, "tpr_at_1fpr"),
        ]
        lines += ["", "## AUROC per detector", "", *_per_detector_table(groups, names, "auroc")]
        lines += ["", "## False positives on the no-poison controls", "", *_control_table(records, names)]
        lines += ["", "## Cost", "", *_cost_table(records, names)]
    path = Path(out) / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
