"""The findings of ``docs/results/clean_label.md``: "What this shows" (and, from
:mod:`.clean_label_collapse`, the collapsed victims' paragraph).

Every figure is computed from the runs' ``results.json``; every comparison names its interval
(Wilson for a success rate, Newcombe for a difference of two rates, Student-t over the trials
for a paired change or a mean AUROC) and says whether 0 (or the paper's figure, or 0.50 for an
AUROC) is outside it. A placebo row (:func:`~.clean_label_runs.placebo_row`) is the control, not
an attack: it is left out of the attacks' comparisons and its successes are stated as the chance
rate of a random perturbation. :mod:`poisonlab.reporting.clean_label_page` assembles the page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from poisonlab.experiments.clean_label.report import summarize_data
from poisonlab.reporting.clean_label_changes import accuracy_bullet, backdoor_bullet
from poisonlab.reporting.clean_label_collapse import collapse_paragraph
from poisonlab.reporting.clean_label_detection import detection_bullets
from poisonlab.reporting.clean_label_runs import (
    is_placebo,
    label_runs,
    largest_change,
    named_settings,
    placebo_row,
    seeds_of,
    setting_label,
    unbounded,
)
from poisonlab.reporting.clean_label_setup import (
    PAPER,
    attack_param,
    eps_text,
    paper_protocol,
    trial_count,
    victim_training,
)
from poisonlab.reporting.prose import para, pct_interval, points
from poisonlab.reporting.stats import paired_difference, rate_difference

__all__ = ["collapse_paragraph", "findings_section"]

Run = Mapping[str, Any]


def _outside(flag: bool) -> str:
    return "outside" if flag else "inside"


def _summaries(runs: Sequence[Run]) -> list[tuple[Run, dict[str, Any]]]:
    return [(run, r) for run in runs for r in summarize_data(run)]


def _difference_texts(runs: Sequence[Run], run: Run, row: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """``row`` against the same attack in every other setting: (0 outside, 0 inside)."""
    out, inside = [], []
    for other in runs:
        match = [
            r
            for r in summarize_data(other)
            if r["attack"] == row["attack"] and r["counted"] and not placebo_row(r)
        ]
        if other is run or not match or not row["counted"]:
            continue
        b = match[0]
        d = rate_difference(row["successes"], row["counted"], b["successes"], b["counted"])
        text = (
            f"{row['attack']}'s {row['successes']}/{row['counted']} against {b['successes']}/{b['counted']} "
            f"in `{setting_label(other)}` ({points(d.estimate, 0)}, Newcombe "
            f"{100 * d.low:+.0f} to {100 * d.high:+.0f})"
        )
        (out if d.excludes_zero else inside).append(text)
    return out, inside


def _hit_text(run: Run, r: Mapping[str, Any]) -> str:
    if unbounded(r["eps"]):
        worst = largest_change(run, r["attack"])
        bound = "and no L-inf budget" + ("" if worst is None else f" (largest change {worst}/255)")
    else:
        bound = f"inside {eps_text(r['eps'])}"
    return (
        f"{r['attack']} (`{r['kind']}`) flipped the victim in {r['successes']} of {r['counted']} "
        f"`{setting_label(run)}` trials (Wilson {pct_interval(*r['interval'], 0)}) with "
        f"{run['clean']['poisons']} poisons {bound}"
    )


def _placebo_text(runs: Sequence[Run]) -> str:
    """The placebo rows' successes: the chance rate of a random perturbation, not an attack's."""
    rows = [(run, r) for run, r in _summaries(runs) if placebo_row(r) and r["counted"]]
    if not rows:
        return ""
    hits = "; ".join(
        f"{r['attack']} (`{r['kind']}`) flipped the victim in {r['successes']} of {r['counted']} "
        f"`{setting_label(run)}` trials (Wilson {pct_interval(*r['interval'], 0)})"
        for run, r in rows
    )
    return f"**The placebo is the control, not an attack:** {hits}, the chance rate of a random perturbation."


def _success_bullet(runs: Sequence[Run]) -> str:
    # the attacks alone: a placebo's successes (or their absence) say nothing of an attack
    attacked = [run for run in runs if not is_placebo(run)]
    rows = [(run, r) for run, r in _summaries(attacked) if not placebo_row(r)]
    control = _placebo_text(runs)
    hits = [(run, r) for run, r in rows if r["successes"]]
    won = [run for run in attacked if any(run is h for h, _ in hits)]
    settings = named_settings(won, attacked)
    if not hits:
        none = "attack" if control else "trial"
        return para(f"- **No {none} succeeded in any setting.**", _zero_text(rows), control, indent="  ")
    only = "only in " if len(won) < len(attacked) else "in "
    head = [f"**Successes were observed {only}{' and '.join(settings)}**:"]
    head.append("; ".join(_hit_text(run, r) for run, r in hits) + ".")
    out, inside = [], []
    for run, r in hits:
        a, b = _difference_texts(attacked, run, r)
        out, inside = out + a, inside + b
    if out:
        head.append(f"0 is outside the interval of the difference for {'; '.join(out)}.")
    if inside:
        head.append(f"It is inside for {'; '.join(inside)}.")
    return para("-", *head, _zero_text(rows), control, indent="  ")


def _inside(row: Mapping[str, Any], percent: float) -> bool:
    lo, hi = row["interval"]
    return lo <= percent / 100 <= hi


def _zero_text(rows: list[tuple[Run, dict[str, Any]]]) -> str:
    zeros = [r for _, r in rows if r["counted"] and not r["successes"]]
    if not zeros:
        return ""
    bounds = {r["counted"]: r["interval"][1] for r in zeros}
    ups = ", ".join(f"{100 * bounds[n]:.0f} % for {n} trials" for n in sorted(bounds, reverse=True))
    text = (
        "**That the other rows' attacks do not work is not shown**: no trial succeeded there, but the",
        f"95 % Wilson interval of 0 successes reaches {ups}.",
    )
    pubs = [(r["published"], r) for r in zeros if r["published"] is not None]
    if not pubs:
        return " ".join(text)
    outside = [f"{r['attack']} ({p:g} %)" for p, r in pubs if not _inside(r, p)]
    span = f"{min(p for p, _ in pubs):g}-{max(p for p, _ in pubs):g} %"
    verdict = (
        f"are outside our intervals for {', '.join(outside)}"
        if outside
        else "are all inside our intervals: those runs do not contradict the paper, and are too small to "
        "rank the attacks"
    )
    return " ".join([*text, f"The paper's averages for those rows ({span}) {verdict}."])


def _differences_from_paper(run: Run, spec: Mapping[str, Any]) -> str:
    params = (spec.get("params") or {}).items()
    settings = ", ".join(f"{k} {'none' if v is None else v}" for k, v in params) or "defaults"
    n = len([r for r in run["trials"] if r["attack"] == spec["name"]])
    if run["config"]["setting"].startswith("transfer"):
        where = (
            "the feature extractor (our small CNN pre-trained on CIFAR-10 images of the victim's own "
            "classes, against the paper's larger networks pre-trained on CIFAR-100)"
        )
    else:
        where = (
            f"the training set ({run['clean']['train_size']:,} images against the paper's "
            f"{PAPER['scratch_train']:,})"
        )
    budget = _budget_difference(run, spec)
    items = [*([budget] if budget else []), where, f"the trial count ({n} against the paper's far more)"]
    return f"What differs: {', '.join(items)} and our attack's settings ({settings})."


def _budget_difference(run: Run, spec: Mapping[str, Any]) -> str:
    """The row's L-inf budget against the paper's, where they differ ("" where they match)."""
    eps = spec.get("eps") or run["config"]["eps"]
    if round(255 * eps) == PAPER["eps_255"]:
        return ""
    worst = largest_change(run, spec["name"])
    ours = (
        "none" + ("" if worst is None else f", largest change {worst}/255")
        if unbounded(eps)
        else eps_text(eps)
    )
    return f"the L-inf budget ({ours}, against the paper's {PAPER['eps_255']}/255)"


def _protocol_text(run: Run, pub: float) -> str:
    """For a run whose protocol departs from the paper's: whose protocol each figure is for."""
    text, diffs = paper_protocol(run)
    if not diffs:
        return ""
    seeds, n = seeds_of(run), trial_count(run)
    seed = (
        f"is one seed (seed {seeds[0]}) of {n} paired trials"
        if len(seeds) == 1
        else f"pools {len(seeds)} seeds (each its own surrogate and trials) into {n} paired trials"
    )
    return (
        f"This run {seed}; the paper's {pub:g} % is its average over its "
        f"architectures under its own protocol, which {text}."
    )


def _paper_gap_bullets(runs: Sequence[Run]) -> list[str]:
    """One bullet per row whose Wilson interval leaves the paper's average out."""
    bullets = []
    for run in runs:
        specs = {s["name"]: s for s in run["config"]["attacks"]}
        for r in summarize_data(run):
            pub = r["published"]
            if pub is None or not r["counted"] or _inside(r, pub):
                continue
            where = f"{r['attack']} in `{setting_label(run)}`"
            bullets.append(
                para(
                    f"- **{where} at {100 * r['success_rate']:.0f} % against the paper's {pub:g} %**:",
                    f"{pub:g} % is outside our interval ({pct_interval(*r['interval'], 0)}).",
                    "We have no tested explanation.",
                    _protocol_text(run, pub),
                    _differences_from_paper(run, specs[r["attack"]]),
                    "Which of these, if any, accounts for the gap is not measured.",
                    indent="  ",
                )
            )
    return bullets


def _matching_text(run: Run, r: Mapping[str, Any], spec: Mapping[str, Any]) -> str:
    """How a from-scratch gradient-matching row was cut, and whether its objective fell."""
    crafts = [t["craft"] for t in run["trials"] if t["attack"] == r["attack"] and t.get("craft")]
    restarts, _ = attack_param(spec, "restarts")
    train, _ = victim_training(run)
    d = paired_difference([c["loss_final"] for c in crafts], [c["loss_initial"] for c in crafts])
    first = sum(c["loss_initial"] for c in crafts) / len(crafts)
    pub = "" if r["published"] is None else f", the paper's {r['published']:g} % {_pub_side(r)} it"
    clean = run["clean"]
    return para(
        f"- Gradient matching from scratch ran with {restarts} restart{'s' if restarts != 1 else ''}",
        f"instead of the paper's {PAPER['wb_restarts']}, {clean['poisons']} poisons on",
        f"{clean['train_size']:,} images instead of {round(PAPER['budget'] * PAPER['scratch_train'])} on",
        f"{PAPER['scratch_train']:,} (the paper's, as we read it), and a {train['epochs']}-epoch recipe;",
        "its objective on the surrogate (1 - cosine of the poison and adversarial gradients) went from",
        f"{first:.2f} to {first + d.estimate:.2f} on average over its {len(crafts)} crafts",
        f"({d.estimate:+.2f}, t interval {d.low:+.2f} to {d.high:+.2f}: 0 {_outside(d.excludes_zero)} it).",
        f"It flipped {r['successes']} of {r['counted']} victims",
        f"(Wilson {pct_interval(*r['interval'], 0)}{pub}), which says little about its rate.",
        indent="  ",
    )


def _scratch_crafting_bullets(runs: Sequence[Run]) -> list[str]:
    """Gradient matching trained from scratch (the paper's strongest row there)."""
    bullets = []
    for run in runs:
        if run["config"]["setting"] != "scratch":
            continue
        specs = {s["name"]: s for s in run["config"]["attacks"]}
        for r in summarize_data(run):
            crafts = [t for t in run["trials"] if t["attack"] == r["attack"] and t.get("craft")]
            if r["kind"] == "gradient_matching" and len(crafts) >= 2:
                bullets.append(_matching_text(run, r, specs[r["attack"]]))
    return bullets


def _pub_side(row: Mapping[str, Any]) -> str:
    return "inside" if _inside(row, row["published"]) else "outside"


def findings_section(runs: Sequence[Run]) -> list[str]:
    """``## What this shows``: successes, the paper's figures, backdoor rates, detection, accuracy."""
    runs = label_runs(runs)
    bullets = [
        _success_bullet(runs),
        *_paper_gap_bullets(runs),
        *_scratch_crafting_bullets(runs),
        backdoor_bullet(runs),
        *detection_bullets(runs),
        accuracy_bullet(runs),
    ]
    return ["## What this shows", "", *(b for b in bullets if b), ""]
