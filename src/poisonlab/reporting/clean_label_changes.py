"""Paired changes over the trials for ``docs/results/clean_label.md``: backdoor rates, clean accuracy.

Each attack row's change is measured per trial against the same trial's clean reference (the
backdoor rate minus the clean model's rate on the same images; the victim's clean accuracy minus
the clean victim's), over the victims that trained, with the Student-t interval over the trials
(:func:`~poisonlab.reporting.stats.mean_interval`); the page says for which rows 0 is outside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from poisonlab.experiments.clean_label.report import collapsed, mean_victim_accuracy, victim_accuracy
from poisonlab.reporting.clean_label_runs import (
    is_placebo,
    label_runs,
    largest_change,
    row_eps,
    setting_label,
    unbounded,
)
from poisonlab.reporting.clean_label_setup import eps_text, patched_rows
from poisonlab.reporting.prose import and_list, para
from poisonlab.reporting.stats import mean_interval

__all__ = ["accuracy_bullet", "backdoor_bullet"]

Run = Mapping[str, Any]


def _t_text(stat: Any, digits: int = 2) -> str:
    """``+6.8 (t interval +3.96 to +9.57)``; one value: ``+6.8 (single trial)``."""
    if stat.single:
        return f"{stat.mean:+.1f} (single trial)"
    return f"{stat.mean:+.1f} (t interval {stat.low:+.{digits}f} to {stat.high:+.{digits}f})"


def _changes(runs: Sequence[Run], key: str) -> list[tuple[str, Any, int]]:
    """(label, t statistic of the paired change in points, successes) per attack row; ``key``
    ``"accuracy"`` (victim minus clean victim) or ``"backdoor"`` (rate minus clean model's)."""
    out = []
    for run in runs:
        for spec in run["config"]["attacks"]:
            ok = [r for r in run["trials"] if r["attack"] == spec["name"] and not collapsed(run, r)]
            if key == "accuracy":
                values = [r["clean_accuracy"] - victim_accuracy(run, r) for r in ok]
            else:
                values = [
                    r["backdoor_rate"] - r["backdoor_rate_clean"]
                    for r in ok
                    if r.get("backdoor_rate") is not None
                ]
            if values:
                stat = mean_interval([100 * v for v in values])
                label = f"{spec['name']} in `{setting_label(run)}`"
                out.append((label, stat, sum(r["success"] for r in ok)))
    return out


def _split(changes: list[tuple[str, Any, int]]) -> tuple[list[str], list[str]]:
    out = [f"{label} {_t_text(stat)}" for label, stat, _ in changes if stat.contains(0.0) is False]
    inside = [f"{label} {_t_text(stat)}" for label, stat, _ in changes if stat.contains(0.0) is not False]
    return out, inside


def backdoor_bullet(runs: Sequence[Run]) -> str:
    changes = _changes(label_runs(runs), "backdoor")
    if not changes:
        return ""
    out, inside = _split(changes)
    up = [c for c in changes if c[1].contains(0.0) is False]
    quiet = up and all(stat.mean > 0 and wins == 0 for _, stat, wins in up)
    head = (
        "**The backdoors move the victim class a little without flipping the chosen image**"
        if quiet
        else "**Backdoor rates**"
    )
    return para(
        f"- {head} (the share of patched victim-class test images sent to the target minus the clean",
        "model's share on the same trial's images, in points, over the victims that trained): 0 is outside",
        f"the t interval for {'; '.join(out) or 'none'}; inside it for {'; '.join(inside) or 'none'}.",
        indent="  ",
    )


def _limits_text(runs: Sequence[Run]) -> str:
    """``by at most 8/255 (HTBD-chapter 16/255; CLBD also pastes its patch)``: the eps the
    poisons keep to, and the rows without a budget with the largest change they made."""
    base = sorted({eps_text(run["config"]["eps"]) for run in runs if not unbounded(run["config"]["eps"])})
    rows, free = {}, {}
    for run in runs:
        for spec in run["config"]["attacks"]:
            if unbounded(row_eps(run, spec)):
                free[spec["name"]] = largest_change(run, spec["name"])
            elif spec.get("eps"):
                rows[spec["name"]] = eps_text(spec["eps"])
    extra = [f"{name} {eps}" for name, eps in rows.items() if eps not in base]
    patched = patched_rows(runs)
    if patched:
        one = len(patched) == 1
        extra.append(f"{', '.join(patched)} also {'pastes its' if one else 'paste their'} patch")
    if free:
        one = len(free) == 1
        changes = " and ".join("-" if v is None else f"{v}/255" for v in free.values())
        extra.append(
            f"{' and '.join(free)} {'has' if one else 'have'} no L-inf budget: largest "
            f"change{'' if one else 's'} {changes}"
        )
    head = f"by at most {' or '.join(base)}" if base else "without an L-inf budget"
    return head + (f" ({'; '.join(extra)})" if extra else "")


def accuracy_bullet(runs: Sequence[Run]) -> str:
    runs = label_runs(runs)
    out, inside = _split(_changes(runs, "accuracy"))
    unstable = []
    for run in runs:
        down = [r for r in run["trials"] if collapsed(run, r)]
        if down:
            unstable.append(
                f"The `{setting_label(run)}` recipe is not stable on {run['clean']['train_size']:,} "
                f"images: {len(down)} of its {len(run['trials'])} victims collapsed."
            )
    ranges = "; ".join(
        f"`{setting_label(run)}` {min(r['clean_accuracy'] for r in run['trials']):.3f}-"
        f"{max(r['clean_accuracy'] for r in run['trials']):.3f} (clean victim "
        f"{mean_victim_accuracy(run):.3f})"
        for run in runs
    )
    budgets = sorted({f"{100 * run['config']['budget']:g} %" for run in runs})
    return para(
        "- **Clean accuracy.**",
        *unstable,
        "Over the victims that trained, the paired change against the clean victim (points) has 0",
        f"outside its t interval for {'; '.join(out) or 'none'}; inside it for {len(inside)} other rows.",
        f"Single victims ranged {ranges}. The poisons change {' / '.join(budgets)} of the images",
        f"{_limits_text(runs)}; {_cause_text(runs)}",
        indent="  ",
    )


def _cause_text(runs: Sequence[Run]) -> str:
    """What says whether the poison or the recipe causes the losses: the placebo runs, where any."""
    placebos = [run for run in runs if is_placebo(run)]
    if not placebos:
        return (
            "whether the poison or the recipe causes the losses and the collapses needs the placebo "
            "control above."
        )
    have = dict.fromkeys(run["config"]["setting"] for run in placebos)
    rest = [f"`{s}`" for s in dict.fromkeys(run["config"]["setting"] for run in runs) if s not in have]
    names = and_list([f"`{setting_label(run)}`" for run in placebos])
    others = (
        f"; {and_list(rest)} {'has' if len(rest) == 1 else 'have'} none, so whether the poison or the "
        "recipe causes theirs is not measured"
        if rest
        else ""
    )
    return (
        f"for {and_list([f'`{s}`' for s in have])} the placebo control ({names}) sets the losses and "
        "the collapses beside a random perturbation of as many images inside the same eps (its rows in "
        f"the tables above, its collapses in the paragraph on collapsed victims){others}."
    )
