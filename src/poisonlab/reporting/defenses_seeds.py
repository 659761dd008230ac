"""The sections of ``docs/results/defenses.md`` for a matrix run over seeds.

``poisonlab matrix CONFIG --seeds N`` writes one ``matrix.json`` per seed under ``seed-K/``; each
seed draws its own training share, trusted set and poison and trains its own clean, poisoned and
mitigated models (the config's ``seed``). The committed copies live in
``docs/results/defenses/<dataset>-seeds/seed-K/matrix.json``. :func:`load_seeded` reads and checks
them and pools them with :func:`~poisonlab.experiments.matrix.records.aggregate_seeds`;
:func:`seeded_section` writes a section from them:

- the attack table (clean accuracy, attack success, the same triggers on the clean model, and
  the same after every retrain the config asked for), each as the mean over seeds with its
  Student-t 95 % interval;
- the detection tables (F1 and AUROC, mean ± sample std over seeds);
- findings: a detector *finds* a row's poison when its F1 reaches
  :data:`~poisonlab.reporting.defenses_text.FINDS` on every seed and *misses* it when it stays
  below :data:`~poisonlab.reporting.defenses_text.MISSES` on every seed (counts of seeds, no
  interval); every effect of a poisoning or a retrain is a paired t interval over seeds (seed
  k's models share seed k's data), with whether it excludes 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from poisonlab.experiments.matrix.records import aggregate_seeds
from poisonlab.reporting.defenses_data import row_kind
from poisonlab.reporting.defenses_text import FINDS, prose
from poisonlab.reporting.prose import and_list, k_of_n, para, span
from poisonlab.reporting.results_docs import DEFENSE_ABBREVIATIONS, load_json_object, markdown_table
from poisonlab.reporting.stats import describe_difference, paired_difference

__all__ = ["SeededMatrix", "load_seeded", "seeded_section"]

_KEYS = ("name", "dataset", "defenses", "clean_model", "seconds", "rows", "provenance")
_SEED_DIR = re.compile(r"seed-(\d+)")


@dataclass(frozen=True)
class SeededMatrix:
    """The ``matrix.json`` of each seed of one run (``runs``, in seed order) and their pooled
    figures (``agg``, :func:`~poisonlab.experiments.matrix.records.aggregate_seeds`)."""

    folder: Path
    runs: tuple[dict, ...]
    agg: dict

    @property
    def seeds(self) -> list[int]:
        return list(self.agg["seeds"])

    @property
    def defenses(self) -> list[str]:
        """Every column, the screen's verdict (``screen``) last when present."""
        names = [d for d in self.agg["defenses"] if d != "screen"]
        return names + (["screen"] if "screen" in self.agg["defenses"] else [])

    def commits(self) -> list[str]:
        """The distinct commits the seeds ran at (their provenance), in seed order."""
        return list(dict.fromkeys(str(r["provenance"].get("commit") or "unknown")[:13] for r in self.runs))

    def description(self, index: int) -> str:
        return str(self.runs[0]["rows"][index]["description"])

    def values(self, index: int, *path: str) -> list[float | None]:
        """Seed by seed, the figure at ``path`` of row ``index`` (None where undefined)."""
        out = []
        for run in self.runs:
            node: Any = run["rows"][index]
            for key in path:
                node = node.get(key) if isinstance(node, Mapping) else None
            out.append(None if node is None else float(node))
        return out


def load_seeded(folder: str | Path) -> SeededMatrix:
    """Every ``seed-K/matrix.json`` under ``folder``, checked and pooled.

    Raises
    ------
    FileNotFoundError
        No ``seed-K/matrix.json`` under ``folder``.
    ValueError
        A file that is not a matrix with provenance, a folder whose name disagrees with the seed
        its file records, seeds that are not 0..N-1, or seeds that ran different matrices.
    """
    root = Path(folder)
    found = sorted(
        (int(m.group(1)), p)
        for p in root.glob("seed-*/matrix.json")
        if (m := _SEED_DIR.fullmatch(p.parent.name))
    )
    if not found:
        raise FileNotFoundError(f"no seed-K/matrix.json under {root}")
    runs = []
    for seed, path in found:
        data = load_json_object(path, _KEYS)
        recorded = (data["provenance"] or {}).get("seeds") or []
        if list(recorded) != [seed]:
            raise ValueError(f"{path}: its folder says seed {seed}, its provenance records {recorded}")
        runs.append(data)
    seeds = [s for s, _ in found]
    if seeds != list(range(len(seeds))):
        raise ValueError(f"{root}: seeds must be 0..N-1 (the command's --seeds N), got {seeds}")
    return SeededMatrix(root, tuple(runs), aggregate_seeds(runs))


def _mean_sd(stat: Mapping[str, Any], digits: int = 2) -> str:
    """``0.85 ± 0.04``; ``n/a`` when never defined; ``(k/N)`` when defined on some seeds."""
    if not stat.get("defined"):
        return "n/a"
    text = f"{stat['mean']:.{digits}f}" + ("" if stat["std"] is None else f" ± {stat['std']:.{digits}f}")
    return text if stat["defined"] == stat["seeds"] else f"{text} ({stat['defined']}/{stat['seeds']})"


def _mean_ci(stat: Mapping[str, Any] | None, digits: int = 3) -> str:
    """``0.985 [0.962, 1.000]`` (mean [t interval]); ``-`` when absent or never defined."""
    if not stat or not stat.get("defined"):
        return "-"
    if stat["std"] is None:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} [{stat['ci_low']:.{digits}f}, {stat['ci_high']:.{digits}f}]"


def _short(defense: str) -> str:
    return DEFENSE_ABBREVIATIONS.get(defense, defense)


def _retrains(sm: SeededMatrix) -> list[str]:
    """The mitigation columns of the run (the screen's, a detector's, the oracle), in order."""
    return list(dict.fromkeys(c for r in sm.agg["rows"] for c in r["mitigation"]))


def attack_table(sm: SeededMatrix) -> str:
    """Per attack: poison, the poisoned model's clean accuracy and attack success, the clean
    model's success under the same trigger, and success / accuracy after each retrain."""
    retrains = _retrains(sm)
    header = ["attack", "poison", "clean acc", "attack success", "clean model's success"]
    for c in retrains:
        header += [f"success after {c}", f"clean acc after {c}"]
    rows = []
    for r in sm.agg["rows"]:
        cells = [r["name"], span(r["poison_count"], spec=","), _mean_ci(r["poisoned"]["clean_accuracy"])]
        cells += [_mean_ci(r["poisoned"]["attack_success"]), _mean_ci(r["clean_model_success"])]
        for c in retrains:
            got = r["mitigation"].get(c) or {}
            cells += [_mean_ci(got.get("attack_success")), _mean_ci(got.get("clean_accuracy"))]
        rows.append(cells)
    return markdown_table(header, rows, ["l", "r"] + ["r"] * (len(header) - 2))


def detection_table(sm: SeededMatrix, key: str) -> str:
    """``key`` (``f1`` or ``auroc``) of every cell as mean ± sample std over the seeds."""
    header = ["attack", *(_short(d) for d in sm.defenses)]
    rows = [[r["name"], *(_mean_sd(r["detection"][d][key]) for d in sm.defenses)] for r in sm.agg["rows"]]
    return markdown_table(header, rows, ["l"] + ["r"] * len(sm.defenses))


def _f1s(sm: SeededMatrix, index: int, defense: str) -> list[float]:
    return [v or 0.0 for v in sm.values(index, "detection", defense, "f1")]


def _detector_findings(sm: SeededMatrix) -> list[str]:
    """Per row, the detectors that find its poison on every seed, on some, and the screen."""
    n, out = len(sm.seeds), []
    for i, r in enumerate(sm.agg["rows"]):
        every, some = [], []
        for d in (d for d in sm.defenses if d not in ("provenance", "screen")):
            f1 = _f1s(sm, i, d)
            hits = sum(v >= FINDS for v in f1)
            if hits == n:
                stat = r["detection"][d]["f1"]
                every.append(f"{prose(d)} (F1 {_mean_ci(stat, 2)})")
            elif hits:
                some.append(f"{prose(d)} ({hits} of {n}, F1 {span(f1)})")
        screen = ""
        if "screen" in sm.defenses:
            f1 = _f1s(sm, i, "screen")
            found = sum(v >= FINDS for v in f1)
            screen = (
                f"The screen's verdict reaches F1 {FINDS:.2f} on {k_of_n(found, n)} seeds (F1 {span(f1)})."
            )
        out.append(para(f"- **{r['name']}**: {_found_by(every, some, n)}", screen, indent="  "))
    return out


def _found_by(every: Sequence[str], some: Sequence[str], n: int) -> str:
    """``found on every seed by A; on some seeds only by B.`` without empty clauses."""
    if n == 1:
        return f"found by {and_list(every, empty='no detector')}."
    if not every and not some:
        return "found by no detector on any seed."
    if not some:
        return f"found on every seed by {and_list(every)}; by no other detector on any seed."
    if not every:
        return f"found by no detector on every seed; on some seeds only by {and_list(some)}."
    return f"found on every seed by {and_list(every)}; on some seeds only by {and_list(some)}."


def _provenance_findings(sm: SeededMatrix) -> list[str]:
    """Provenance apart: its flags follow from the source tags the attacks write."""
    if "provenance" not in sm.defenses:
        return []
    n, every, other = len(sm.seeds), [], []
    for i, r in enumerate(sm.agg["rows"]):
        f1 = _f1s(sm, i, "provenance")
        (every if all(v >= FINDS for v in f1) else other).append(f"{r['name']} (F1 {span(f1)})")
    return [
        para(
            "- **Provenance** is left out of the lists above: poisonlab's attacks tag their poison with",
            "their own source, so where it flags, it flags by construction. It reaches F1",
            f"{FINDS:.2f} on {k_of_n(n, n)} seeds on {and_list(every)}; not on {and_list(other)}",
            "(a source is dropped only when leaving it out helps the trusted set enough).",
            indent="  ",
        )
    ]


def _paired(after: Sequence[float | None], before: Sequence[float | None]) -> tuple[str, bool] | None:
    """``after - before`` over the seeds where both are defined, in points with the paired t
    interval, and whether it is above 0 (the interval's low end, or every seed's difference when
    all are equal: no spread, no t interval); one seed gives its difference and no verdict; None
    without any such seed."""
    pairs = [(a, b) for a, b in zip(after, before, strict=True) if a is not None and b is not None]
    if not pairs:
        return None
    if len(pairs) == 1:  # a single run: its difference, without an interval or a verdict
        return f"{100 * (pairs[0][0] - pairs[0][1]):+.1f} points (one seed, no interval)", False
    diffs = {a - b for a, b in pairs}
    if len(diffs) == 1:
        same = diffs.pop()
        return f"{100 * same:+.1f} points on each of the {len(pairs)} seeds", same > 0
    diff = paired_difference([a for a, _ in pairs], [b for _, b in pairs])
    # a difference of two rates cannot leave [-1, 1]; the t interval over a few seeds can
    diff = replace(diff, low=max(diff.low, -1.0), high=min(diff.high, 1.0))
    return describe_difference(diff), diff.low > 0


def _success_findings(sm: SeededMatrix) -> list[str]:
    """Whether each attack raised its success over the clean model's, paired over seeds."""
    rose, flat = [], []
    for i, r in enumerate(sm.agg["rows"]):
        got = _paired(sm.values(i, "poisoned", "attack_success"), sm.values(i, "clean_model_success"))
        if got is not None:
            (rose if got[1] else flat).append(f"{r['name']} {got[0]}")
    if len(sm.seeds) == 1:
        return [
            para(
                "- **One seed**: every figure is a single run, without an interval; attack success of the",
                f"poisoned model minus the clean model's under the same trigger: {and_list(flat)}.",
                indent="  ",
            )
        ]
    return [
        para(
            "- Attack success of the poisoned model minus the clean model's under the same trigger",
            f"(paired over seeds): above 0 for {and_list(rose)}; not shown for {and_list(flat)}.",
            indent="  ",
        )
    ]


def _retrain_findings(sm: SeededMatrix) -> list[str]:
    """What each retrain did to attack success and clean accuracy, paired over seeds."""
    out = []
    for c in _retrains(sm):
        parts = []
        for i, r in enumerate(sm.agg["rows"]):
            if c not in r["mitigation"]:
                continue
            asr = _paired(
                sm.values(i, "mitigation", c, "attack_success"), sm.values(i, "poisoned", "attack_success")
            )
            acc = _paired(
                sm.values(i, "mitigation", c, "clean_accuracy"), sm.values(i, "poisoned", "clean_accuracy")
            )
            left = _mean_sd(r["mitigation"][c]["poison_left"], 1)
            poison = span(r["poison_count"], spec=",")
            parts.append(
                f"{r['name']}: success {asr[0] if asr else 'n/a'}, clean accuracy {acc[0] if acc else 'n/a'},"
                f" poison left {left} of {poison}"
            )
        who = "the true poison (the oracle)" if c == "oracle" else f"what {prose(c)} flags"
        out.append(
            para(
                f"- After dropping {who} and retraining, against the poisoned model:",
                "; ".join(parts) + ".",
                indent="  ",
            )
        )
    return out


def _earlier(sm: SeededMatrix, earlier: Mapping[str, Any] | None, commit: str | None) -> list[str]:
    """How many F1 cells of the earlier single run lie outside the seeds' range."""
    if not earlier:
        return []
    old = {r["name"]: r for r in earlier["rows"]}
    outside, total = [], 0
    for i, r in enumerate(sm.agg["rows"]):
        for d in sm.defenses:
            cell = (old.get(r["name"]) or {}).get("detection", {}).get(d)
            if not cell or cell.get("f1") is None:
                continue
            total += 1
            f1 = _f1s(sm, i, d)
            if not min(f1) <= cell["f1"] <= max(f1):
                outside.append(
                    (
                        abs(cell["f1"] - sum(f1) / len(f1)),
                        f"{prose(d)} on {r['name']} ({cell['f1']:.2f} against {span(f1)})",
                    )
                )
    worst = [text for _, text in sorted(outside, reverse=True)[:5]]
    return [
        para(
            f"- The earlier single run (commit `{commit or 'unknown'}`, older detector defaults):",
            f"{len(outside)} of its {total} F1 cells lie outside the range of the {len(sm.seeds)} seeds",
            f"(the largest gaps: {and_list(worst)})." if worst else ".",
            "Its figures are not comparable one for one: the defaults changed in between.",
            indent="  ",
        )
    ]


def seeded_section(
    sm: SeededMatrix,
    label: str,
    command: str,
    *,
    earlier: Mapping[str, Any] | None = None,
    earlier_commit: str | None = None,
) -> list[str]:
    """``## <label> over N seeds``: setting, attack table, F1 / AUROC tables and findings.

    Parameters
    ----------
    sm : SeededMatrix
        The run (:func:`load_seeded`).
    label : str
        The dataset in words (``CIFAR-10``, ``Embedded digits``).
    command : str
        The command that reruns it (named on the page).
    earlier, earlier_commit : dict or None, str or None
        The earlier single run's ``matrix.json`` and its commit, compared cell by cell.
    """
    n, clean = len(sm.seeds), sm.agg["clean"]["clean_accuracy"]
    minutes = sum(float(r["seconds"]) for r in sm.runs) / 60
    kinds = sorted({row_kind({"description": sm.description(i)}) for i in range(len(sm.agg["rows"]))})
    took = f"The {n} seeds took" if n > 1 else "It took"
    spread = "mean [95 % t interval over seeds]" if n > 1 else "one run, no interval"
    return [
        f"## {label} over {n} seeds" if n > 1 else f"## {label}, one seed at today's config",
        "",
        para(
            f"`{command}` at commit {and_list(f'`{c}`' for c in sm.commits())} (each seed's provenance),",
            f"with the config and detector defaults of that commit; seeds {span(sm.seeds, spec='')}, each",
            "drawing its own training share, trusted set and poison and training its own clean, poisoned",
            f"and retrained models. {took} {minutes:.0f} minutes (matrix.json's `seconds`).",
            f"The clean model's test accuracy is {_mean_ci(clean)} ({spread}).",
            f"Row kinds: {and_list(kinds)}. Raw files: `{sm.folder.name}/seed-K/matrix.json`.",
        ),
        "",
        "Attack success and clean accuracy: mean over seeds [95 % t interval].",
        "",
        attack_table(sm),
        "",
        "Detection F1, mean ± sample std over seeds:",
        "",
        detection_table(sm, "f1"),
        "",
        "Detection AUROC, mean ± sample std over seeds:",
        "",
        detection_table(sm, "auroc"),
        "",
        "What the seeds show:",
        "",
        *_success_findings(sm),
        *_detector_findings(sm),
        *_provenance_findings(sm),
        *_retrain_findings(sm),
        *_earlier(sm, earlier, earlier_commit),
        "",
    ]
