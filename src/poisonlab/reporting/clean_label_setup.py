"""The set-up part of ``docs/results/clean_label.md``: the attacks and the protocol, and the
helpers the page's other modules share (the paper's figures, eps and dataset names, recorded
parameters); the prose formatters are :mod:`poisonlab.reporting.prose`'s.

Every figure is read from the runs' ``results.json`` (the config each run recorded, its clean
figures, its trial rows) or, where a run did not record it, from the code's default today (said
so on the page). The paper's figures (Schwarzschild et al., ICML 2021) are literal citations in
:data:`PAPER`, printed as the paper's. :mod:`poisonlab.reporting.clean_label_page` assembles the
page.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from poisonlab.reporting.clean_label_runs import label_runs, setting_label, unbounded
from poisonlab.reporting.prose import para
from poisonlab.reporting.results_docs import markdown_table

__all__ = [
    "ATTACK_NOTES",
    "PAPER",
    "attack_class",
    "attack_param",
    "attacks_table",
    "bounds_paragraph",
    "dataset_text",
    "eps_text",
    "first_specs",
    "paper_protocol",
    "patched_rows",
    "protocol_paragraph",
    "trial_count",
    "victim_training",
]

Run = Mapping[str, Any]

#: The paper's protocol as we read it (not re-checked against its appendix): cited, not measured.
PAPER = {
    "transfer_train": 2500,
    "transfer_poisons": 25,
    "eps_255": 8,
    "scratch_train": 50000,
    "budget": 0.01,
    "wb_restarts": 8,
    "patch": 5,
}

#: Per attack kind: the paper that introduced it, what its poisons are, what the victim sees.
ATTACK_NOTES = {
    "feature_collision": (
        "Shafahi et al., NeurIPS 2018 (Poison Frogs)",
        "target-class images whose features collide with the victim's",
        "nothing",
    ),
    "clean_label_backdoor": (
        "Turner, Tsipras and Madry 2019 (label-consistent backdoor)",
        "target-class images made hard by PGD, then the patch",
        "the patch on the victim",
    ),
    "hidden_trigger": (
        "Saha, Subramanya and Pirsiavash, AAAI 2020",
        "target-class images whose features match patched source images; no visible patch",
        "the patch on the victim",
    ),
    "gradient_matching": (
        "Geiping et al., ICLR 2021 (Witches' Brew)",
        "target-class images whose training gradient aligns with the victim's adversarial gradient",
        "nothing",
    ),
    "random_noise": (
        "none: the placebo control of the attacks above",
        "as many target-class images moved at random inside the same eps (no optimisation)",
        "nothing",
    ),
}

_DATASETS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "digits": "digits"}


def eps_text(eps: float) -> str:
    """``0.0313...`` -> ``8/255``."""
    return f"{eps * 255:.0f}/255"


def trial_count(run: Run) -> int:
    """Trials recorded (each seed's trials count apart when seeds are pooled)."""
    return len({(r.get("seed"), r["trial"]) for r in run["trials"]})


def attack_class(kind: str) -> Any:
    """The registry's class of an attack kind (its defaults are read off it)."""
    from poisonlab.attacks import ATTACKS

    return ATTACKS.get(kind)


def attack_param(spec: Mapping[str, Any], key: str) -> tuple[Any, bool]:
    """``(value, from_code)``: the row's recorded parameter, else the attack class's default."""
    if key in spec.get("params", {}):
        return spec["params"][key], False
    fields = {f.name: f.default for f in dataclasses.fields(attack_class(spec["attack"]))}
    return fields.get(key), True


def victim_training(run: Run) -> tuple[dict[str, Any], bool]:
    """``(settings, recorded)``: the victim's resolved training config from the run's provenance
    block, else resolved from its recorded config by today's code (``recorded`` False)."""
    recorded = ((run.get("provenance") or {}).get("parameters") or {}).get("victim_training")
    if recorded:
        return dict(recorded), True
    from poisonlab.experiments.clean_label import parse_clean_label

    config = {k: v for k, v in run["config"].items() if k != "seeds"}  # pooled seeds: one config
    return parse_clean_label(config, origin="results.json").victim_config().model_dump(mode="json"), False


def first_specs(runs: Sequence[Run]) -> dict[str, Mapping[str, Any]]:
    """The first attack row of each kind over the runs, in page order."""
    out: dict[str, Mapping[str, Any]] = {}
    for run in runs:
        for spec in run["config"]["attacks"]:
            out.setdefault(spec["attack"], spec)
    return out


def attacks_table(runs: Sequence[Run]) -> str:
    """One row per attack kind the runs ran: its name, registry name, paper and mechanism."""
    rows = []
    for kind, spec in first_specs(runs).items():
        paper, poisons, test = ATTACK_NOTES.get(kind, ("-", "-", "-"))
        rows.append([spec["name"], f"`{kind}`", paper, poisons, test])
    return markdown_table(["name", "attack", "paper", "poisons", "at test time"], rows)


def paper_protocol(run: Run) -> tuple[str, list[str]]:
    """``(text, differences)``: the paper's protocol for the run's setting family, as we read it
    (:data:`PAPER`, printed as the paper's figures), and where the run's own protocol departs
    from it (sizes, poisons, the L-inf budget)."""
    clean, eps = run["clean"], round(run["config"]["eps"] * 255)
    ours_eps = "no L-inf budget" if unbounded(run["config"]["eps"]) else f"{eps}/255"
    if run["config"]["setting"].startswith("transfer"):
        text = (
            f"fine-tunes on {PAPER['transfer_train']:,} CIFAR-10 images with {PAPER['transfer_poisons']} "
            f"poisons at {PAPER['eps_255']}/255 (**the paper's figures** as we read them; we did not "
            "re-check its exact sizes)"
        )
        pairs = [
            ("training images", clean["train_size"], PAPER["transfer_train"]),
            ("poisons", clean["poisons"], PAPER["transfer_poisons"]),
        ]
    else:
        text = (
            f"trains from scratch on {PAPER['scratch_train']:,} CIFAR-10 images with a "
            f"{100 * PAPER['budget']:g} % budget at {PAPER['eps_255']}/255 (the paper's, as we read it)"
        )
        pairs = [("training images", clean["train_size"], PAPER["scratch_train"])]
    diffs = [f"{ours:,} {what} against {paper:,}" for what, ours, paper in pairs if ours != paper]
    diffs += [f"{ours_eps} against {PAPER['eps_255']}/255"] if eps != PAPER["eps_255"] else []
    return text, diffs


def dataset_text(run: Run) -> str:
    """``CIFAR-10`` for ``cifar10``; other dataset names as recorded."""
    name = run["config"]["dataset"]["name"]
    return _DATASETS.get(name, name)


def _linf_by_row(runs: Sequence[Run]) -> dict[str, dict[str, set[int]]]:
    """Per attack row name: the eps, the largest stored change, and the largest before a patch."""
    out: dict[str, dict[str, set[int]]] = {}
    for run in runs:
        for spec in run["config"]["attacks"]:
            crafts = [r["craft"] for r in run["trials"] if r["attack"] == spec["name"] and r.get("craft")]
            if not crafts:
                continue
            row = out.setdefault(spec["name"], {"eps": set(), "worst": set(), "before": set()})
            row["eps"].add(round(255 * (spec.get("eps") or run["config"]["eps"])))
            row["worst"].add(max(c["max_linf"] for c in crafts))
            before = [c["max_linf_adversarial"] for c in crafts if c.get("max_linf_adversarial") is not None]
            row["before"] |= {max(before)} if before else set()
    return out


def patched_rows(runs: Sequence[Run]) -> list[str]:
    """Attack rows whose stored poisons carry a visible patch (recorded apart from the ball)."""
    return [name for name, row in _linf_by_row(runs).items() if row["before"]]


def bounds_paragraph(runs: Sequence[Run]) -> str:
    """The largest L-inf change recorded per attack row against its eps (stored uint8 poisons);
    rows without a budget (eps 255/255) are said to have none, with their largest change."""
    parts, outside, free = [], [], []
    for name, row in _linf_by_row(runs).items():
        eps, worst, before = max(row["eps"]), max(row["worst"]), max(row["before"], default=None)
        if all(unbounded(e / 255) for e in row["eps"]):
            free.append((name, worst))
            continue
        eps_list = " or ".join(f"{e}/255" for e in sorted(row["eps"]))
        if before is None:
            parts.append(f"{name} {worst}/255 (eps {eps_list})")
        else:
            parts.append(f"{name} {before}/255 before its patch, {worst}/255 with it (eps {eps_list})")
        if (before if before is not None else worst) > eps:
            outside.append(name)
    verdict = (
        "every poison stays inside its L-inf ball; only the visible patch of the backdoor that pastes one "
        "leaves it, by design"
        if not outside
        else f"**outside the ball**: {', '.join(outside)}"
    )
    text = f"setting: {'; '.join(parts)}: {verdict}." if parts else "setting:"
    return para(
        "Every label stays correct (the poisons are images of the target class with their own label).",
        "The largest change of a stored (uint8) poison from its clean image, over every trial of every",
        text,
        _free_text(free),
    )


def _free_text(free: list[tuple[str, int]]) -> str:
    """Rows run without an L-inf budget: say so, and give what they changed."""
    if not free:
        return ""
    names = " and ".join(name for name, _ in free)
    changes = " and ".join(f"{worst}/255" for _, worst in free)
    one = len(free) == 1
    return (
        f"{names} {'has' if one else 'have'} **no L-inf budget** (eps 255/255: only the [0, 1] pixel "
        f"range bounds a change); {'its' if one else 'their'} largest change{'' if one else 's'} "
        f"{'is' if one else 'are'} {changes}."
    )


def protocol_paragraph(runs: Sequence[Run]) -> str:
    """The trial protocol, the budget and the control counts."""
    runs = label_runs(runs)
    budgets = sorted({run["config"]["budget"] for run in runs})
    controls = [(setting_label(run), sum(r["control"] for r in run["trials"])) for run in runs]
    rows = sum(len(run["trials"]) for run in runs)
    if all(c == 0 for _, c in controls):
        control = (
            f"0 of the {rows:,} trial rows (trials x attacks) below, so no success came from the patch alone"
        )
    else:
        control = (
            "; ".join(f"`{s}` {c}" for s, c in controls) + " trial rows, whose success may owe to the patch"
        )
    return para(
        "**Protocol.** Per trial one test image the clean victim model classifies correctly (the",
        "*victim*) and one random other class (the *target*) are drawn; every attack of the trial gets",
        "the same draw (a paired comparison). The attacker perturbs",
        " / ".join(f"{100 * b:g} %" for b in budgets),
        "of the victim's training set, drawn from the images of the target class, against a white-box",
        "surrogate. The victim model is then trained on the poisoned set; a trial **succeeds** when the",
        "victim image (with the patch, for backdoors) is classified as the target. The **control**",
        "counts trials where the clean model already does that (a patch alone could flip an image):",
        f"{control}.",
        "For the backdoors the report also gives the share of *all* patched victim-class test images",
        "sent to the target (the backdoor rate), next to the clean model's rate.",
    )
