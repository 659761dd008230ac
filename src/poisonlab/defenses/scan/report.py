"""Write a scan as ``scan.json`` + ``report.md`` + ``report.html`` with thumbnails and histograms.

Per method: detection metrics (when the dataset carries a poison mask), per-class statistics, the
ranked most suspicious samples (index, label, source, score, truth) with a thumbnail grid, and a
histogram of the scores split into clean and poison. A table of contents at the top links to the
summary, the screen's verdict and every method's section.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.scan.records import MethodResult, ScanResult
from poisonlab.reporting import Report, image_grid_png, score_histogram_png

__all__ = ["scan_to_dict", "write_scan_report"]

_METRICS = ("precision", "recall", "f1", "fpr", "auroc")


def _ranked(method: MethodResult, dataset: Dataset, top: int) -> list[dict[str, Any]]:
    mask = dataset.poison_mask
    rows = []
    for rank, i in enumerate(method.ranking(top), start=1):
        row = {
            "rank": rank,
            "index": int(i),
            "label": dataset.class_names[int(dataset.y[i])],
            "source": str(dataset.source[i]),
            "score": float(method.scores[i]),
            "flagged": bool(method.flagged[i]),
        }
        if mask is not None:
            row["poison"] = bool(mask[i])
        rows.append(row)
    return rows


def scan_to_dict(result: ScanResult, *, top: int = 50, model_info: dict | None = None) -> dict[str, Any]:
    """JSON-ready summary of a scan (no per-sample arrays except the ranked top)."""
    ds = result.dataset
    return {
        "dataset": {
            "name": ds.name,
            "samples": len(ds),
            "classes": list(ds.class_names),
            "content_hash": ds.content_hash,
            "poison_known": ds.poison_mask is not None,
            "poison": None if ds.poison_mask is None else int(ds.poison_mask.sum()),
        },
        "model": model_info,
        "forward_seconds": result.forward_seconds,
        "methods": [
            {
                "name": m.name,
                "space": m.space,
                "paper": m.paper,
                "params": m.params,
                "seconds": m.seconds,
                "flagged": int(m.flagged.sum()),
                "metrics": m.metrics,
                "per_class": m.per_class(ds),
                "top": _ranked(m, ds, top),
                "details": m.details,
            }
            for m in result.methods
        ],
        "screen": None if result.screen is None else result.screen.to_dict(),
    }


def _summary_rows(result: ScanResult) -> list[list[object]]:
    rows = []
    if result.screen is not None:
        metrics = result.screen.metrics or {}
        seconds = sum(m.seconds for m in result.methods)
        flagged = int(result.screen.flagged.sum())
        rows.append(["screen", "combined", flagged, *(metrics.get(k) for k in _METRICS), round(seconds, 2)])
    for m in result.methods:
        metrics = m.metrics or {}
        rows.append(
            [m.name, m.space, int(m.flagged.sum()), *(metrics.get(k) for k in _METRICS), round(m.seconds, 2)]
        )
    return rows


def _method_section(report: Report, m: MethodResult, ds: Dataset, out: Path, top: int) -> None:
    report.heading(m.name, 2)
    if m.paper:
        report.paragraph(m.paper)
    report.paragraph(
        f"flagged {int(m.flagged.sum())} of {len(ds)} samples in {m.seconds:.2f} s; params: "
        + (", ".join(f"{k}={v}" for k, v in m.params.items()) or "defaults")
    )
    per_class = m.per_class(ds)
    header = list(per_class[0].keys())
    report.table(header, [[row[h] for h in header] for row in per_class])
    ranked = _ranked(m, ds, top)
    if ranked:
        idx = np.array([r["index"] for r in ranked])
        titles = [f"#{r['index']} {r['label'][:8]}" + ("*" if r.get("poison") else "") for r in ranked]
        image_grid_png(ds.x[idx], out / f"top_{m.name}.png", titles=titles)
        caption = f"{len(ranked)} most suspicious samples by {m.name}"
        if ds.poison_mask is not None:
            caption += " (* = truly poison)"
        report.image(f"top_{m.name}.png", caption)
    score_histogram_png(m.scores, out / f"scores_{m.name}.png", poison_mask=ds.poison_mask, title=m.name)
    report.image(f"scores_{m.name}.png", f"distribution of {m.name} suspicion scores")
    cols = ["rank", "index", "label", "source", "score", "flagged"] + (
        ["poison"] if ds.poison_mask is not None else []
    )
    report.table(cols, [[r[c] for c in cols] for r in ranked[: min(top, 20)]])


def _screen_section(report: Report, result: ScanResult) -> None:
    """The screen's rule and, per class, who declared it poisoned and what each detector flagged."""
    verdict = result.screen
    report.heading("The screen's verdict", 2)
    report.paragraph(
        f"Detectors: {', '.join(verdict.methods)}. A sample is flagged when at least {verdict.min_votes} "
        f"of them flag it; {int(verdict.flagged.sum())} of {len(result.dataset)} are. No ground truth is "
        "used; the metrics above compare with it only when the dataset carries one."
    )
    rows = [
        [
            c["class"],
            c["samples"],
            c["screen_flagged"],
            ", ".join(c["declared_poisoned_by"]) or "-",
            ", ".join(f"{k} {v}" for k, v in c["flagged_by"].items()) or "-",
        ]
        for c in verdict.classes
    ]
    report.table(["class", "samples", "screen flagged", "declared poisoned by", "flagged by (count)"], rows)


def write_scan_report(
    result: ScanResult, out_dir: str | Path, *, top: int = 50, model_info: dict | None = None
) -> dict[str, Path]:
    """Write ``scan.json``, ``flags.npz`` (scores and flags of every sample), report.md/.html."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = result.dataset
    data = scan_to_dict(result, top=top, model_info=model_info)
    (out / "scan.json").write_text(json.dumps(data, indent=2, default=_json_default), encoding="utf-8")
    arrays = {f"scores_{m.name}": m.scores for m in result.methods}
    arrays |= {f"flagged_{m.name}": m.flagged for m in result.methods}
    if result.screen is not None:
        arrays |= {"scores_screen": result.screen.scores, "flagged_screen": result.screen.flagged}
        arrays["votes_screen"] = result.screen.votes
    np.savez_compressed(out / "flags.npz", **arrays)

    report = Report(f"Poison scan of {ds.name}")
    truth = (
        f"{int(ds.poison_mask.sum())} samples are known poison (ground truth from the attack)."
        if ds.poison_mask is not None
        else "No ground truth: detection metrics are not available."
    )
    report.paragraph(f"{len(ds)} samples, {ds.num_classes} classes. {truth}")
    if result.forward_seconds is not None:
        report.paragraph(f"One shared forward pass of the model: {result.forward_seconds:.2f} s.")
    report.toc()  # one section per method makes a long page: link to each
    report.heading("Summary", 2)
    report.table(["method", "space", "flagged", *_METRICS, "seconds"], _summary_rows(result))
    if result.screen is not None:
        _screen_section(report, result)
    for m in result.methods:
        _method_section(report, m, ds, out, top)
    md, page = report.write(out)
    return {"json": out / "scan.json", "flags": out / "flags.npz", "report_md": md, "report_html": page}


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
