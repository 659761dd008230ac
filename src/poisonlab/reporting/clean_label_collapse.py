"""The collapsed victims of ``docs/results/clean_label.md``, and the placebo control beside them.

A victim whose clean accuracy fell more than
:data:`~poisonlab.experiments.clean_label.report.COLLAPSE_MARGIN` below its run's clean victim
did not train (:func:`~poisonlab.experiments.clean_label.report.collapsed`). Whether the crafted
poisons or the recipe collapse it takes a placebo run (:func:`~.clean_label_runs.is_placebo`: the
same images and eps ball, a random perturbation): where the page holds one, its collapsed victims
(Wilson 95 % interval) are set against those of the crafted attacks of its setting, pooled over
attacks and trials, with Newcombe's interval of the difference. A placebo's victims are never
counted as crafted. :mod:`poisonlab.reporting.clean_label_page` assembles the page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from poisonlab.experiments.clean_label.report import COLLAPSE_MARGIN, collapsed, victim_accuracy
from poisonlab.reporting.clean_label_runs import (
    is_placebo,
    label_runs,
    named_settings,
    placebo_row,
    row_eps,
    setting_label,
)
from poisonlab.reporting.clean_label_setup import eps_text, trial_count
from poisonlab.reporting.prose import and_list, para, points, rate_pct
from poisonlab.reporting.stats import Difference, rate_difference

__all__ = ["collapse_paragraph", "placebo_collapse_text"]

Run = Mapping[str, Any]


def _collapsed_text(run: Run, mine: list[Mapping[str, Any]]) -> str:
    accs = ", ".join(f"{r['clean_accuracy']:.3f}" for r in sorted(mine, key=lambda r: r["clean_accuracy"]))
    wins = sum(r["success"] for r in mine)
    plural = "s" if len(mine) != 1 else ""
    return (
        f"{len(mine)} `{setting_label(run)}` victim{plural} collapsed (accuracies {accs} against the "
        f"clean victim's {victim_accuracy(run, mine[0]):.3f}; {wins or 'none'} succeeded)"
    )


def _margin_text(runs: Sequence[Run]) -> str:
    """The victims nearest the margin on either side: which margins would split them the same."""
    trained, down = [], []
    for run in runs:
        for r in run["trials"]:
            drop = 100 * (victim_accuracy(run, r) - r["clean_accuracy"])
            (down if collapsed(run, r) else trained).append((drop, run, r))
    if not trained:
        return ""
    drop, run, r = max(trained, key=lambda t: t[0])
    seed = f" (seed {r['seed']})" if "seed" in r else ""
    text = (
        f"The victims that trained sit at most {drop:.1f} points below their clean victim "
        f"(`{setting_label(run)}` trial {r['trial']}{seed}, {r['attack']}: {r['clean_accuracy']:.3f} "
        f"against {victim_accuracy(run, r):.3f}; a margin of {drop / 100:.3f} or less would add it)"
    )
    if not down:
        return text + "."
    low = min(t[0] for t in down)
    return (
        f"{text}, the collapsed ones at least {low:.1f} points: any margin in between splits them the same."
    )


def _count(rows: list[tuple[Run, Mapping[str, Any]]]) -> tuple[int, int]:
    """(collapsed victims, victims) of (run, trial row) pairs, each against its own run's clean victim."""
    return sum(collapsed(run, r) for run, r in rows), len(rows)


def _surrogate_text(placebos: list[Run], crafted: list[Run]) -> str:
    """Whether the placebo and the crafted runs share the surrogate; if not, the comparison is
    unpaired, and both clean victims' accuracies are given."""
    ours = sorted({run["clean"]["surrogate_id"] for run in placebos})
    theirs = sorted({run["clean"]["surrogate_id"] for run in crafted})
    p_acc = and_list([f"{run['clean']['victim_accuracy']:.3f}" for run in placebos])
    c_acc = and_list([f"{run['clean']['victim_accuracy']:.3f}" for run in crafted])
    if _shared(placebos, crafted):
        return (
            f"The placebo and the crafted runs share the surrogate (`{ours[0]}`); each victim is "
            f"measured against its own run's clean victim ({p_acc} for the placebo, {c_acc} for the "
            "crafted attacks)."
        )
    return (
        f"The comparison is unpaired: the placebo ran on another surrogate ({_ids(ours)}, against "
        f"{_ids(theirs)}) and another clean victim (accuracy {p_acc}, against {c_acc})."
    )


def _shared(placebos: list[Run], crafted: list[Run]) -> bool:
    """Whether every placebo and crafted run trained on one and the same surrogate."""
    return len({run["clean"]["surrogate_id"] for run in [*placebos, *crafted]}) == 1


def _ids(ids: list[str]) -> str:
    return and_list([f"`{i}`" for i in ids])


def _reading(d: Difference, paired: bool) -> str:
    """What the difference (crafted minus placebo) says, and does not (``paired``: one surrogate)."""
    if d.excludes_zero and not paired:
        more = "crafted runs" if d.estimate > 0 else "placebo"
        return (
            f"the {more} collapsed more victims, but on another surrogate and clean victim, so these "
            "runs do not separate the poisons from the surrogate."
        )
    if not d.excludes_zero:
        return (
            "these runs do not show that the crafted poisons collapse the victims at another rate than "
            "a random perturbation of the same size."
        )
    if d.estimate > 0:
        return "the crafted poisons collapsed the victims more often than the random perturbation did."
    return "the random perturbation collapsed the victims more often than the crafted poisons did."


def _setting_text(runs: Sequence[Run], setting: str) -> str:
    """The placebo runs of one setting against the crafted attack rows of the same setting."""
    placebos = [run for run in runs if run["config"]["setting"] == setting and is_placebo(run)]
    crafted = [run for run in runs if run["config"]["setting"] == setting and not is_placebo(run)]
    k, n = _count([(run, r) for run in placebos for r in run["trials"]])
    first = placebos[0]
    spec = first["config"]["attacks"][0]
    kinds = and_list(sorted({f"`{s['attack']}`" for run in placebos for s in run["config"]["attacks"]}))
    labels = and_list([f"`{setting_label(run)}`" for run in placebos])
    head = (
        f"**The placebo control** ({kinds}: {first['clean']['poisons']:,} target-class images per trial, "
        f"as many as a crafted attack changes, moved at random inside {eps_text(row_eps(first, spec))}): "
        f"{k} of the {n} {labels} victims collapsed ({rate_pct(k, n, 0)})"
    )
    rows = [(run, r) for run in crafted for r in run["trials"] if not placebo_row(r)]
    if not rows:
        return f"{head}; no crafted attack of `{setting}` is on this page to set it against."
    ck, cn = _count(rows)
    attacks = len({(id(run), r["attack"]) for run, r in rows})
    trials = sum(trial_count(run) for run in crafted)
    d = rate_difference(ck, cn, k, n)
    reading = _reading(d, _shared(placebos, crafted))
    where = "outside" if d.excludes_zero else "inside"
    return (
        f"{head}. The crafted attacks of {and_list(named_settings(crafted, runs))} collapsed {ck} of "
        f"their {cn} victims ({attacks} attack rows pooled over {trials} trials; {rate_pct(ck, cn, 0)}): "
        f"crafted minus placebo {points(d.estimate, 0)}, Newcombe 95 % {100 * d.low:+.0f} to "
        f"{100 * d.high:+.0f} points, 0 {where} it (the interval takes the pooled victims as independent; "
        f"they are {attacks} attack rows on the same trials' draws): {reading} "
        f"{_surrogate_text(placebos, crafted)}"
    )


def placebo_collapse_text(runs: Sequence[Run]) -> str:
    """The placebo comparison of every setting with a placebo run on the page ("" without one)."""
    runs = label_runs(runs)
    settings = dict.fromkeys(run["config"]["setting"] for run in runs if is_placebo(run))
    return " ".join(_setting_text(runs, setting) for setting in settings)


def collapse_paragraph(runs: Sequence[Run]) -> str:
    """Which victims collapsed, the margin, the nearest victims on either side of it, and the
    placebo control where the page has one (else that none has been run)."""
    runs = label_runs(runs)
    parts, whole = [], []
    for run in runs:
        mine = [r for r in run["trials"] if collapsed(run, r)]
        if mine:
            parts.append(_collapsed_text(run, mine))
        else:
            whole.append(run)
    intact = named_settings(whole, runs)
    text = "; ".join(parts) or "No victim collapsed"
    text += f"; no {' or '.join(intact)} victim did." if intact and parts else "."
    control = placebo_collapse_text(runs)
    tail = (
        ("The margin was set with the crafted runs in view, before the placebo ran.", control)
        if control
        else (
            "The margin was set with these runs in view. A clean or placebo fine-tune control (the same",
            "recipe, several seeds, no poison) that would say how often the recipe collapses by itself has",
            "not been run.",
        )
    )
    return para(
        "**Collapsed victims are left out of the counts.** A victim whose clean accuracy fell more",
        f"than {COLLAPSE_MARGIN:.2f} below the clean victim's did not train; whether the poison worked in",
        "its trial is not measured, so it is neither a success nor a failed attack.",
        text,
        _margin_text(runs),
        *tail,
    )
