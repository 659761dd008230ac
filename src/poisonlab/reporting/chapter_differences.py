"""Table 3 of ``chapter.md``: each poisoned figure minus its clean model's and its control's.

The interval fits what the two sides hold: the paired t interval of the per-seed differences
when both have the same seeds with their own models (seed k's poisoned model against seed k's
clean model, or seed k's control fine-tuned from that clean model), Welch's over seeds when both
have two or more unpaired models, else Newcombe's on the test-image counts of one model at the
mean rate (:mod:`poisonlab.reporting.stats`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from poisonlab.reporting.chapter_data import LABELS, figures, hits
from poisonlab.reporting.results_docs import markdown_table
from poisonlab.reporting.stats import Difference, mean_difference, paired_difference, rate_difference

__all__ = [
    "CONTROL",
    "CONTROLS",
    "PLACEBO",
    "clean_model_sets",
    "comparison",
    "control_of",
    "difference_table",
]

#: the fine-tune rows' control: the same fine-tune on the clean set, no poison
CONTROL = "control-finetune"
#: the poison-only fine-tunes' control: the Rutan photos with their true label, same fine-tune
PLACEBO = "rutan-finetune-placebo"


def _difference(key: str, a: list[tuple[float, int]], b: list[tuple[float, int]]) -> Difference:
    """a - b: Welch over seeds when both sides have two or more models, else Newcombe on the
    test-image counts of one model at the mean rate (test-set sampling only)."""
    if len(a) >= 2 and len(b) >= 2:
        return mean_difference([v for v, _ in a], [v for v, _ in b])
    ha, na = hits(key, a)
    hb, nb = hits(key, b)
    diff = rate_difference(ha, na, hb, nb)
    if key != "source_to_target":
        return diff
    return Difference(diff.estimate * na, diff.low * na, diff.high * na, diff.method, diff.level)


def _diff_cell(key: str, d: Difference) -> list[str]:
    scale, unit = (1.0, "") if key == "source_to_target" else (100.0, " pt")
    fmt = "{:+.1f}"
    interval = f"{fmt.format(scale * d.low)} to {fmt.format(scale * d.high)}"
    return [
        f"{fmt.format(scale * d.estimate)}{unit}",
        f"{interval} ({d.method})",
        "yes" if d.excludes_zero else "no",
    ]


def _per_seed(data: Mapping, model: str, key: str) -> dict[int, float]:
    """``{seed: figure}`` of the poisoned models, or of the clean models when each seed has its
    own (``baseline: per_seed``); empty when the clean model is shared."""
    field = "metrics" if model == "poisoned" else "clean_metrics"
    return {r["seed"]: r[field][key] for r in data["runs"] if (r.get(field) or {}).get(key) is not None}


def _paired(a: Mapping[int, float], b: Mapping[int, float]) -> Difference | None:
    """The paired t difference when both sides hold the same two or more seeds, else None."""
    if len(a) < 2 or set(a) != set(b):
        return None
    seeds = sorted(a)
    return paired_difference([a[s] for s in seeds], [b[s] for s in seeds])


#: the control of each integration: the same fine-tune without the poison (for the poison-only
#: fine-tunes, the Rutan photos with their true label); a retrain's control is its clean model,
#: trained from scratch by the same recipe and seed without the poison
CONTROLS = {"finetune": CONTROL, "finetune_poison_only": PLACEBO}


def control_of(runs: Mapping[str, dict], name: str) -> str | None:
    """The control row of ``name``: its integration's control (:data:`CONTROLS`) or a variant of it
    (``control-finetune-b32``) whose fine-tune recipe is exactly ``name``'s; None when no row in
    ``runs`` fine-tunes the same way (an attack minus a control of another batch size would mix
    the two effects), and for the control itself."""
    data = runs[name]
    base = CONTROLS.get(data["config"]["integration"])
    if base is None:
        return None
    recipe = data["config"].get("finetune")
    same = [
        other
        for other in sorted(runs)
        if other != name
        and (other == base or other.startswith(f"{base}-"))
        and runs[other]["config"].get("finetune") == recipe
    ]
    return same[0] if same else None


def _clean_ids(data: Mapping) -> dict[int, str | None]:
    """``{seed: clean model id}`` of a row's seeds that have their own clean model."""
    return {r["seed"]: r.get("clean_model") for r in data["runs"] if r.get("clean_metrics")}


def _agreeing_seeds(ia: Mapping[int, str | None], ib: Mapping[int, str | None]) -> set[int]:
    """The seeds two rows both hold, when each has the same known clean model in both; empty
    when any such seed has two different ones (another recipe, another machine)."""
    common = set(ia) & set(ib)
    if any(ia[s] is None or ia[s] != ib[s] for s in common):
        return set()
    return common


def _shared_seeds(a: Mapping, b: Mapping) -> set[int]:
    """The seeds both rows fine-tune from the same clean model: only such a seed k of one is
    paired with seed k of the other. Empty when fewer than two."""
    shared = _agreeing_seeds(_clean_ids(a), _clean_ids(b))
    return shared if len(shared) >= 2 else set()


def comparison(runs: Mapping[str, dict], name: str, key: str, other: str) -> Difference | None:
    """``name``'s poisoned models minus ``other`` (``"clean model"``: its own clean model(s), else
    another experiment's poisoned models) on ``key``; None when a side lacks the figure.

    Two rows that share only some of their seeds (a row run over fewer seeds) are paired over
    those; the method then says how many (``paired t over the 4 shared seeds``)."""
    data = runs[name]
    a = figures(data)["poisoned"].get(key)
    pa = _per_seed(data, "poisoned", key)
    if other == "clean model":
        b, pb = figures(data)["clean"].get(key), _per_seed(data, "clean", key)
    else:
        ref = runs[other]
        b, pb = figures(ref)["poisoned"].get(key), _per_seed(ref, "poisoned", key)
        shared = _shared_seeds(data, ref) & set(pa) & set(pb)
        if len(shared) < 2:  # seed k of one row has nothing in common with seed k of the other
            pb = {}
        elif shared != set(pa) or shared != set(pb):  # pair over the seeds both have
            pa, pb = ({s: v for s, v in side.items() if s in shared} for side in (pa, pb))
            return replace(_paired(pa, pb), method=f"paired t over the {len(shared)} shared seeds")
    if not a or not b:
        return None
    return _paired(pa, pb) or _difference(key, a, b)


def clean_model_sets(runs: Mapping[str, dict]) -> str:
    """One sentence naming which per_seed rows share their clean models (the same model id for
    every seed they share): only those are paired with each other. Rows whose seeds run on
    clean models of their own (trained elsewhere, or before a training revision) are named
    apart, so that a reader sees why their comparisons are unpaired."""
    groups: dict[str, list[str]] = {}  # the group's first row -> its rows
    for name, data in runs.items():
        if data["summary"].get("baseline") != "per_seed":
            continue
        ids = _clean_ids(data)
        first = next((k for k in groups if _agreeing_seeds(_clean_ids(runs[k]), ids)), name)
        groups.setdefault(first, []).append(name)
    if len(groups) < 2:
        return "Every per_seed row fine-tunes seed k from the same clean model k."
    ordered = sorted(groups.values(), key=len, reverse=True)
    others = "; ".join(
        f"({i}) " + ", ".join(f"`{n}`" for n in names) for i, names in enumerate(ordered[1:], start=1)
    )
    return (
        f"The per_seed rows run on {len(groups)} sets of clean models: {len(ordered[0])} rows share one "
        f"set (seed k from the same model k); each of these groups has a set of its own: {others}. "
        "Rows of different sets are compared unpaired (*welch*)."
    )


def difference_table(runs: Mapping[str, dict]) -> str:
    """Table 3: poisoned vs clean model and attack vs its control, with intervals (paired over
    seeds when both sides have the same seeds with their own models)."""
    rows = []
    for name in runs:
        control = control_of(runs, name)
        others = ["clean model"] + ([control] if control is not None else [])
        for key in ("clean_accuracy", "source_to_target"):
            for other in others:
                diff = comparison(runs, name, key, other)
                if diff is not None:
                    rows.append([name, LABELS[key], other, *_diff_cell(key, diff)])
    header = ["experiment", "figure", "compared with", "difference", "95% interval", "0 outside the interval"]
    return markdown_table(header, rows)
