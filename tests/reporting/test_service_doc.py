"""docs/results/service.md is the generator's output, and the generator counts what the records say."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from poisonlab.redteam.summary import summarise
from poisonlab.reporting.service_data import (
    ServiceResults,
    WorldFacts,
    campaign_from_records,
    campaign_settings,
    check_plays,
    check_ratelimit,
    load_campaign,
    load_service_results,
    read_records,
)
from poisonlab.reporting.service_doc import comparison_section, poison_table, service_markdown
from poisonlab.reporting.service_figures import (
    clean_per_seed,
    clean_reasons,
    different_outcomes,
    flagged_by,
    gate_candidates,
    retry_outcomes,
)
from poisonlab.reporting.stats import rate_difference, rate_interval

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
RATELIMIT = ROOT / "benchmarks" / "results" / "ratelimit.json"
WORLD = WorldFacts(
    image_shape=(8, 8, 1), base_size=703, base_class_counts=(68, 72), trusted_class_counts=(61, 64)
)


def test_service_page_is_the_generator_output() -> None:
    page = (RESULTS / "service.md").read_text(encoding="utf-8")
    assert page == service_markdown(load_service_results(RESULTS, RATELIMIT)), (
        "docs/results/service.md differs from its raw data: run python benchmarks/service_doc.py "
        "docs/results --ratelimit benchmarks/results/ratelimit.json --out docs/results/service.md"
    )


def test_figures_without_raw_data_stay_in_the_design_note() -> None:
    page = (RESULTS / "service.md").read_text(encoding="utf-8")
    note = (ROOT / "docs" / "service-defaults.md").read_text(encoding="utf-8")
    assert "../service-defaults.md" in page
    for figure in ("of 800", "27 of 1,212", "274 MiB", "4.33", "bed4ea2"):
        assert figure not in page, figure
        assert figure in note, figure


# --- constructed campaigns --------------------------------------------------------------------


def _run(status: str, *, screened: bool = True, poisoned: bool = False, **extra) -> dict:
    run = {"status": status, "decision": extra.pop("decision", status), "screened": screened}
    run |= {"failed_gates": extra.pop("failed", []), "poisoned_promotion": poisoned}
    run |= {"poison": {}, "clean": {}, "evidence": extra.pop("evidence", {"spike": 0.0, "shift": None})}
    return run | extra


def _record(seed: int, attack: str, runs: list[dict], **fields) -> dict:
    world = {"seed": seed, "base_train": 703, "pool": 464, "target": "1", "source": "2"}
    world |= {"patch": f"{2 + seed % 2}x{2 + seed % 2} white square at row 0, column 0"}
    world |= {"blend": f"uniform noise key blended at alpha 0.{15 + seed}"}
    rec = {"seed": seed, "attack": attack, "world": world, "poison_sent": 0, "clean_sent": 0}
    rec |= {"at_submission": {}, "runs": runs, "poison_final": {}, "clean_final": {}}
    rec |= {"clean_quarantined_by": {}, "asr_base": 0.1, "asr_final": 0.1, "seconds": 10.0}
    return rec | fields


def _clean(seed: int, quarantined: int, reasons: dict[str, int], evidence: dict) -> dict:
    return _record(
        seed, "clean", [_run("promoted", evidence=evidence, asr_serving=None)], clean_sent=80, asr_base=None,
        clean_final={"accepted": 80 - quarantined} | ({"quarantined": quarantined} if quarantined else {}),
        clean_quarantined_by={"screen": quarantined} if quarantined else {}, clean_reasons=reasons,
    )  # fmt: skip


def _retry(seed: int, *, promoted: bool, gain: float = 0.0) -> dict:
    if promoted:
        first = _run("promoted", screened=False, poisoned=True, asr_serving=0.1 + gain)
        after = _run("skipped", decision="rolled back to v1: v2 was trained on flagged data", asr_serving=0.1)
        fates = {"poison_final": {"screen": 35}, "clean_quarantined_by": {}}
    else:
        first = _run("rejected", screened=False, failed=["neural_cleanse", "sensitivity"], asr_serving=0.1)
        after = _run("skipped", decision="no contributions to train on", asr_serving=0.1)
        fates = {"poison_final": {"gates": 35}, "clean_quarantined_by": {"gates": 40}}
    first["evidence"] = {"nc_gap": 0.4, "nc_index": 2.5 if promoted else 1.0, "spike": 0.0, "shift": 0.0}
    return _record(seed, "retry", [first, after], poison_sent=35, clean_sent=40, **fates)


def _patch(seed: int) -> dict:
    runs = [_run("skipped", asr_serving=0.1)]
    return _record(seed, "patch", runs, poison_sent=35, poison_final={"screen": 34, "caps": 1})


#: the clean contributions' quarantine reasons of seeds 1 and 2, per campaign
SECOND = ({"screen: anchored_knn": 1}, {})
FIRST = ({"screen: anchored_knn": 2, "screen: deep_knn, anchored_knn": 1}, {"screen: scan_lrt, spectre": 1})


def _records(reasons: tuple[dict[str, int], dict[str, int]]) -> list[dict]:
    return [
        _clean(1, sum(reasons[0].values()), reasons[0], {"nc_gap": 0.1, "nc_index": 2.5}),
        _clean(2, sum(reasons[1].values()), reasons[1], {"nc_gap": 0.05, "nc_index": 1.0}),
        _retry(1, promoted=True, gain=0.4),
        _retry(2, promoted=False),
        _patch(1),
        _patch(2),
    ]  # fmt: skip


RATE = {
    "commit": "abcdef0123-dirty", "created_at": "2026-01-01T00:00:00+00:00", "note": "test",
    "server": "a server", "config": {"seconds": 20.0, "rate": 20.0, "flood_threads": 4, "control_rate": 48.0},
    "key_b_alone": {"p50_ms": 10.0, "p99_ms": 20.0, "statuses": {"200": 400}},
    "key_a_flooding": {
        "key_a": {"threads": 4, "requests": 1000, "requests_per_s": 50.0, "share_429": 0.9,
                  "statuses": {"200": 100, "429": 900}, "429_without_retry_after": 0},
        "key_b": {"p50_ms": 20.0, "p99_ms": 50.0, "statuses": {"200": 399, "503": 1}},
    },
    "key_a_at_its_limit": {
        "key_a": {"threads": 4, "requests": 960, "requests_per_s": 48.0, "share_429": 0.0,
                  "statuses": {"200": 960}, "429_without_retry_after": 0},
        "key_b": {"p50_ms": 15.0, "p99_ms": 30.0, "statuses": {"200": 400}},
    },
    "key_b_p99_ratio_flooded": 2.5, "key_b_p99_ratio_a_at_its_limit": 1.5,
    "target": {"key_b_p99_ratio_below": 2.0, "met": False},
    "load_average_start": [1.0, 1.0, 1.0], "load_average_end": [2.0, 1.0, 1.0],
}  # fmt: skip


def _results() -> ServiceResults:
    second = campaign_from_records("service/second", _records(SECOND), {"wall_seconds": 125.0})
    first_records = _records(FIRST)
    diagnostic = campaign_from_records("service/diag", [r for r in first_records if r["attack"] != "patch"])
    for r in first_records:  # the first run kept no per-run attack success: the rerun's stand in
        for run in r["runs"]:
            run.pop("asr_serving", None)
    first = campaign_from_records("service/first", first_records)
    return ServiceResults(second=second, first=first, diagnostic=diagnostic, ratelimit=RATE, world=WORLD)


def test_the_figures_of_constructed_records() -> None:
    records = _records(FIRST)
    assert [g.seed for g in gate_candidates(records)] == [1, 2]
    assert [g.asr_gain for g in gate_candidates(records)] == [0.4, 0.0]
    outcomes = retry_outcomes(records)
    assert (outcomes["poisoned_first"], outcomes["rolled_back"], outcomes["poisoned_retry"]) == (1, 1, 0)
    assert outcomes["statuses"] == {"skipped": 2}
    assert clean_per_seed(records) == [(1, 3, 80), (2, 1, 80)]
    reasons = clean_reasons(records)
    assert sum(reasons.values()) == 4 and flagged_by(reasons, "anchored_knn") == (3, 2)
    assert different_outcomes(records, records) == []
    changed = json.loads(json.dumps(records))
    changed[3]["runs"][0]["status"] = "promoted"
    assert different_outcomes(changed, records) == [(2, "retry")]


def test_the_page_of_constructed_campaigns_counts_and_intervals() -> None:
    res = _results()
    page = service_markdown(res, command="make it")
    low, high = rate_interval(1, 160).low, rate_interval(1, 160).high
    assert f"**1 of 160** ({100 / 160:.2f} %, Wilson 95 %: {100 * low:.2f}-{100 * high:.2f} %)" in page
    assert "**4 of 160** (2.50 %" in page and "target **missed**" in page
    d = rate_difference(1, 160, 4, 160)  # second minus first
    assert (
        f"{100 * d.estimate:+.2f} points (95 % Newcombe interval {100 * d.low:+.2f} to {100 * d.high:+.2f})"
        in page
    )
    assert "1 of 2 rejected; 1 promoted, 1 with poison in their training set, 1 effective" in page
    assert "(largest attack-success gain +0.40, from the diagnostic rerun)" in page
    assert "1 of 1 poisoned models rolled back" in page
    assert "2 min 5 s (1 min 0 s in scenarios)" in page and "| wall time |" in page
    assert "| `patch` | 2 (skipped 2) | 70 |  | 2 | 68 |  |  | none |" in poison_table(res.first)
    assert "| all |  | 140 |  | 2 | 103 |  | 35 |  |" in poison_table(res.first)
    text = " ".join(page.split())
    assert "named in 3 of the first campaign's 4 (2 it alone) and in 1 of the second's 1 (1 it alone)" in text
    assert "Per seed, 1-3 of 80 clean contributions were quarantined in the first campaign, 0-1 of 80" in text
    assert "1 of B's 1,200 requests were not answered 200" in text


def test_a_rerun_that_differs_from_the_first_run_is_refused() -> None:
    res = _results()
    records = [json.loads(json.dumps(r)) for r in res.diagnostic.records]
    records[0]["clean_final"] = {"accepted": 80}
    records[0]["clean_quarantined_by"] = {}
    bad = campaign_from_records("service/diag", records)
    with pytest.raises(ValueError, match=r"differs from service/first in \[\(1, 'clean'\)\]"):
        comparison_section(ServiceResults(res.second, res.first, bad, RATE, WORLD))


# --- files and their errors -------------------------------------------------------------------


def _write(folder: Path, records: list[dict], summary: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "campaign.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    summary = summarise(records) | {"wall_seconds": 99.0} if summary is None else summary
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    (folder / "report.md").write_text("report\n", encoding="utf-8")
    return folder


def test_load_campaign_reads_the_folder(tmp_path: Path) -> None:
    _write(tmp_path / "service" / "c", _records(SECOND))
    c = load_campaign(tmp_path, "service/c")
    assert c.summary["wall_seconds"] == 99.0 and c.seeds == "1-2" and c.has_asr and c.provenance is None
    check_plays(c, campaign_settings())


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="campaign records not found"):
        read_records(tmp_path / "campaign.jsonl")
    folder = _write(tmp_path / "c", _records(SECOND))
    (folder / "report.md").unlink()
    with pytest.raises(FileNotFoundError, match=r"campaign report not found: .*report\.md"):
        load_campaign(tmp_path, "c")
    (folder / "summary.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"summary\.json"):
        load_campaign(tmp_path, "c")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_service_results(tmp_path, RATELIMIT)


def test_bad_records_are_refused_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "campaign.jsonl"
    path.write_text(json.dumps(_patch(1)) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: not JSON"):
        read_records(path)
    path.write_text(json.dumps({"seed": 1}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 1: the record lacks \['attack'"):
        read_records(path)
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no campaign record"):
        read_records(path)
    run_missing = _patch(1)
    del run_missing["runs"][0]["evidence"]
    with pytest.raises(ValueError, match=r"a run of seed 1 patch lacks \['evidence'\]"):
        campaign_from_records("c", [run_missing])


def test_a_summary_that_disagrees_with_its_records_is_refused(tmp_path: Path) -> None:
    records = _records(SECOND)
    with pytest.raises(ValueError, match=r"c/summary\.json disagrees .* \['clean_control\.quarantined'"):
        campaign_from_records("c", records, {"clean_control": {"quarantined": 2, "sent": 160}})
    _write(tmp_path / "d", records, summary=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected a JSON object"):
        load_campaign(tmp_path, "d")


def test_records_that_do_not_match_the_campaign_code_are_refused() -> None:
    records = _records(SECOND)
    records[-1]["poison_sent"] = 36
    with pytest.raises(ValueError, match=r"seed 2 patch sent \(poison, clean, runs\) \(36, 0, 1\)"):
        check_plays(campaign_from_records("c", records), campaign_settings())


def test_a_ratelimit_file_without_a_figure_is_refused() -> None:
    assert check_ratelimit(RATE) is RATE
    broken = json.loads(json.dumps(RATE))
    del broken["key_a_flooding"]["key_b"]
    with pytest.raises(ValueError, match=r"lacks \['key_a_flooding\.key_b'\]"):
        check_ratelimit(broken, "r.json")
    with pytest.raises(ValueError, match="expected a JSON object"):
        check_ratelimit([])


def test_the_command_reports_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("service_doc_cmd", ROOT / "benchmarks" / "service_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "page.md"
    assert module.main([str(tmp_path), "--ratelimit", str(RATELIMIT), "--out", str(out)]) == 2
    assert "error: campaign records not found" in capsys.readouterr().err
    assert not out.exists()
