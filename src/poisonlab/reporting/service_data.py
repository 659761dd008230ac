"""The committed red-team campaigns and rate-limit benchmark behind ``docs/results/service.md``.

:func:`load_service_results` reads, from ``docs/results/service/``, the two held-out campaigns
(``campaign-heldout-2000``, after the anchored detector's false-positive cap, and
``campaign-heldout``, before it) and the diagnostic rerun of the first one's ``clean`` and
``retry`` scenarios, plus ``benchmarks/results/ratelimit.json``. Each campaign's figures are
recomputed from its ``campaign.jsonl`` with :func:`poisonlab.redteam.summary.summarise` (the
function the campaign command wrote ``summary.json`` with); ``summary.json`` must agree with them
on every key both hold (an older summary lacks newer keys) and supplies what the records do not
hold: the wall time. The records are also checked against the code the page describes: the
batch sizes of :class:`~poisonlab.redteam.campaign.CampaignConfig` and the size of the world's
base data, so that a description read from the code cannot drift from what ran.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.redteam.campaign import SETTINGS, CampaignConfig
from poisonlab.redteam.summary import summarise
from poisonlab.reporting.results_docs import load_json

__all__ = [
    "FOLDERS",
    "Campaign",
    "ServiceResults",
    "WorldFacts",
    "campaign_from_records",
    "campaign_settings",
    "check_ratelimit",
    "expected_plays",
    "load_campaign",
    "load_service_results",
    "read_records",
    "world_facts",
]

#: the folders under ``docs/results/`` the page is made from
FOLDERS = {
    "second": "service/campaign-heldout-2000",
    "first": "service/campaign-heldout",
    "diagnostic": "service/campaign-heldout-diagnostic",
}
RECORD_KEYS = ("seed", "attack", "world", "poison_sent", "clean_sent", "runs", "poison_final")
RECORD_KEYS += ("clean_final", "clean_quarantined_by", "asr_base", "asr_final", "seconds")
RUN_KEYS = ("status", "decision", "screened", "failed_gates", "poisoned_promotion", "evidence")
RATELIMIT_KEYS = (
    "commit", "created_at", "note", "server", "config.seconds", "config.rate", "config.flood_threads",
    "config.control_rate", "key_b_alone.p50_ms", "key_b_alone.p99_ms", "key_b_alone.statuses",
    "key_a_flooding.key_a", "key_a_flooding.key_b", "key_a_at_its_limit.key_a",
    "key_a_at_its_limit.key_b", "key_b_p99_ratio_flooded", "key_b_p99_ratio_a_at_its_limit",
    "target.key_b_p99_ratio_below", "target.met", "load_average_start", "load_average_end",
)  # fmt: skip


@dataclass(frozen=True)
class Campaign:
    """One campaign folder: its records, their summary, its recorded provenance (None if none)."""

    folder: str
    records: tuple[dict, ...]
    summary: dict[str, Any]
    provenance: dict[str, Any] | None = None

    @property
    def seeds(self) -> str:
        """``2000-2019``: the first and last seed."""
        s = self.summary["seeds"]
        return f"{s[0]}-{s[-1]}" if len(s) > 1 else str(s[0])

    @property
    def has_asr(self) -> bool:
        """Whether every run recorded the attack success of the model serving after it (the
        first campaign kept only the final model's, which after a rollback is not run 1's)."""
        return all("asr_serving" in run for r in self.records for run in r["runs"])


@dataclass(frozen=True)
class WorldFacts:
    """What a campaign world holds, read from :func:`poisonlab.redteam.world.make_world`."""

    image_shape: tuple[int, ...]
    base_size: int
    base_class_counts: tuple[int, ...]
    trusted_class_counts: tuple[int, ...]


@dataclass(frozen=True)
class ServiceResults:
    """Everything the page is made from."""

    second: Campaign
    first: Campaign
    diagnostic: Campaign
    ratelimit: dict[str, Any]
    world: WorldFacts


def read_records(path: str | Path) -> list[dict]:
    """The scenario records of a ``campaign.jsonl`` (one JSON object a line).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        A line that is not a JSON object with the record's keys, or no record at all.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"campaign records not found: {p}")
    records = []
    for number, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}, line {number}: not JSON ({exc.msg})") from exc
        _check_record(record, f"{p}, line {number}")
        records.append(record)
    if not records:
        raise ValueError(f"{p} holds no campaign record")
    return records


def _check_record(record: object, where: str) -> None:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: a record is a JSON object, got {type(record).__name__}")
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise ValueError(f"{where}: the record lacks {missing}")
    for run in record["runs"]:
        lacking = [k for k in RUN_KEYS if k not in run]
        if lacking:
            raise ValueError(f"{where}: a run of seed {record['seed']} {record['attack']} lacks {lacking}")


def _disagreements(ours: Any, stored: Any, path: str = "") -> Iterable[str]:
    """Key paths where two summaries differ, on the keys both hold."""
    if isinstance(ours, Mapping) and isinstance(stored, Mapping):
        for key in ours.keys() & stored.keys():
            yield from _disagreements(ours[key], stored[key], f"{path}.{key}" if path else key)
    elif ours != stored:
        yield path


def campaign_from_records(
    folder: str, records: list[dict], stored: Mapping[str, Any] | None = None, provenance: dict | None = None
) -> Campaign:
    """A :class:`Campaign` from its records; ``stored`` (its ``summary.json``) must agree with them.

    Raises
    ------
    ValueError
        A malformed record, or a stored summary that differs from the records' on a shared key.
    """
    for i, record in enumerate(records):
        _check_record(record, f"{folder}, record {i}")
    summary = summarise(list(records))
    stored = dict(stored or {})
    wrong = sorted(_disagreements(summary, stored))
    if wrong:
        raise ValueError(f"{folder}/summary.json disagrees with its campaign.jsonl on {wrong}")
    summary["wall_seconds"] = stored.get("wall_seconds")
    return Campaign(folder, tuple(records), summary, provenance or stored.get("provenance"))


def load_campaign(results_dir: str | Path, folder: str) -> Campaign:
    """``campaign.jsonl``, ``summary.json``, ``report.md`` (and ``provenance.json`` when there
    is one) of ``results_dir / folder``; FileNotFoundError names a missing one."""
    root = Path(results_dir) / folder
    records = read_records(root / "campaign.jsonl")
    stored = load_json(root / "summary.json")
    if not isinstance(stored, dict):
        raise ValueError(f"{root / 'summary.json'}: expected a JSON object")
    if not (root / "report.md").is_file():
        raise FileNotFoundError(f"campaign report not found: {root / 'report.md'}")
    prov = load_json(root / "provenance.json") if (root / "provenance.json").is_file() else None
    return campaign_from_records(folder, records, stored, prov)


def campaign_settings() -> CampaignConfig:
    """The campaign's batch sizes as the code defines them (no seeds, no folder)."""
    return CampaignConfig(seeds=(), work_dir=Path("."))


def expected_plays(cfg: CampaignConfig) -> dict[str, tuple[int, int, int]]:
    """Per attack: (poison sent, clean sent, training runs) of one scenario under ``cfg``."""
    one = (cfg.poison, 0, 1)
    return {
        "clean": (0, 2 * cfg.clean_per_run, 1),
        "patch": one,
        "blend": one,
        "label_flip": one,
        "outnumber": (cfg.outnumber, 0, 1),
        "retry": (cfg.poison, cfg.clean_per_run, 2),
        "drip": (cfg.drip_runs * cfg.drip_poison, 0, cfg.drip_runs),
        "unsigned": one,
    }


def check_plays(campaign: Campaign, cfg: CampaignConfig) -> None:
    """Every scenario sent what ``cfg`` says and ran as many runs (ValueError otherwise)."""
    plays = expected_plays(cfg)
    for r in campaign.records:
        if r["attack"] not in plays:
            raise ValueError(f"{campaign.folder}: unknown attack {r['attack']!r} (seed {r['seed']})")
        got = (r["poison_sent"], r["clean_sent"], len(r["runs"]))
        if got != plays[r["attack"]]:
            raise ValueError(
                f"{campaign.folder}: seed {r['seed']} {r['attack']} sent (poison, clean, runs) {got}, "
                f"the campaign code says {plays[r['attack']]}: the page's description would not be what ran"
            )
    if set(SETTINGS) - set(plays):
        raise ValueError(f"service overrides for unknown attacks: {sorted(set(SETTINGS) - set(plays))}")


def world_facts(campaigns: Iterable[Campaign]) -> WorldFacts:
    """Image shape and class counts of the campaign worlds, from the code that draws them.

    The pool is a fixed share of each class, so the counts do not depend on the seed; the base
    data size every record reports must be the code's (ValueError otherwise).
    """
    from poisonlab.redteam.world import make_world  # loads the embedded digits

    campaigns = list(campaigns)
    world = make_world(campaigns[0].records[0]["seed"])
    size = len(world.splits.train)
    for c in campaigns:
        sizes = sorted({r["world"]["base_train"] for r in c.records})
        if sizes != [size]:
            raise ValueError(f"{c.folder}: base data of {sizes} images, the campaign code draws {size}")
    trusted = np.bincount(world.splits.val.y) + np.bincount(world.splits.test.y)
    return WorldFacts(
        image_shape=tuple(int(v) for v in world.splits.train.image_shape),
        base_size=size,
        base_class_counts=tuple(int(v) for v in np.bincount(world.splits.train.y)),
        trusted_class_counts=tuple(int(v) for v in trusted),
    )


def _lookup(doc: Mapping[str, Any], dotted: str) -> Any:
    value: Any = doc
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value


def check_ratelimit(doc: object, where: str = "ratelimit.json") -> dict[str, Any]:
    """``doc`` if it holds every key the page reads (ValueError naming the missing ones)."""
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: expected a JSON object")
    missing = []
    for key in RATELIMIT_KEYS:
        try:
            _lookup(doc, key)
        except KeyError:
            missing.append(key)
    if missing:
        raise ValueError(f"{where} lacks {missing}")
    return doc


def load_service_results(results_dir: str | Path, ratelimit: str | Path) -> ServiceResults:
    """The page's raw data: the three campaign folders of :data:`FOLDERS` under ``results_dir``
    (``docs/results``) and the rate-limit benchmark's JSON."""
    campaigns = {name: load_campaign(results_dir, folder) for name, folder in FOLDERS.items()}
    cfg = campaign_settings()
    for c in campaigns.values():
        check_plays(c, cfg)
    return ServiceResults(
        **campaigns,
        ratelimit=check_ratelimit(load_json(ratelimit), str(ratelimit)),
        world=world_facts(campaigns.values()),
    )
