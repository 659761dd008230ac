"""The mitigation and cost sections of ``docs/results/detection.md``.

Each section is a table and a prose template whose every figure is computed here from its raw
record (:class:`~poisonlab.reporting.detection_data.DetectionSources`): the digits matrix that
mitigates with the screen, and the screen's cost on CIFAR-10.
:mod:`poisonlab.reporting.detection_doc` assembles the page; the formatters are
:mod:`poisonlab.reporting.prose`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from poisonlab.reporting.detection_data import DetectionSources
from poisonlab.reporting.prose import para, pct, rate_cell, span
from poisonlab.reporting.results_docs import markdown_table
from poisonlab.reporting.stats import RateInterval, rate_interval

__all__ = [
    "COST_COMMAND",
    "MEMORY_TARGET_MIB",
    "MITIGATION_ASR",
    "cost_section",
    "mitigation_section",
]

#: issue 11's mitigation target: attack success after drop-and-retrain at most this ...
MITIGATION_ASR = 0.05
#: ... and clean accuracy at most this far (a share) below the clean model's
MITIGATION_ACC_LOSS = 0.01
#: issue 11's cost targets: peak memory, and at most two forward passes plus this many seconds
MEMORY_TARGET_MIB = 2048
TIME_SLACK_S = 30
COST_COMMAND = (
    "POISONLAB_DATA=../shared/datasets/cifar10-jpeg .venv/bin/python benchmarks/screen_cost.py "
    "--out benchmarks/results/screen_cost_cifar10.json"
)
_COST_PARTS = {
    "flare": "FLARE-style (its all-layer pass over the training set + HDBSCAN)",
    "deep_knn": "Deep k-NN (neighbour search)",
    "anchored_knn": "trusted-anchored k-NN (all-layer pass over the trusted set + per-class search)",
    "confident_learning": "confident learning",
    "activation_clustering": "activation clustering",
    "spectral_signatures": "spectral signatures",
    "spectre": "SPECTRE",
    "scan_lrt": "SCAn",
}


# ---------------------------------------------------------------- mitigation (digits matrix)
def _matrix_counts(row: Mapping[str, Any]) -> tuple[RateInterval, RateInterval]:
    """The screen's recall and FPR on one matrix row as counts with their Wilson intervals."""
    det, poison = row["detection"]["screen"], row["poison_count"]
    tp = round(det["recall"] * poison)
    return rate_interval(tp, poison), rate_interval(det["flagged"] - tp, row["train_size"] - poison)


def _met_cell(row: Mapping[str, Any], clean_acc: float) -> str:
    if not _met(row, clean_acc):
        return "no"
    before = row["poisoned"]["attack_success"]
    return f"yes (attack success was {before:.3f} before the drop)" if before <= MITIGATION_ASR else "yes"


def _met(row: Mapping[str, Any], clean_acc: float) -> bool:
    after = row["mitigation"]["screen"]
    return (
        after["attack_success"] <= MITIGATION_ASR
        and after["clean_accuracy"] >= clean_acc - MITIGATION_ACC_LOSS
    )


def mitigation_table(matrix: Mapping[str, Any]) -> str:
    """Per attack: the poisoned model, the screen's flags, the model retrained without them."""
    clean_acc = matrix["clean_model"]["clean_accuracy"]
    rows = []
    for r in matrix["rows"]:
        recall, fpr = _matrix_counts(r)
        after, oracle = r["mitigation"]["screen"], r["mitigation"]["oracle"]
        rows.append(
            [
                r["name"],
                r["poison_count"],
                f"{r['poisoned']['attack_success']:.3f}",
                rate_cell(recall),
                rate_cell(fpr, 3),
                f"{after['attack_success']:.3f} ({after['poison_left']} left)",
                f"{r['poisoned']['clean_accuracy']:.3f} -> {after['clean_accuracy']:.3f}",
                f"{oracle['attack_success']:.3f}",
                _met_cell(r, clean_acc),
            ]
        )
    header = [
        "attack",
        "poison",
        "attack success, poisoned model",
        "screen recall [Wilson 95 %]",
        "screen FPR [Wilson 95 %]",
        "attack success after dropping the screen's flags (poison left)",
        "clean accuracy before -> after",
        "oracle (true poison dropped): attack success",
        "target met",
    ]
    return markdown_table(header, rows)


def _names(rows: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(r["name"] for r in rows) or "none"


def _matrix_setting(src: DetectionSources) -> str:
    """The opening paragraph: the config, the attacks, the trusted set, the raw files."""
    cfg, run, splits = src.matrix_run["config"], src.matrix_run, src.splits
    config = str(run["command"][1]).removeprefix(str(run.get("cwd", "")).rstrip("/") + "/")
    backdoors = {a["name"]: a["attack"] for a in cfg["attacks"] if a["attack"]["kind"] == "backdoor"}
    pairs = sorted({(a["source"], a["target"]) for a in backdoors.values()})
    poisons = sorted({r["poison_count"] for r in src.matrix["rows"] if r["name"] in backdoors})
    names, train = splits.class_names, splits.train
    classes = "; ".join(
        f'source "{s}" -> target "{t}", {", ".join(map(str, poisons))} poisons each, against '
        f'{train[names.index(s)]} "{s}"s and {train[names.index(t)]} clean "{t}"s in the training split'
        for s, t in pairs
    )
    trusted = cfg["trusted_size"]
    commit = "not recorded" if run.get("commit") is None else f"`{run['commit'][:7]}`"
    return para(
        f"`poisonlab matrix {config}` mitigates with the screen's flags (mitigation",
        f"`{cfg['mitigation']['defenses']}`): {len(src.matrix['rows'])} attacks on the digits,",
        f"{len(backdoors)} of them backdoors ({classes}); the trusted set is {trusted} validation images",
        f"({trusted / len(names):g} per class). Raw:",
        "[`detection/matrix-digits-screen/`](detection/matrix-digits-screen/) (`matrix.json`, `report.md`,",
        "`run.json`); run through `run_matrix` from a snapshot of the working tree, commit",
        f"{commit}. **Single run**: one poisoned and one retrained model per attack.",
    )


def mitigation_section(src: DetectionSources, control_fpr_max: float) -> list[str]:
    """``## Mitigation with the screen``: the table and what it shows against the target."""
    matrix = src.matrix
    clean_acc = matrix["clean_model"]["clean_accuracy"]
    rows = matrix["rows"]
    met = [r for r in rows if _met(r, clean_acc)]
    missed = [r for r in rows if not _met(r, clean_acc)]
    survive = [r for r in missed if r["mitigation"]["screen"]["attack_success"] > MITIGATION_ASR]
    fprs = [_matrix_counts(r)[1].rate for r in rows]
    lost = max(clean_acc - r["poisoned"]["clean_accuracy"] for r in rows)
    after = [100 * (r["mitigation"]["screen"]["clean_accuracy"] - clean_acc) for r in rows]
    gained = [
        100 * (r["mitigation"]["screen"]["clean_accuracy"] - r["poisoned"]["clean_accuracy"]) for r in rows
    ]
    trusted = src.matrix_run["config"]["trusted_size"] / len(src.splits.class_names)
    left = "; ".join(
        f"{r['name']} ({r['mitigation']['screen']['poison_left']} of {r['poison_count']} poisons left, "
        f"attack success {r['mitigation']['screen']['attack_success']:.3f})"
        for r in survive
    )
    text = para(
        f"The mitigation target (attack success <= {pct(MITIGATION_ASR)} after drop-and-retrain, at most",
        f"{100 * MITIGATION_ACC_LOSS:g} point of clean accuracy below the clean model's {clean_acc:.3f})",
        f"is met on: {_names(met)}; **missed** on: {_names(missed)}. The attack survives the drop on:",
        f"{left or 'none'}. The screen's FPR here is {span(fprs, 3)} per attack, against at most",
        f"{control_fpr_max:.4f} on the held-out controls: this matrix's trusted set has {trusted:g} images",
        f"per class, the benchmark's {span(src.splits.trusted, 0)} (the whole validation split). Our",
        "reading (not a measurement): the anchored detector's calibration is noisier on the smaller",
        "trusted set, and a whole source class relabelled is the case where the poison is as large as",
        "its target class. Clean accuracy: the poisoned models lost up to",
        f"{100 * lost:.1f} points against the clean model; the retrained ones moved",
        f"{span(gained, 1, signed=True)} points from the poisoned model's and lie",
        f"{span(after, 1, signed=True)} points from the clean model's.",
        "No default was changed on these figures.",
    )
    return [
        "## Mitigation with the screen (digits matrix, single run)",
        "",
        _matrix_setting(src),
        "",
        mitigation_table(matrix),
        "",
        text,
        "",
    ]


# ---------------------------------------------------------------- cost (CIFAR-10)
def cost_table(cost: Mapping[str, Any]) -> str:
    """Seconds per part of the scan, largest first, with what the parts do not account for."""
    parts = sorted(cost["detector_seconds"].items(), key=lambda kv: -kv[1])
    forward = cost["forward_seconds_penultimate"]
    rest = cost["seconds_total"] - forward - sum(s for _, s in parts)
    rows = [["penultimate forward pass over the training set", f"{forward:,.0f}"]]
    rows += [[_COST_PARTS.get(name, name), f"{s:,.0f}"] for name, s in parts]
    rows += [["rest of the scan (the vote, bookkeeping)", f"{rest:,.0f}"]]
    rows += [["whole scan", f"{cost['seconds_total']:,.0f}"]]
    return markdown_table(["part", "seconds"], rows, ["l", "r"])


def cost_section(cost: Mapping[str, Any]) -> list[str]:
    """``## Cost``: the screen over CIFAR-10, one run, against the time and memory targets."""
    forward, total = cost["forward_seconds_penultimate"], cost["seconds_total"]
    limit = 2 * forward + TIME_SLACK_S
    peak, start = cost["rss_peak_mib"], cost.get("rss_start_mib")
    commit = str(cost.get("commit") or "")
    dirty = " with local changes" if commit.endswith("-dirty") else ""
    commit = f"commit `{commit[:7]}`{dirty}" if commit else "commit not recorded"
    what = "; ".join(
        f"{label}*{cost[key]}*" for key, label in (("what", ""), ("model", "model: ")) if cost.get(key)
    )
    det = cost["detector_seconds"]
    runs = "One run" if cost.get("single_run") else "Runs: see the file"
    memory = "within" if peak <= MEMORY_TARGET_MIB else "**over**"
    at_start = "" if start is None else f" ({start:,.0f} MiB at the start)"
    return [
        "## Cost",
        "",
        para(
            "`benchmarks/screen_cost.py` (raw:",
            "[`benchmarks/results/screen_cost_cifar10.json`](../../benchmarks/results/screen_cost_cifar10.json)):",
            f"{what}. {runs}, {cost.get('threads')} threads, {commit}. The file does not record the",
            "machine's load;",
            "the session that ran it had other jobs on the same cores, so every figure is an upper",
            "bound for an idle machine.",
        ),
        "",
        cost_table(cost),
        "",
        para(
            f"Peak resident memory {peak:,.0f} MiB{at_start}: {memory} the",
            f"{MEMORY_TARGET_MIB / 1024:g} GiB target. The time target (<= 2 forward passes plus <=",
            f"{TIME_SLACK_S} s: here 2 x {forward:,.0f} + {TIME_SLACK_S} = {limit:,.0f} s) is",
            f"{'met' if total <= limit else '**missed**'}: {total:,.0f} s. The screen reads the training set",
            "twice (the penultimate pass and FLARE's all-layer pass, which already holds the penultimate",
            "features, so one of them could go) and the trusted set once (the anchored detector's all-layer",
            "pass); Deep k-NN's and the anchored detector's searches took",
            f"{det.get('deep_knn', 0):,.0f} s and {det.get('anchored_knn', 0):,.0f} s at this size.",
        ),
        "",
        f"Reproduce: `{COST_COMMAND}`.",
        "",
    ]
