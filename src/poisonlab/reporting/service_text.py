"""The rate-limit section of ``docs/results/service.md``.

The rate-limit section is made from ``benchmarks/results/ratelimit.json``
(``benchmarks/ratelimit.py``): one run, so its latencies have no interval; the page says so.
"""

from __future__ import annotations

from typing import Any

from poisonlab.reporting.prose import para, pct
from poisonlab.reporting.results_docs import markdown_table

__all__ = ["ratelimit_section", "ratelimit_table"]

RATELIMIT_COMMAND = (
    ".venv/bin/python benchmarks/ratelimit.py --out benchmarks/results/ratelimit.json --note NOTE"
)


def _a_cell(a: dict[str, Any]) -> str:
    refused = a["statuses"].get("429", 0)
    return (
        f"{a['requests_per_s']:,} requests/s, {pct(a['share_429'], 1)} answered 429 "
        f"({a['429_without_retry_after']} without `Retry-After`), {a['requests'] - refused:,} admitted"
    )


def ratelimit_table(doc: dict[str, Any]) -> str:
    """B's latency alone, under A's flood, and with A paced under its limit."""
    alone, flood, paced = doc["key_b_alone"], doc["key_a_flooding"], doc["key_a_at_its_limit"]
    target = doc["target"]["key_b_p99_ratio_below"]
    verdict = "met" if doc["target"]["met"] else "missed"
    rows = [
        ["B alone", "-", f"{alone['p50_ms']} / {alone['p99_ms']} ms", "1"],
        [
            f"A floods at full speed ({flood['key_a']['threads']} threads)",
            _a_cell(flood["key_a"]),
            f"{flood['key_b']['p50_ms']} / {flood['key_b']['p99_ms']} ms",
            f"**{doc['key_b_p99_ratio_flooded']}** (target < {target:g}: {verdict})",
        ],
        [
            f"A paced at {doc['config']['control_rate']:g}/s, under its limit (control)",
            _a_cell(paced["key_a"]),
            f"{paced['key_b']['p50_ms']} / {paced['key_b']['p99_ms']} ms",
            f"{doc['key_b_p99_ratio_a_at_its_limit']}",
        ],
    ]
    return markdown_table(["phase", "key A", "key B p50 / p99", "B's p99 / alone"], rows)


def _b_statuses(doc: dict[str, Any]) -> str:
    phases = [doc["key_b_alone"], doc["key_a_flooding"]["key_b"], doc["key_a_at_its_limit"]["key_b"]]
    other = sum(n for p in phases for code, n in p["statuses"].items() if code != "200")
    total = sum(sum(p["statuses"].values()) for p in phases)
    return (
        f"Every request of B ({total:,}) was answered 200."
        if other == 0
        else (f"{other:,} of B's {total:,} requests were not answered 200.")
    )


def _reading(doc: dict[str, Any]) -> str:
    """What the control phase says about where B's latency went (one run each: no interval)."""
    flood, paced = doc["key_a_flooding"]["key_b"]["p99_ms"], doc["key_a_at_its_limit"]["key_b"]["p99_ms"]
    ratio = doc["key_b_p99_ratio_a_at_its_limit"]
    head = (
        f"B's p99 with A paced under its limit was {ratio}x its p99 alone ({paced} ms); under the "
        f"flood, {doc['key_b_p99_ratio_flooded']}x ({flood} ms)."
    )
    if flood <= paced:
        return (
            f"{head} Refusing the flood added nothing measurable: what slows B is the work the limit "
            "admits from A (and A's client on the same cores), not the refusals."
        )
    return f"{head} Refusing the flood added {flood - paced:.2f} ms at p99 over what the limit admits from A."


def ratelimit_section(doc: dict[str, Any]) -> list[str]:
    """``## Rate limits under a flood``: set-up, the run's provenance, the table, what it shows."""
    cfg = doc["config"]
    machine = doc.get("machine") or {}
    cores = f"{machine.get('cpu', 'a')} machine, {machine.get('cpu_count', '?')} cores"
    load = "-".join(f"{v:g}" for v in (doc["load_average_start"][0], doc["load_average_end"][0]))
    dirty = " plus uncommitted changes" if str(doc["commit"]).endswith("-dirty") else ""
    return [
        "## Rate limits under a flood",
        "",
        para(
            "A flooding key against another key's latency (`benchmarks/ratelimit.py`, one run):",
            f"{doc['server']}; key B sends {cfg['rate']:g} predictions/s open-loop for {cfg['seconds']:g} s",
            f"in each phase, key A sends from {cfg['flood_threads']} threads in a separate process.",
            f"Run {doc['created_at']}, commit `{doc['commit'][:7]}`{dirty}, {cores}, 1-minute load",
            f'average {load} (start, end); its note: "{doc["note"]}".',
            keep_percent=False,
        ),
        "",
        "```bash",
        f".venv/bin/python {doc['command_line']}" if doc.get("command_line") else RATELIMIT_COMMAND,
        "```",
        "",
        ratelimit_table(doc),
        "",
        para(
            _b_statuses(doc),
            _reading(doc),
            "One run: no interval, and the clients share the server's cores, so A's client is part of",
            "the load B meets.",
            keep_percent=False,
        ),
        "",
        para(
            "The decode budget and the run claims (issue 13, hardening) are described, with the",
            "measurements behind the budget's cost model, in the design note",
            "[`../service-defaults.md`](../service-defaults.md).",
            keep_percent=False,
        ),
        "",
    ]
