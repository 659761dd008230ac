"""``poisonlab demo``: the chapter's lab in one command on the embedded data (offline).

On ``digits`` (default) it trains the clean model, then runs a backdoor attack (pattern trigger,
all training "7"s relabelled "1", retrain) and a mislabel injection (25 held-out "7"s labelled
"1", fine-tune on the poison only, the chapter's Rutan Boomerang procedure), and writes both
reports plus a summary. On ``cifar10`` the same runs use airplane -> bird and, when present,
the chapter's Rutan Boomerang photos.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from poisonlab.data.catalog import load_splits
from poisonlab.data.dataset import Dataset
from poisonlab.defenses.scan import ScanResult, scan
from poisonlab.defenses.scan_report import write_scan_report
from poisonlab.experiments.config import ExperimentConfig, parse_experiment
from poisonlab.experiments.runner import ExperimentResult, run_experiment
from poisonlab.models.checkpoint import load_model
from poisonlab.reporting import Report


@dataclass(frozen=True)
class DemoPlan:
    source: str
    target: str
    mislabel_images: str | None


def demo_plan(dataset: str, shared_dir: Path | None) -> DemoPlan:
    if dataset == "digits":
        return DemoPlan(source="7", target="1", mislabel_images=None)
    rutan = (shared_dir / "datasets/ch4/rutan-boomerang") if shared_dir else None
    return DemoPlan(
        source="airplane",
        target="bird",
        mislabel_images=str(rutan) if rutan is not None and rutan.is_dir() else None,
    )


def demo_configs(
    dataset: str, *, data_dir: str | None, shared_dir: Path | None, epochs: int | None, seeds: list[int]
) -> list[ExperimentConfig]:
    """The two experiments of the demo; ``epochs`` shortens the clean/retrain recipe (tests)."""
    plan = demo_plan(dataset, shared_dir)
    ds = {"name": dataset, "data_dir": data_dir}
    training = {"settings": {"epochs": epochs}} if epochs else {}
    finetune = {"preset": "chapter-finetune", "settings": {"epochs": min(epochs or 10, 10)}}
    images = (
        {"images": plan.mislabel_images, "tag": "rutan-boomerang"}
        if plan.mislabel_images
        else {"from_split": {"split": "val", "class_name": plan.source, "count": 25}}
    )
    backdoor = {
        "name": f"demo-backdoor-{dataset}",
        "description": f"Pattern backdoor: every training '{plan.source}' stamped and relabelled "
        f"'{plan.target}', concatenated, model retrained from scratch.",
        "dataset": ds,
        "training": training,
        "seeds": seeds,
        "integration": "retrain",
        "attack": {"kind": "backdoor", "trigger": "pattern", "source": plan.source, "target": plan.target},
    }
    mislabel = {
        "name": f"demo-mislabel-{dataset}",
        "description": f"Mislabel injection: 25 external '{plan.source}' images labelled "
        f"'{plan.target}'; the clean model is fine-tuned on them only (the chapter's "
        "Rutan Boomerang procedure: 10 epochs, batch 64, Adam).",
        "dataset": ds,
        "training": training,
        "finetune": finetune,
        "seeds": seeds,
        "integration": "finetune_poison_only",
        "attack": {"kind": "mislabel", "target": plan.target, **images},
        "metrics": {"source": plan.source, "target": plan.target},
    }
    return [parse_experiment(backdoor, "demo"), parse_experiment(mislabel, "demo")]


def run_demo(
    out_dir: str | Path,
    *,
    dataset: str = "digits",
    data_dir: str | None = None,
    shared_dir: Path | None = None,
    epochs: int | None = None,
    seeds: list[int] | None = None,
    device: str = "auto",
    progress: bool = True,
) -> list[ExperimentResult]:
    """Run the demo experiments and write ``summary.md``/``summary.html`` next to their reports."""
    out = Path(out_dir)
    configs = demo_configs(
        dataset, data_dir=data_dir, shared_dir=shared_dir, epochs=epochs, seeds=seeds or [0]
    )
    splits = load_splits(dataset, data_dir=data_dir)
    results = [
        run_experiment(cfg, out / cfg.name, device=device, progress=progress, splits=splits)
        for cfg in configs
    ]
    report = Report(f"poisonlab demo on {dataset}")
    report.table(
        ["experiment", "clean acc", "poisoned acc", "ASR", "source->target (clean -> poisoned)", "report"],
        summary_rows(results),
    )
    scanned = scan_backdoor(results[0], splits.val, out / "scan-backdoor", device=device)
    report.heading("Detecting the backdoor's poison", 2)
    report.paragraph(
        f"The backdoored training set scanned with {len(DEMO_DEFENSES)} defenses (one shared forward "
        "pass of the poisoned model; the validation split is the trusted set). Full report: "
        "scan-backdoor/report.html"
    )
    report.table(["defense", "flagged", "precision", "recall", "F1", "AUROC"], scan_rows(scanned))
    report.write(out, stem="summary")
    return results


#: The defenses the demo runs on the backdoored set (cheap ones that look at different evidence).
DEMO_DEFENSES = (
    "label_drift",
    "duplicates",
    "provenance",
    "strip",
    "spectral_signatures",
    "activation_clustering",
)


def scan_backdoor(result: ExperimentResult, trusted: Dataset, out: Path, *, device: str) -> ScanResult:
    """Scan the first seed's poisoned training set with :data:`DEMO_DEFENSES`; write its report."""
    run = result.runs[0]
    model, _ = load_model(result.out_dir / "models" / f"seed-{run.seed}")
    scanned = scan(run.poison.dataset, DEMO_DEFENSES, model=model, trusted=trusted, device=device)
    write_scan_report(scanned, out, top=30, model_info={"id": run.model_id})
    return scanned


def scan_rows(scanned: ScanResult) -> list[list[str]]:
    """One row per defense: name, flagged count, precision, recall, F1, AUROC."""

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    keys = ("precision", "recall", "f1", "auroc")
    return [[m.name, str(int(m.flagged.sum())), *(fmt(m.metrics[k]) for k in keys)] for m in scanned.methods]


def summary_rows(results: list[ExperimentResult]) -> list[list[str]]:
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


def read_scan_rows(path: Path) -> list[list[str]]:
    """:func:`scan_rows` from a written ``scan.json`` (for the CLI, which only has the folder)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    keys = ("precision", "recall", "f1", "auroc")
    return [[m["name"], str(m["flagged"]), *(fmt(m["metrics"][k]) for k in keys)] for m in data["methods"]]
