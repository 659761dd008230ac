"""Markdown table and ours-vs-ART ratios of ``benchmarks/crafting.py`` records."""

from __future__ import annotations

from _crafting_case import ATTACKS


def _f(v, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def markdown(records: list[dict]) -> str:
    lines = [
        "| method | poisons | steps | seconds | s/step | peak RSS MiB | loss initial -> final "
        "| max Linf (0-255) | finite | note |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|---|",
    ]
    for r in records:
        if r.get("timed_out"):
            lines.append(f"| {r['method']} | - | - | timed out | - | - | - | - | - | {r['error']} |")
            continue
        note = r.get("error", "")
        if len(note) > 120:
            note = note[:117] + "..."
        note = note.replace("|", "/").replace("\n", " ")
        loss = "-"
        if r.get("loss_initial") is not None:
            loss = f"{r['loss_initial']:.4g} -> {_f(r.get('loss_final'), '.4g')}"
        linf = _f(r.get("max_linf"), ".1f")
        if r.get("max_linf_perturbation") is not None and r.get("max_linf") != r.get("max_linf_perturbation"):
            linf += f" ({r['max_linf_perturbation']:.1f} outside trigger)"
        if "inside_eps" in r:
            linf += "" if r["inside_eps"] else " > eps"
        steps = r.get("steps_run", r.get("steps"))
        steps_s = _f(steps, "g") if isinstance(steps, (int, float)) else "-"
        finite = "-" if "finite" not in r else ("yes" if r["finite"] else f"NO ({r.get('nan_count')} NaN)")
        lines.append(
            f"| {r['method']} | {r.get('poisons', '-')} | {steps_s} | {_f(r.get('seconds'))} | "
            f"{_f(r.get('seconds_per_step'), '.3f')} | {_f(r.get('peak_rss_mib'), '.0f')} | "
            f"{loss} | {linf} | {finite} | {note} |"
        )
    ratios = comparison(records)
    if ratios:
        lines += [
            "",
            "| attack | ART / poisonlab, s per step | ART / poisonlab, peak RSS |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {a} | {_f(v['time_ratio'], '.1f')}x | {_f(v['rss_ratio'], '.2f')}x |"
            for a, v in ratios.items()
        ]
    return "\n".join(lines)


def comparison(records: list[dict]) -> dict:
    by = {r["method"]: r for r in records}
    out = {}
    for a in ATTACKS:
        o, r = by.get(f"ours_{a}"), by.get(f"art_{a}")
        if not o or not r or o.get("error") or r.get("error"):
            continue
        out[a] = {
            "time_ratio": r["seconds_per_step"] / o["seconds_per_step"]
            if o.get("seconds_per_step")
            else None,
            "rss_ratio": r["peak_rss_mib"] / o["peak_rss_mib"],
        }
    return out
