"""What ``poisonlab demo`` writes: each run's results and report, the scan report of the
backdoored set, and ``summary.md``/``summary.html`` tying them together."""

from __future__ import annotations

from pathlib import Path

from poisonlab.defenses.scan import ScanResult
from poisonlab.defenses.scan.report import write_scan_report
from poisonlab.experiments.single.demo import DEMO_DEFENSES, DemoResult
from poisonlab.experiments.single.records import ExperimentResult
from poisonlab.experiments.single.report import write_experiment
from poisonlab.reporting import Report

__all__ = ["scan_rows", "summary_rows", "write_demo"]

#: Folder of the scan report, inside the demo's output folder.
SCAN_DIR = "scan-backdoor"


def summary_rows(results: list[ExperimentResult]) -> list[list[str]]:
    """One row per run: name, clean and poisoned accuracy, ASR, source->target, report path."""
    rows = []
    for r in results:
        s = r.summary()
        p = s["poisoned"]
        asr = p.get("attack_success_rate")
        st_clean = s["clean"].get("source_to_target")
        st_pois = p.get("source_to_target")
        rows.append(
            [
                r.config.name,
                f"{s['clean']['clean_accuracy']:.4f}",
                f"{p['clean_accuracy']['mean']:.4f}",
                "-" if asr is None else f"{asr['mean']:.4f}",
                "-" if st_pois is None else f"{st_clean:.0f} -> {st_pois['mean']:.0f}",
                f"{r.config.name}/report.html",
            ]
        )
    return rows


def scan_rows(scanned: ScanResult) -> list[list[str]]:
    """One row per defense: name, flagged count, precision, recall, F1, AUROC."""

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    keys = ("precision", "recall", "f1", "auroc")
    rows = [[m.name, str(int(m.flagged.sum())), *(fmt(m.metrics[k]) for k in keys)] for m in scanned.methods]
    if scanned.screen is not None:
        v = scanned.screen
        rows.append(["screen (combined)", str(int(v.flagged.sum())), *(fmt(v.metrics[k]) for k in keys)])
    return rows


def screen_verdict_line(scanned: ScanResult) -> str:
    """One sentence on whether the screen caught the poison, with the figure either way."""
    v = scanned.screen
    mask = scanned.dataset.poison_mask
    if v is None or mask is None:
        return "The screen did not run."
    caught, total = int((v.flagged & mask).sum()), int(mask.sum())
    false = int((v.flagged & ~mask).sum())
    verdict = "caught the backdoor" if caught >= 0.9 * total else "did NOT catch the backdoor"
    return (
        f"Verdict: the screen {verdict}: {caught} of {total} poisoned samples flagged, {false} clean "
        "samples flagged. Where it misses, the poison does not separate in this model's features (see "
        "the per-detector AUROC: ranking without a decision), the open problem of docs/results/detection.md."
    )


def write_demo(result: DemoResult, out_dir: str | Path) -> Path:
    """Write every report of the demo into ``out_dir``; return ``summary.html``.

    Each run goes to ``<experiment name>/`` (as ``poisonlab run`` writes it), the scan to
    ``scan-backdoor/`` and the summary next to them.
    """
    out = Path(out_dir)
    for run in result.results:
        write_experiment(run, out / run.config.name)
    first = result.results[0].runs[0]
    write_scan_report(result.scan, out / SCAN_DIR, top=30, model_info={"id": first.model_id})
    report = Report(f"poisonlab demo on {result.dataset}")
    report.table(
        ["experiment", "clean acc", "poisoned acc", "ASR", "source->target (clean -> poisoned)", "report"],
        summary_rows(result.results),
    )
    report.heading("Detecting the backdoor's poison", 2)
    report.paragraph(
        f"What you are looking at: the backdoored training set screened by {len(DEMO_DEFENSES)} defenses "
        "on one shared forward pass of the poisoned model (the validation split is the trusted set). "
        "The last row is the default screen's verdict: a sample counts as poison when at least two of "
        "its detectors flag it, decided without the ground truth; precision and recall compare each "
        "row with the attack's real poison mask. provenance knows each sample's source tag, and the "
        "poison arrives under its own tag here, so its score is an upper bound, not a detection. "
        f"Full report: {SCAN_DIR}/report.html"
    )
    report.paragraph(screen_verdict_line(result.scan))
    report.table(["defense", "flagged", "precision", "recall", "F1", "AUROC"], scan_rows(result.scan))
    return report.write(out, stem="summary")[1]
