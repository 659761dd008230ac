"""``docs/results/service.md``, the whole page, from the committed campaign records and benchmark.

``benchmarks/service_doc.py`` writes it; ``tests/reporting/test_service_doc.py`` regenerates it
and fails when the committed page differs. The raw data (:mod:`poisonlab.reporting.service_data`)
are the two held-out red-team campaigns, the diagnostic rerun of the first one's ``clean`` and
``retry`` scenarios (it recorded the attack success after every run and the quarantine reasons,
which the first run did not keep; its outcomes must equal the first run's, scenario by scenario)
and ``benchmarks/results/ratelimit.json``. The campaign figures are those of
:func:`poisonlab.redteam.summary.summarise`, the per-candidate and per-reason figures those of
:mod:`poisonlab.reporting.service_figures`, the descriptions those of
:mod:`poisonlab.reporting.service_setup`. Figures without committed raw data live in the design
note ``docs/service-defaults.md``, not here.
"""

from __future__ import annotations

from poisonlab.reporting.prose import duration, para, pct, points, rate_pct, wilson_pct
from poisonlab.reporting.results_docs import markdown_table
from poisonlab.reporting.service_data import FOLDERS, Campaign, ServiceResults, campaign_settings
from poisonlab.reporting.service_figures import different_outcomes, retry_outcomes
from poisonlab.reporting.service_misses import gates_section, misses_section
from poisonlab.reporting.service_setup import default, pipeline_section, plays_section
from poisonlab.reporting.service_text import ratelimit_section
from poisonlab.reporting.stats import rate_difference

__all__ = ["COMMAND", "TARGETS", "comparison_section", "poison_table", "service_markdown"]

#: the command that writes ``docs/results/service.md`` (named on the page)
COMMAND = (
    "python benchmarks/service_doc.py docs/results --ratelimit benchmarks/results/ratelimit.json "
    "--out docs/results/service.md"
)
#: issue 13's targets: poisoned promotions, clean quarantine rate, campaign wall time (seconds)
TARGETS = {"poisoned_promotions": 0, "clean_rate": 0.01, "wall_seconds": 30 * 60}
#: the layers of :func:`poisonlab.redteam.campaign.reason_kind`, as the poison table names them
LAYERS = {"door": "door", "caps": "volume caps", "screen": "screen", "distrust": "source distrust"}
LAYERS |= {"gates": "gates"}


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def provenance_line(c: Campaign) -> str:
    """Where the campaign's provenance stands, from its folder alone."""
    p = c.provenance
    if not p:
        return f"seeds {c.seeds}: no provenance recorded in its folder"
    parts = [f"seeds {c.seeds}: commit `{str(p.get('commit') or '?')[:7]}`"]
    parts += [str(p[k]) for k in ("tree", "machine") if p.get(k)]
    when = p.get("started_utc") or p.get("created_at")
    parts += [f"started {when}"] if when else []
    parts += [f"note: {p['note']}"] if p.get("note") else []
    return "; ".join(parts)


def _column(c: Campaign, gains_from: Campaign) -> list[str]:
    s, g = c.summary, gains_from.summary["gates_only"]
    clean, retry = s["clean_control"], retry_outcomes(c.records)
    gains = g["asr_gains_of_promotions"]
    largest = f"largest attack-success gain {max(gains):+.2f}" if gains else "no promotion"
    if gains and gains_from is not c:
        largest += ", from the diagnostic rerun"
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(clean["by_reason"].items())) or "none"
    wall = "not recorded"
    if s.get("wall_seconds") is not None:
        wall = f"{duration(s['wall_seconds'])} ({duration(s['seconds'])} in scenarios)"
    promoted, runs = s["poisoned_promotions"], s["runs_default_defenses"]
    q, n = clean["quarantined"], clean["sent"]
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(retry["statuses"].items()))
    return [
        f"{s['scenarios']} ({len(s['attacks'])} attacks x {len(s['seeds'])} seeds)",
        f"**{promoted}** of {runs} runs ({wilson_pct(promoted, runs)}); effective: "
        f"{s['effective_poisoned_promotions']}; target " + _met(promoted <= TARGETS["poisoned_promotions"]),
        f"**{q:,} of {n:,}** ({rate_pct(q, n, empty='none sent')}), by {reasons}; target "
        + _met(q <= TARGETS["clean_rate"] * n),
        f"{g['rejected']} of {g['runs']} rejected; {g['promoted']} promoted, {g['poisoned_promotions']} "
        f"with poison in their training set, {g['effective']} effective ({largest})",
        f"{retry['rolled_back']} of {retry['poisoned_first']} poisoned models rolled back; retries "
        f"{statuses}; poisoned promotions {retry['poisoned_retry']}; poison accepted at the end "
        f"{retry['accepted_at_end']}",
        wall,
    ]


def _attack_counts(second: Campaign, first: Campaign) -> str:
    a, b = second.summary["attacks"], first.summary["attacks"]
    return f"the same {len(a)} attacks" if a == b else f"{len(a)} and {len(b)} attacks"


def _seed_counts(*campaigns: Campaign) -> str:
    counts = sorted({len(c.summary["seeds"]) for c in campaigns})
    return (
        f"{counts[0]} fresh seeds each"
        if len(counts) == 1
        else f"{' and '.join(map(str, counts))} fresh seeds"
    )


def comparison_section(res: ServiceResults) -> list[str]:
    """``## Two held-out campaigns``: the headline figures side by side, and their difference."""
    second, first, diag = res.second, res.first, res.diagnostic
    changed = different_outcomes(diag.records, first.records)
    if changed:
        raise ValueError(
            f"{diag.folder} differs from {first.folder} in {changed}: its measurements cannot stand "
            "for the first run's"
        )
    cols = [_column(second, second), _column(first, first if first.has_asr else diag)]
    labels = [
        "scenarios",
        "poisoned models promoted (training runs under the default defenses)",
        "clean contributions quarantined in the `clean` control (no poison in the service)",
        "gates alone (`retry` run 1: an admin's run without the screen)",
        "the plain retry after it (default defenses)",
        "wall time",
    ]
    rows = [[label, a, b] for label, a, b in zip(labels, *cols, strict=True)]
    header = ["figure", f"second campaign, seeds {second.seeds}", f"first campaign, seeds {first.seeds}"]
    a, b = second.summary["clean_control"], first.summary["clean_control"]
    d = rate_difference(a["quarantined"], a["sent"], b["quarantined"], b["sent"])
    verdict = "0 is outside it" if d.excludes_zero else "0 is inside it: no difference shown"
    return [
        "## Two held-out campaigns",
        "",
        para(
            f"Both campaigns play {_attack_counts(second, first)} on",
            f"{_seed_counts(second, first)} against the digits service with its default settings. The",
            "second ran after the screen's anchored k-NN detector got a false-positive cap",
            f"(`screen_max_fpr`, default now {default('screen_max_fpr')}; the first ran without one), on",
            "seeds never used before. Targets (issue 13): no poisoned model promoted, at most",
            f"{pct(TARGETS['clean_rate'], 0)} of clean contributions quarantined, a campaign in about",
            f"{TARGETS['wall_seconds'] // 60} min.",
            keep_percent=False,
        ),
        "",
        markdown_table(header, rows),
        "",
        para(
            f"Clean quarantine rate, second minus first: {points(d.estimate, 2)} (95 % Newcombe",
            f"interval {100 * d.low:+.2f} to {100 * d.high:+.2f}): {verdict}. Both campaigns are one",
            "run per seed and the second used other seeds, so the comparison mixes the cap with the",
            "draw of worlds.",
            keep_percent=False,
        ),
        "",
        *_provenance_notes(res),
    ]


def _provenance_notes(res: ServiceResults) -> list[str]:
    """Each folder's recorded provenance, and what the diagnostic rerun stands for."""
    diag = res.diagnostic
    wall = diag.summary.get("wall_seconds")
    return [
        para(
            "Provenance, as recorded in each folder (the hand account of the first campaign's tree is",
            "in the design note [`../service-defaults.md`](../service-defaults.md)):",
            keep_percent=False,
        ),
        "",
        *[
            para(
                f"[`{c.folder}/`]({c.folder}/), {provenance_line(c)}",
                first="- ",
                indent="  ",
                keep_percent=False,
            )
            for c in (res.second, res.first, diag)
        ],
        "",
        para(
            f"The diagnostic rerun played the `clean` and `retry` scenarios of seeds {diag.seeds} again",
            "with the first campaign's service code (wall time",
            f"{'not recorded' if wall is None else duration(wall)}) to keep what the first run did not:",
            "the attack success of the model serving after every run and the quarantine reasons of",
            f"clean contributions. Its outcomes equal the first run's in all {len(diag.records)}",
            "scenarios (run statuses, failed gates, gate evidence, where every contribution ended: the",
            "generator checks it), so the first campaign's gates-alone attack successes and clean",
            "quarantine reasons on this page are the rerun's.",
            keep_percent=False,
        ),
        "",
    ]


def poison_table(c: Campaign) -> str:
    """Where each attack's poison ended, by layer, over every scenario of ``c``."""
    rows, total = [], {"sent": 0, **{k: 0 for k in LAYERS}}
    for attack, a in c.summary["per_attack"].items():
        if attack == "clean":
            continue
        stopped = dict(a["poison_stopped_by"])
        cells = [stopped.pop(k, 0) for k in LAYERS]
        total["sent"] += a["poison_sent"]
        for k, v in zip(LAYERS, cells, strict=True):
            total[k] += v
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(a["run_outcomes"].items()))
        rows.append(
            [f"`{attack}`", f"{a['runs']} ({outcomes})", f"{a['poison_sent']:,}"]
            + [f"{v:,}" if v else "" for v in cells]
            + [", ".join(f"{k} {v}" for k, v in sorted(stopped.items())) or "none"]
        )
    rows.append(["all", "", f"{total['sent']:,}", *[f"{total[k]:,}" if total[k] else "" for k in LAYERS], ""])
    header = [
        "attack",
        "runs (outcomes)",
        "poison sent",
        *LAYERS.values(),
        "elsewhere (accepted, pending, ...)",
    ]
    return markdown_table(header, rows, ["l", "l", "r", "r", "r", "r", "r", "r", "l"])


def poison_section(res: ServiceResults) -> list[str]:
    """``## Where the poison stopped``: one table per campaign."""
    out = [
        "## Where the poison stopped",
        "",
        para(
            "Every poison contribution by the layer that stopped it (the reason it carries when the",
            "scenario ended; the `gates` of `retry` hold the poison of rejected gates-alone runs). Runs",
            "under the default defenses only; *skipped*: nothing left to train on, so no new version.",
            keep_percent=False,
        ),
        "",
    ]
    for c in (res.second, res.first):
        out += [f"Seeds {c.seeds} ([`{c.folder}/`]({c.folder}/)):", "", poison_table(c), ""]
    return out


def service_markdown(res: ServiceResults, *, command: str = COMMAND) -> str:
    """The whole ``service.md``."""
    cfg = campaign_settings()
    parts = [
        "# ImRecS under a seeded red-team campaign (issue 13)",
        "",
        f"Generated by `{command}`",
        para(
            "from the campaign records under [`service/`](service/) and",
            "[`benchmarks/results/ratelimit.json`](../../benchmarks/results/ratelimit.json). Do not edit",
            "it by hand: `tests/reporting/test_service_doc.py` regenerates it and fails when it differs.",
            "Settings are read from the code that ran. Figures without committed raw data (how the",
            "defaults were chosen on development seeds, the decode budget's memory measurements, an",
            "earlier rate-limit run, the first campaign's working tree) are in the design note",
            "[`../service-defaults.md`](../service-defaults.md), not here. Intervals: Wilson 95 % for a",
            "count, Newcombe 95 % for a difference of two rates (`poisonlab.reporting.stats`).",
            keep_percent=False,
        ),
        "",
        *comparison_section(res),
        *poison_section(res),
        *plays_section(cfg, res.world, (res.second, res.first)),
        *gates_section(res),
        *misses_section(res),
        *pipeline_section(),
        *ratelimit_section(res.ratelimit),
        "## Reproduce",
        "",
        "```bash",
        *[
            f"POISONLAB_THREADS=1 .venv/bin/poisonlab redteam --campaign --seeds {c.seeds}"
            + (f" --attacks {','.join(c.summary['attacks'])}" if c is res.diagnostic else "")
            + f" \\\n    --out docs/results/{c.folder}"
            for c in (res.second, res.first, res.diagnostic)
        ],
        f".venv/bin/{command}",
        "```",
        "",
        para(
            f"The folders: {', '.join(f'`{f}`' for f in FOLDERS.values())} (each `campaign.jsonl`: one",
            "record per scenario with every run's outcome and gate evidence; `summary.json`: the",
            "campaign command's summary of it, and the wall time; `report.md`).",
            keep_percent=False,
        ),
    ]
    return "\n".join(parts) + "\n"
