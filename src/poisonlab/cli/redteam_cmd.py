"""``poisonlab redteam``: the chapter's attack on a running ImRecS service, or the seeded campaign.

Without ``--campaign`` it plays the walk-through (:mod:`poisonlab.redteam.walkthrough`) against the
service at ``--url``, prints the compact summary and writes the JSON transcript. With
``--campaign`` it plays seeds x attacks against in-process services on digits
(:mod:`poisonlab.redteam.campaign`) and writes ``campaign.jsonl``, ``summary.json`` and
``report.md`` to ``--out``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from poisonlab.cli._console import make_console
from poisonlab.cli._errors import cli_errors
from poisonlab.cli.options import dataset_name

if TYPE_CHECKING:
    from rich.table import Table

console = make_console()
_MARK = {True: "[green]pass[/]", False: "[red]FAIL[/]"}


def _attack_table(t: dict) -> Table:
    from rich.table import Table

    plan = t["plan"]
    table = Table("batch", "sent as", "files", "status at submission", title="Attack (contributor key)")
    for kind, what in (
        ("mislabel", f"'{plan['source']}' pictures"),
        ("backdoor", f"'{plan['source']}' + {plan['trigger']}"),
    ):
        rows = [c for c in t["contributions"] if c["kind"] == kind]
        statuses = ", ".join(
            f"{s} {sum(c['status_at_submission'] == s for c in rows)}"
            for s in sorted({c["status_at_submission"] for c in rows})
        )
        table.add_row(f"{kind}: {what}", f"'{plan['target']}'", str(len(rows)), statuses)
    return table


def _undefended(run: dict) -> None:
    from rich.table import Table

    table = Table("gate", "verdict", "evidence", title=f"Run {run['run_id']}: defenses OFF (admin override)")
    for name, gate in run["gates"].items():
        table.add_row(name, _MARK[gate["passed"]], gate["evidence"])
    console.print(table)
    console.print(f"  decision: [bold]{run['decision']}[/]")
    kept = run["serving_before"] == run["serving_after"]
    console.print(
        f"  serving before {run['serving_before']} -> after {run['serving_after']}"
        + (" [green](the old model keeps serving)[/]" if kept else " [red](the poisoned model is serving)[/]")
    )
    for alert in run["alerts"]:
        console.print(f"  alert [bold red]{alert['kind']}[/] ({alert['severity']}): {alert['message']}")


def _defended(run: dict) -> None:
    from rich.table import Table

    kinds = sorted(run["poison"])
    table = Table(
        "defense",
        "flagged (all contributions)",
        *[f"{k} poison flagged" for k in kinds],
        "trusted base flagged (kept, reported)",
        title=f"Run {run['run_id']}: the service's defenses ON (trainer key)",
    )
    for name, flagged in run["defenses"].items():
        table.add_row(
            name,
            str(flagged),
            *[str(run["poison"][k].get(f"flagged by {name}", 0)) for k in kinds],
            str(run["flagged_in_base"][name]),
        )
    console.print(table)
    for kind in kinds:
        tally = run["poison"][kind]
        console.print(f"  {kind}: [bold]{tally.get('quarantined', 0)}/{tally['sent']} quarantined[/]")
    for reason, n in run["reasons"].items():
        console.print(f"  {n:4d} x {reason}")
    console.print(f"  decision: {run['decision']}")


def _audit(t: dict) -> Table:
    from rich.table import Table

    table = Table(
        "actor",
        "role",
        "action",
        "outcome",
        "entries",
        title=f"Audit trail ({t['audit']['entries']} entries, admin key)",
    )
    for g in t["audit"]["summary"]:
        style = "red" if g["outcome"].startswith("refused") else None
        table.add_row(g["actor"], g["role"], g["action"], g["outcome"], str(g["count"]), style=style)
    return table


def print_summary(t: dict) -> None:
    """The compact rich rendering of a transcript."""
    console.rule(f"[bold]ImRecS red team[/] against {t['service']} (model {t['target']['serving_model']})")
    console.print(_attack_table(t))
    for probe in t["privilege_probes"]:
        console.print(f"  contributor key: {probe['request']} -> {probe['status']} ({probe['detail']})")
    if t["skipped"]:
        console.print(f"[yellow]training runs skipped:[/] {t['skipped']}")
    else:
        _defended(t["defended_run"])
        console.print(f"The attacker sends the same {len(t['contributions_again'])} files again.")
        _undefended(t["undefended_run"])
        retry = t["retry_run"]
        console.print(
            f"Run {retry['run_id']}: a plain retry (trainer key): [bold]{retry['status']}[/] "
            f"({retry['decision']}); serving {retry['serving_before']} -> {retry['serving_after']}; "
            f"the poison is now {retry['poison_statuses_after']}"
        )
    console.print(_audit(t))
    console.print(f"walk-through took {t['seconds']} s")


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"1000-1019"`` or ``"1,2,5-7"`` -> the seeds, in order (ValueError for anything else)."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"seeds look like 1000-1019 or 1,2,5-7, got {text!r}")
        if dash and int(high) < int(low):
            raise ValueError(f"seed range {part} runs backwards; write it low-high ({high}-{low})")
        seeds += range(int(low), int(high) + 1) if dash else [int(low)]
    if not seeds:
        raise ValueError("no seeds given")
    return tuple(dict.fromkeys(seeds))


def run_campaign_command(seeds: str, attacks: str, out: Path, work_dir: Path | None) -> None:
    """``--campaign``: play the campaign, write its records, summary and report, print the figures."""
    import shutil
    import tempfile
    import time

    from rich.markup import escape

    from poisonlab.redteam.campaign import ATTACKS, CampaignConfig, run_campaign
    from poisonlab.redteam.summary import markdown, summarise

    chosen = tuple(a.strip() for a in attacks.split(",") if a.strip())
    unknown = sorted(set(chosen) - set(ATTACKS))
    if unknown or not chosen:
        raise ValueError(f"unknown attacks {unknown}; choose from {', '.join(ATTACKS)}")
    default_work = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    work = (work_dir or default_work) / f"poisonlab-campaign-{int(time.time())}"
    cfg = CampaignConfig(seeds=parse_seeds(seeds), work_dir=work, attacks=chosen)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with (out / "campaign.jsonl").open("w", encoding="utf-8") as log:

        def progress(line: str) -> None:
            console.print(f"[dim]{escape(line)}[/] ({time.perf_counter() - start:.0f} s)")

        try:
            records = run_campaign(cfg, progress=progress, sink=lambda rec: log.write(json.dumps(rec) + "\n"))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    summary = summarise(records) | {"wall_seconds": round(time.perf_counter() - start, 1)}
    summary["provenance"] = _campaign_provenance(cfg)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(summary), encoding="utf-8")
    console.print(escape(markdown(summary)))
    console.print(f"records, summary and report: {out}")


def _campaign_provenance(cfg: Any) -> dict[str, Any]:
    """Commit, versions, seeds and every parameter: the campaign's and the service's defaults."""
    import dataclasses

    from poisonlab.reporting.stamp import result_provenance
    from poisonlab.service.settings import ServiceSettings

    fields = ServiceSettings.model_fields.items()
    service = {name: f.get_default(call_default_factory=True) for name, f in fields if not f.is_required()}
    campaign = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("seeds", "work_dir")}
    return result_provenance(seeds=cfg.seeds, parameters={"campaign": campaign, "service_defaults": service})


@cli_errors
def redteam_command(
    url: str = typer.Option("http://127.0.0.1:8000", "--url", envvar="IMRECS_URL", help="the service"),
    contributor_key: str | None = typer.Option(
        None, "--contributor-key", envvar="IMRECS_CONTRIBUTOR_KEY", help="the attacker's key"
    ),
    trainer_key: str | None = typer.Option(
        None, "--trainer-key", envvar="IMRECS_TRAINER_KEY", help="starts and reads training runs"
    ),
    admin_key: str | None = typer.Option(
        None,
        "--admin-key",
        envvar="IMRECS_ADMIN_KEY",
        help="switches the defenses off for run 1; reads the audit log",
    ),
    campaign: bool = typer.Option(
        False, "--campaign", help="play the seeded campaign against in-process services instead (no keys)"
    ),
    seeds: str = typer.Option("1000-1019", "--seeds", help="campaign seeds, e.g. 1000-1019 or 1,2,5-7"),
    attacks: str = typer.Option(
        "clean,patch,blend,label_flip,outnumber,retry,drip,unsigned", "--attacks", help="campaign attacks"
    ),
    work_dir: Path | None = typer.Option(
        None, "--work-dir", help="campaign: where the services live (default /dev/shm or the temp folder)"
    ),
    dataset: str = typer.Option(
        "digits",
        "--dataset",
        help="digits (offline) or cifar10: must match the service's model",
        callback=dataset_name,
    ),
    photos: Path | None = typer.Option(
        None,
        "--photos",
        help="cifar10: the Rutan Boomerang photos (default ../shared/datasets/ch4/rutan-boomerang)",
    ),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="cifar10: where CIFAR-10 is (source of the backdoor batch)"
    ),
    backdoor_count: int | None = typer.Option(
        None, "--backdoor-count", min=1, help="triggered images (default 60 digits, 500 cifar10)"
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", min=1, max=200, help="fine-tuning epochs of both runs (default: the service's)"
    ),
    timeout: float = typer.Option(3600.0, "--timeout", min=1, help="seconds to wait for each training run"),
    seed: int = typer.Option(0, "--seed", min=0),
    out: Path = typer.Option(
        Path("redteam-transcript.json"), "--out", help="JSON transcript (campaign: a folder)"
    ),
) -> None:
    """As the chapter's attacker, poison a running ImRecS through its API; show defenses, gates and audit.

    Keys are better passed as IMRECS_CONTRIBUTOR_KEY, IMRECS_TRAINER_KEY and IMRECS_ADMIN_KEY
    (options show up in the process list). The service should accept unsigned contributions as
    pending (`poisonlab serve --unsigned pending`), else its signing policy stops the poison at
    the door and there is nothing for the pipeline to screen.

    With --campaign: seeds x attacks (patch, blend, label flip, poison outnumbering its class, retry
    after rejection, slow drip, signed and unsigned) against fresh in-process services on digits;
    counts poisoned models promoted and clean contributions quarantined (no URL or keys needed).
    """
    if campaign:
        run_campaign_command(seeds, attacks, out, work_dir)
        return
    if not (contributor_key and trainer_key and admin_key):
        raise ValueError("the walk-through needs --contributor-key, --trainer-key and --admin-key")
    import httpx

    from poisonlab.redteam import Keys, build_plan, run_walkthrough

    plan = build_plan(dataset, photos_dir=photos, data_dir=data_dir, backdoor_count=backdoor_count, seed=seed)
    keys = Keys(contributor=contributor_key, trainer=trainer_key, admin=admin_key)
    with httpx.Client(base_url=url, timeout=60) as http:
        transcript = run_walkthrough(
            http, keys, plan, epochs=epochs, timeout=timeout, progress=lambda m: console.print(f"[dim]{m}[/]")
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(transcript, indent=2) + "\n", encoding="utf-8")
    print_summary(transcript)
    console.print(f"transcript: {out}")
