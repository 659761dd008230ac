"""``poisonlab demo``: the chapter's lab in one command on the embedded data (offline).

On ``digits`` (default) it trains the clean model, then runs a backdoor attack (pattern trigger,
all training "7"s stamped and relabelled "1", retrain) and a mislabel injection (25 held-out "7"s
labelled "1" added to the training set, the clean model fine-tuned on it with the chapter's
fine-tune recipe), screens the backdoored training set, and counts how many injected images each
model gives the attacker's label (:class:`InjectedHits`: the mislabel attack's success). On
``cifar10`` the same runs use airplane -> bird and, when present, the chapter's Rutan Boomerang
photos. The reports, the summary and the verdicts are written by
:func:`poisonlab.experiments.single.demo_report.write_demo`.

The mislabel injection fine-tunes on the whole poisoned set, not on the injected images alone (the
chapter's notebook). On digits, ten Adam steps on the 25 images alone left them unlearned (0 of 25
given the attacker's label, issue 17), and more steps on them alone learned them only by dragging
every class towards the target (21 of 25 at test accuracy 0.53). Mixed into the training data, as
a service's new contributions are, 17-22 of the 25 were learned with test accuracy within 1.1
points of the clean model's (seeds 0-3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from poisonlab.data.catalog import load_splits
from poisonlab.data.dataset import Dataset, Splits
from poisonlab.defenses.scan import ANCHORED_METHODS, SCREEN_METHODS, ScanResult, scan
from poisonlab.experiments.common.cache import clean_baseline
from poisonlab.experiments.single.config import ExperimentConfig, parse_experiment
from poisonlab.experiments.single.records import ExperimentResult
from poisonlab.experiments.single.run import claim_experiment_dirs, run_experiment
from poisonlab.inference import forward_pass
from poisonlab.models.base import PoisonlabModel
from poisonlab.models.checkpoint import load_model
from poisonlab.provenance import claim_run_dir

__all__ = [
    "DEMO_DEFENSES",
    "DemoPlan",
    "DemoResult",
    "InjectedHits",
    "claim_demo_dirs",
    "demo_configs",
    "demo_plan",
    "injected_hits",
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


@dataclass(frozen=True)
class InjectedHits:
    """How many of a mislabel attack's injected images a model gives the attacker's label.

    Attributes
    ----------
    total : int
        Injected images (the same set for every seed).
    clean : int
        Those the clean model classifies as the target (before the attack).
    poisoned : tuple of int
        Those each seed's poisoned model classifies as the target.
    """

    total: int
    clean: int
    poisoned: tuple[int, ...]

    @property
    def mean_poisoned(self) -> float:
        """Mean over seeds of :attr:`poisoned`."""
        return sum(self.poisoned) / len(self.poisoned)


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
    injected : dict of str to InjectedHits
        Per mislabel experiment (by name), the injected images given the attacker's label.
    """

    dataset: str
    results: list[ExperimentResult]
    scan: ScanResult
    injected: dict[str, InjectedHits] = field(default_factory=dict)


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


def _injected_text(plan: DemoPlan) -> str:
    return (
        "the chapter's Rutan Boomerang photos"
        if plan.mislabel_images
        else f"25 held-out '{plan.source}' images"
    )


def demo_configs(
    dataset: str, *, data_dir: str | None, shared_dir: Path | None, epochs: int | None, seeds: list[int]
) -> list[ExperimentConfig]:
    """The two experiments of the demo; ``epochs`` shortens every training (smoke runs, tests)."""
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
        "description": f"Mislabel injection: {_injected_text(plan)} labelled '{plan.target}' added to "
        "the training set; the clean model is fine-tuned on it with the chapter's fine-tune recipe "
        "(Adam, lr 0.001, batch 64, 10 epochs).",
        "dataset": ds,
        "training": training,
        "finetune": finetune,
        "seeds": seeds,
        "integration": "finetune",
        "attack": {"kind": "mislabel", "target": plan.target, **images},
        "metrics": {"source": plan.source, "target": plan.target},
    }
    return [parse_experiment(backdoor, "demo"), parse_experiment(mislabel, "demo")]


def claim_demo_dirs(configs: list[ExperimentConfig], out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Check, before any work, every folder the demo writes (``out_dir``, each run's folder and
    its models); FileExistsError names the first that holds a run, unless ``overwrite``."""
    out = claim_run_dir(out_dir, overwrite=overwrite)
    for cfg in configs:
        claim_experiment_dirs(cfg, out / cfg.name, overwrite=overwrite)
    return out


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
    splits: Splits | None = None,
    overwrite: bool = False,
) -> DemoResult:
    """Run the demo experiments, scan the backdoored training set, count the injected images learned.

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
    splits
        The data, when the caller has loaded it already; default: ``dataset`` from ``data_dir``.
    overwrite
        Replace an earlier demo's models in ``out_dir``; without it a folder holding one is refused
        (FileExistsError) before anything trains.

    Returns
    -------
    DemoResult
        Write it with :func:`poisonlab.experiments.single.demo_report.write_demo`.
    """
    configs = demo_configs(
        dataset, data_dir=data_dir, shared_dir=shared_dir, epochs=epochs, seeds=seeds or [0]
    )
    out = claim_demo_dirs(configs, out_dir, overwrite=overwrite)
    splits = load_splits(dataset, data_dir=data_dir) if splits is None else splits
    results = [
        run_experiment(
            cfg, out / cfg.name, device=device, progress=progress, splits=splits, overwrite=overwrite
        )
        for cfg in configs
    ]
    scanned = scan_backdoor(results[0], splits.val, device=device)
    injected = {
        r.config.name: injected_hits(r, device=device) for r in results if r.config.attack.kind == "mislabel"
    }
    return DemoResult(dataset=dataset, results=results, scan=scanned, injected=injected)


def _target_hits(model: PoisonlabModel, images: Dataset, target: int, device: str) -> int:
    return int((forward_pass(model, images.x, device=device).predictions == target).sum())


def injected_hits(result: ExperimentResult, *, device: str) -> InjectedHits:
    """How many injected images of a mislabel run the clean model and each poisoned model classify as
    the attacker's target: the attack's success (the chapter asks whether the Rutan Boomerang
    photos now come out "bird")."""
    injected = result.runs[0].poison.poisoned_only  # the same images for every seed
    target = int(injected.y[0])  # every injected image carries the target label
    clean, *_ = clean_baseline(
        result.splits, result.config.clean_train_config(), device=device, progress=False
    )  # cached: trained by this run already
    poisoned = []
    for run in result.runs:
        model, _ = load_model(result.out_dir / "models" / f"seed-{run.seed}")
        poisoned.append(_target_hits(model, run.poison.poisoned_only, target, device))
    return InjectedHits(
        total=len(injected), clean=_target_hits(clean, injected, target, device), poisoned=tuple(poisoned)
    )


def scan_backdoor(result: ExperimentResult, trusted: Dataset, *, device: str) -> ScanResult:
    """Screen the first seed's poisoned training set with the default screen (:data:`DEMO_DEFENSES`
    on one pass of the poisoned model, ``trusted`` as the clean reference, combined without ground
    truth)."""
    run = result.runs[0]
    model, _ = load_model(result.out_dir / "models" / f"seed-{run.seed}")
    return scan(run.poison.dataset, DEMO_DEFENSES, model=model, trusted=trusted, device=device, screen=True)
