"""``poisonlab demo``: the chapter's lab in one command on the embedded data (offline).

On ``digits`` (default) it trains the clean model, then runs a backdoor attack (pattern trigger,
all training "7"s relabelled "1", retrain) and a mislabel injection (25 held-out "7"s labelled
"1", fine-tune on the poison only, the chapter's Rutan Boomerang procedure), and writes both
reports plus a summary. On ``cifar10`` the same runs use airplane -> bird and, when present,
the chapter's Rutan Boomerang photos.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from poisonlab.data.catalog import load_splits
from poisonlab.experiments.config import ExperimentConfig, parse_experiment
from poisonlab.experiments.runner import ExperimentResult, run_experiment
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
    report.write(out, stem="summary")
    return results


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
