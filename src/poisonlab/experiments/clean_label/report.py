"""What a clean-label benchmark run writes: ``results.json`` and ``report.md`` (the summary table
beside the published numbers, the defenses' detection, the settings)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.experiments.clean_label.records import CleanLabelResult
from poisonlab.reporting.stats import wilson_interval

__all__ = [
    "COLLAPSE_MARGIN",
    "PUBLISHED",
    "collapsed",
    "mean_detection",
    "mean_victim_accuracy",
    "summarize",
    "summarize_data",
    "victim_accuracy",
    "wilson_interval",
    "write_clean_label",
    "write_clean_label_report",
    "write_pooled_clean_label",
]

#: Average success rates published by Schwarzschild et al. (ICML 2021, arXiv:2006.12557) over
#: their architectures, as percentages, keyed by setting family and attack registry name.
PUBLISHED = {
    "scratch": {
        "gradient_matching": 26.0,
        "hidden_trigger": 2.7,
        "clean_label_backdoor": 1.0,
        "feature_collision": 1.3,
    },
    "transfer": {"feature_collision": 22.0, "clean_label_backdoor": 5.0, "hidden_trigger": 10.0},
}

#: A victim trained on a poisoned set "collapsed" when its clean accuracy fell more than this
#: below the clean victim's: the training run failed, so whether the poison worked is not
#: measured. Its trial is reported apart, not counted as a failed attack. The margin was set
#: with the runs committed then in view (their victims sat within 9 points of the clean one or 17+
#: points below it; a margin of 0.10 would add one from-scratch run at 10.2 points); the
#: revision-2 transfer runs that replaced them have no victim more than 0.15 below.
COLLAPSE_MARGIN = 0.15


def victim_accuracy(data: Mapping[str, Any], row: Mapping[str, Any]) -> float:
    """The clean victim's accuracy a trial row is compared with (its seed's, when pooled)."""
    per_seed = data.get("clean_per_seed") or {}
    clean = per_seed.get(str(row.get("seed")), data["clean"])
    return float(clean["victim_accuracy"])


def mean_victim_accuracy(data: Mapping[str, Any]) -> float:
    """The clean victim's accuracy of a run: the mean over its seeds' clean victims when pooled."""
    per_seed = data.get("clean_per_seed") or {"": data["clean"]}
    return float(np.mean([float(clean["victim_accuracy"]) for clean in per_seed.values()]))


def collapsed(data: Mapping[str, Any], row: Mapping[str, Any], margin: float = COLLAPSE_MARGIN) -> bool:
    """Whether a trial's victim collapsed (see :data:`COLLAPSE_MARGIN`)."""
    acc = row.get("clean_accuracy")
    return acc is not None and acc < victim_accuracy(data, row) - margin


def _mean(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def mean_detection(rows: list[dict]) -> dict[str, dict[str, float | None]]:
    """Per defense, the mean precision/recall/F1/FPR/AUROC over trial rows (None when never defined)."""
    names = sorted({name for r in rows for name in r.get("detection", {})})
    out = {}
    for name in names:
        cells = [r["detection"][name] for r in rows if name in r.get("detection", {})]
        out[name] = {k: _mean(cells, k) for k in ("precision", "recall", "f1", "fpr", "auroc")}
    return out


def summarize_data(data: Mapping[str, Any], margin: float = COLLAPSE_MARGIN) -> list[dict[str, Any]]:
    """One row per attack of a ``results.json`` (one seed, or :func:`~.records.pool_seeds`).

    Success counts, the Wilson interval and the means are over the trials whose victim did not
    collapse (:func:`collapsed`); those are listed under ``collapsed`` (trial, seed, accuracy,
    success). ``trials`` counts every trial.
    """
    cfg = data["config"]
    family = "scratch" if cfg["setting"] == "scratch" else "transfer"
    rows = []
    for spec in cfg["attacks"]:
        mine = [r for r in data["trials"] if r["attack"] == spec["name"]]
        down = [r for r in mine if collapsed(data, r, margin)]
        ok = [r for r in mine if not collapsed(data, r, margin)]
        wins = sum(r["success"] for r in ok)
        crafts = [r["craft"] for r in mine if r.get("craft")]
        rows.append(
            {
                "attack": spec["name"],
                "kind": spec["attack"],
                "eps": spec.get("eps") or cfg["eps"],
                "trials": len(mine),
                "counted": len(ok),
                "successes": wins,
                "success_rate": wins / len(ok) if ok else None,
                "interval": wilson_interval(wins, len(ok)),
                "collapsed": [
                    {k: r.get(k) for k in ("trial", "seed", "clean_accuracy", "success")} for r in down
                ],
                "control": sum(r["control"] for r in mine),
                "published": PUBLISHED[family].get(spec["attack"]),
                "clean_accuracy": _mean(ok, "clean_accuracy"),
                "backdoor_rate": _mean(ok, "backdoor_rate"),
                "backdoor_rate_clean": _mean(ok, "backdoor_rate_clean"),
                "craft_seconds": float(np.mean([c["seconds"] for c in crafts])) if crafts else None,
                "peak_rss_mib": float(max(c["peak_rss_mib"] for c in crafts)) if crafts else None,
                "max_linf": int(max(c["max_linf"] for c in crafts)) if crafts else None,
                "detection": mean_detection(mine),
            }
        )
    return rows


def summarize(run: CleanLabelResult) -> list[dict[str, Any]]:
    """:func:`summarize_data` of a finished (or partial) run."""
    return summarize_data(run.data())


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _num(v: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def _success_table(rows: list[dict]) -> list[str]:
    lines = [
        "| attack | successes | rate (95% CI) | collapsed victims | control | published avg | clean acc "
        "| backdoor rate (clean) | craft s | peak RSS MiB | max Linf |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r["interval"]
        pub = "-" if r["published"] is None else f"{r['published']:.1f}%"
        bd = (
            "-"
            if r["backdoor_rate"] is None
            else f"{_pct(r['backdoor_rate'])} ({_pct(r['backdoor_rate_clean'])})"
        )
        down = ", ".join(f"{c['clean_accuracy']:.3f}" for c in r["collapsed"]) or "0"
        lines.append(
            f"| {r['attack']} ({r['kind']}) | {r['successes']}/{r['counted']} | {_pct(r['success_rate'])} "
            f"({_pct(lo)}-{_pct(hi)}) | {down} | {r['control']}/{r['trials']} | {pub} "
            f"| {_num(r['clean_accuracy'])} "
            f"| {bd} | {_num(r['craft_seconds'], '{:.1f}')} | {_num(r['peak_rss_mib'], '{:.0f}')} "
            f"| {r['max_linf'] if r['max_linf'] is not None else '-'} |"
        )
    return lines


def _detection_table(rows: list[dict]) -> list[str]:
    names = sorted({n for r in rows for n in r["detection"]})
    if not names:
        return []
    lines = [
        "",
        "## Defenses on the poisoned training sets (mean over trials)",
        "",
        "F1 / recall / AUROC of each defense against the ground-truth poison mask.",
        "",
        "| attack | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for r in rows:
        cells = []
        for n in names:
            d = r["detection"].get(n, {})
            cells.append(" / ".join(_num(d.get(k), "{:.2f}") for k in ("f1", "recall", "auroc")))
        lines.append(f"| {r['attack']} | " + " | ".join(cells) + " |")
    return lines


def write_clean_label_report(run: CleanLabelResult, out_dir: str | Path) -> Path:
    """Write ``report.md`` (summary, published comparison, detection, settings) and return its path."""
    cfg, clean = run.config, run.clean
    rows = summarize(run)
    lines = [
        f"# Clean-label benchmark: {cfg.name}",
        "",
        cfg.description or "",
        "",
        f"Setting **{cfg.setting}** on {cfg.dataset.name}: {clean['train_size']} training images, "
        f"{clean['poisons']} poisons ({100 * cfg.budget:.1f}% budget), eps {cfg.eps * 255:.1f}/255, "
        f"{cfg.trials} trials per attack (paired: every attack of a trial has the same victim image "
        f"and target class). Surrogate accuracy {clean['surrogate_accuracy']:.3f}, clean victim "
        f"accuracy {clean['victim_accuracy']:.3f} on {clean['eval_size']} test images.",
        "",
        "*Success*: the victim image (with the patch, for backdoor attacks) is classified as the "
        "target class by the model trained on the poisoned set. *Control*: the same test input "
        "already gets the target label from the clean model (a trial that would count without any "
        "poison). *Backdoor rate*: share of all triggered victim-class test images sent to the "
        "target class (the clean model's rate in brackets). *Published avg*: Schwarzschild et al. "
        "2021, averaged over their architectures in their (larger) setting - not the same models, "
        "data sizes or trial counts; compare orders of magnitude, not digits.",
        "",
        f"*Collapsed victims*: a victim whose clean accuracy fell more than {COLLAPSE_MARGIN:.2f} "
        "below the clean victim's failed to train; its trial is listed (its accuracy) and left out "
        "of the success count, the rate and the mean clean accuracy.",
        "",
        *_success_table(rows),
        *_detection_table(rows),
        "",
        "## Settings",
        "",
        "```json",
        _settings_json(run),
        "```",
        "",
    ]
    path = Path(out_dir) / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _settings_json(run: CleanLabelResult) -> str:
    data = run.config.model_dump(mode="json")
    data.pop("base_dir", None)
    return json.dumps({"config": data, "clean": run.clean}, indent=2)


def write_clean_label(run: CleanLabelResult, out_dir: str | Path) -> Path:
    """Write ``results.json`` (:meth:`CleanLabelResult.to_json`) and ``report.md``; return the report.

    Called after every trial row, so both always describe the trials finished so far.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(run.to_json(), indent=2), encoding="utf-8")
    return write_clean_label_report(run, out)


def write_pooled_clean_label(results: list[dict[str, Any]], out_dir: str | Path) -> Path:
    """Several seeds of one benchmark as one result: ``results_pooled.json``
    (:func:`~.records.pool_seeds`) and ``report_pooled.md`` with the tables of
    ``docs/results/clean_label.md`` (successes over every seed's trials with the Wilson
    interval, collapsed victims apart, paired changes with t intervals, detection).

    Parameters
    ----------
    results : list of dict
        One ``results.json`` per seed (:meth:`CleanLabelResult.to_json`, or read from disk).
    out_dir : path-like
        Folder of the pooled files.

    Returns
    -------
    Path
        ``report_pooled.md``.
    """
    from poisonlab.experiments.clean_label.records import pool_seeds
    from poisonlab.reporting.clean_label_doc import doc_tables  # it imports this module

    pooled = pool_seeds(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results_pooled.json").write_text(json.dumps(pooled, indent=2), encoding="utf-8")
    seeds = ", ".join(map(str, pooled["config"]["seeds"]))
    parts = [f"# Clean-label benchmark over seeds {seeds}: {pooled['config']['name']}", ""]
    for table in doc_tables([pooled]):
        parts += [table, ""]
    path = out / "report_pooled.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
