"""``poisonlab demo``: the chapter's lab in one command on the embedded data (offline).

On ``digits`` (default) it trains the clean model, then runs a backdoor attack (pattern trigger,
all training "7"s relabelled "1", retrain) and a mislabel injection (25 held-out "7"s labelled
"1", fine-tune on the poison only, the chapter's Rutan Boomerang procedure), and writes both
reports plus a summary. On ``cifar10`` the same runs use airplane -> bird and, when present,
the chapter's Rutan Boomerang photos. The reports and the summary are written by
:func:`poisonlab.experiments.single.demo_report.write_demo`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from poisonlab.data.catalog import load_splits
from poisonlab.data.dataset import Dataset
from poisonlab.defenses.scan import ANCHORED_METHODS, SCREEN_METHODS, ScanResult, scan
from poisonlab.experiments.single.config import ExperimentConfig, parse_experiment
from poisonlab.experiments.single.records import ExperimentResult
from poisonlab.experiments.single.run import run_experiment
from poisonlab.models.checkpoint import load_model

__all__ = [
    "DEMO_DEFENSES",
    "DemoPlan",
    "DemoResult",
    "demo_configs",
    "demo_plan",
    "run_demo",
    "scan_backdoor",
]

#: What the demo runs on the backdoored set: the chapter's defenses beside the default screen's
#: detectors; only the latter are combined into the screen's verdict.
DEMO_DEFENSES = ("label_drift", "duplicates", "provenance", "strip", *SCREEN_METHODS, *ANCHORED_METHODS)


@dataclass(frozen=True)
class DemoPlan:
    """The classes of the demo's attacks and, on CIFAR-10, the chapter's photos when present."""

    source: str
    target: str
    mislabel_images: str | None


@dataclass
class DemoResult:
    """The demo's two runs (backdoor first) and the scan of the backdoored training set.

    Attributes
    ----------
    dataset : str
        The dataset the demo ran on.
    results : list of ExperimentResult
        The backdoor run, then the mislabel run.
    scan : ScanResult
        :data:`DEMO_DEFENSES` on the backdoor's first poisoned training set.
    """

    dataset: str
    results: list[ExperimentResult]
    scan: ScanResult


def demo_plan(dataset: str, shared_dir: Path | None) -> DemoPlan:
    """Digits 7 -> 1; CIFAR-10 airplane -> bird with the Rutan photos from ``shared_dir`` if any."""
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
) -> DemoResult:
    """Run the demo experiments and scan the backdoored training set.

    Parameters
    ----------
    out_dir
        Each run saves its poisoned models under ``out_dir/<experiment name>/models``.
    dataset, data_dir
        ``digits`` (embedded) or ``cifar10`` and where to find it.
    shared_dir
        The folder holding the chapter's photos (``datasets/ch4/rutan-boomerang``).
    epochs, seeds
        Shorter training and other seeds (tests, smoke runs).
    device, progress
        Torch device and progress bars.

    Returns
    -------
    DemoResult
        Write it with :func:`poisonlab.experiments.single.demo_report.write_demo`.
    """
    out = Path(out_dir)
    configs = demo_configs(
        dataset, data_dir=data_dir, shared_dir=shared_dir, epochs=epochs, seeds=seeds or [0]
    )
    splits = load_splits(dataset, data_dir=data_dir)
    results = [
        run_experiment(cfg, out / cfg.name, device=device, progress=progress, splits=splits)
        for cfg in configs
    ]
    scanned = scan_backdoor(results[0], splits.val, device=device)
    return DemoResult(dataset=dataset, results=results, scan=scanned)


def scan_backdoor(result: ExperimentResult, trusted: Dataset, *, device: str) -> ScanResult:
    """Screen the first seed's poisoned training set with the default screen (:data:`DEMO_DEFENSES`
    on one pass of the poisoned model, ``trusted`` as the clean reference, combined without ground
    truth)."""
    run = result.runs[0]
    model, _ = load_model(result.out_dir / "models" / f"seed-{run.seed}")
    return scan(run.poison.dataset, DEMO_DEFENSES, model=model, trusted=trusted, device=device, screen=True)
