"""``poisonlab run CONFIG``: one poisoning experiment end to end, over seeds.

Steps: load the splits; train (or reuse from the cache) the clean baseline (one shared, or with
``baseline: per_seed`` one per seed, trained with that seed); for each seed build the attack,
poison the training set, integrate it (retrain from scratch, fine-tune the seed's clean model on
the poisoned set, or fine-tune it on the poisoned samples only); measure both models; with the
optional blocks, run the robustness tests on every model (:mod:`.robustness`) and fine-tune each
poisoned model with and without triggered copies (:mod:`.mitigation`). The poisoned models are
saved under ``out_dir/models/seed-<seed>``; ``results.json`` and the report are written by
:func:`poisonlab.experiments.single.report.write_experiment`. A folder holding an earlier run is
refused before any training unless ``overwrite=True`` (:func:`claim_experiment_dirs`); with
``resume=True`` the models a stopped run of the same config left there are reused
(:mod:`poisonlab.experiments.single.resume`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from poisonlab.attacks.base import PoisonResult
from poisonlab.data.catalog import load_splits
from poisonlab.data.dataset import Splits
from poisonlab.experiments.common.cache import clean_baseline
from poisonlab.experiments.common.measure import AttackTargets, ModelMeasurement, measure, triggered_test
from poisonlab.experiments.single.build import attack_targets, build_attack
from poisonlab.experiments.single.config import ExperimentConfig
from poisonlab.experiments.single.mitigation import run_mitigation
from poisonlab.experiments.single.records import ExperimentResult, SeedRun
from poisonlab.experiments.single.resume import claim_seed_dirs, saved_seed_model, seed_model_dir
from poisonlab.experiments.single.robustness import check_robustness, prepare_robustness, robustness_checks
from poisonlab.models.base import PoisonlabModel
from poisonlab.models.checkpoint import write_card
from poisonlab.provenance import claim_run_dir
from poisonlab.training.save import train_and_save

__all__ = ["claim_experiment_dirs", "run_experiment"]


def claim_experiment_dirs(
    cfg: ExperimentConfig, out_dir: str | Path, *, overwrite: bool = False, resume: bool = False
) -> Path:
    """Check, before any work, every folder a run of ``cfg`` writes: ``out_dir`` and each seed's
    ``models/seed-<seed>``; a run stopped after its first model leaves one without a ``run.json``
    at the top, and it would otherwise be refused only after the training. With ``resume`` a seed
    folder holding a model is kept for :func:`~poisonlab.experiments.single.resume.saved_seed_model`.

    Raises
    ------
    FileExistsError
        One of them holds a run and ``overwrite`` is False (for seed folders: nor ``resume``).
    """
    out = claim_run_dir(out_dir, overwrite=overwrite)
    claim_seed_dirs(out, list(cfg.seeds), overwrite=overwrite, resume=resume)
    return out


@dataclass(frozen=True)
class _Tools:
    """What every seed of a run shares: its measurement and checks of one model, and options."""

    measured: Callable[[PoisonlabModel], ModelMeasurement]
    checked: Callable[..., dict | None]  # (model, reference=None) -> robustness checks
    targets: AttackTargets
    device: str
    progress: bool
    overwrite: bool
    resume: bool = False


def _poisoned_model(
    cfg: ExperimentConfig,
    splits: Splits,
    poison: PoisonResult,
    clean: PoisonlabModel,
    clean_id: str,
    seed: int,
    out_dir: Path,
    tools: _Tools,
) -> tuple[PoisonlabModel, str, list[dict], dict | None]:
    """Integrate ``poison`` as the config says; the model is saved and registered with its parent.

    With ``tools.resume`` a model this seed's folder already holds is reused when it is the same
    run (:func:`saved_seed_model`); the last item is then the run that trained it, else None.
    """
    train_cfg = cfg.poison_train_config(seed)
    data = poison.poisoned_only if cfg.integration == "finetune_poison_only" else poison.dataset
    init = None if cfg.integration == "retrain" else clean
    parent_id = None if init is None else clean_id
    folder = seed_model_dir(out_dir, seed)
    saved = saved_seed_model(folder, train_cfg, data, parent_id) if tools.resume else None
    if saved is not None:
        return saved.model, saved.model_id, saved.history, saved.trained_by
    trained = train_and_save(
        data,
        train_cfg,
        folder,
        val_data=splits.val,
        init=init,
        parent_id=parent_id,
        name=f"{cfg.name}-seed{seed}",
        device=tools.device,
        progress=tools.progress,
        overwrite=tools.overwrite,
    )
    history = [h.__dict__ for h in trained.result.history]
    # the history goes into the card so that a resumed run can still draw the seed's curve
    write_card(
        trained.card.model_copy(update={"metrics": {**trained.card.metrics, "history": history}}), folder
    )
    return trained.result.model, trained.card.id, history, None


def _run_seed(
    cfg: ExperimentConfig,
    splits: Splits,
    seed: int,
    clean: PoisonlabModel,
    clean_id: str,
    out: Path,
    tools: _Tools,
) -> SeedRun:
    """Poison, integrate and measure one seed (and mitigate, with a ``mitigation`` block)."""
    poison = build_attack(cfg, splits, seed).poison(splits.train)
    model, model_id, history, trained_by = _poisoned_model(
        cfg, splits, poison, clean, clean_id, seed, out, tools
    )
    mitigation = None
    if cfg.mitigation is not None:
        mitigation = run_mitigation(
            cfg,
            splits,
            model,
            tools.targets,
            seed,
            measured=tools.measured,
            checked=lambda m: tools.checked(m, clean),
            device=tools.device,
            progress=tools.progress,
        )
    return SeedRun(
        seed=seed,
        poison=poison,
        model_id=model_id,
        measurement=tools.measured(model),
        history=history,
        checks=tools.checked(model, clean),
        mitigation=mitigation,
        resumed_from=trained_by,
    )


def _load_splits(cfg: ExperimentConfig) -> Splits:
    data_dir = cfg.path(cfg.dataset.data_dir) if cfg.dataset.data_dir else None
    return load_splits(cfg.dataset.name, data_dir=data_dir, seed=cfg.dataset.split_seed)


def run_experiment(
    cfg: ExperimentConfig,
    out_dir: str | Path,
    *,
    device: str = "auto",
    progress: bool = True,
    splits: Splits | None = None,
    overwrite: bool = False,
    resume: bool = False,
) -> ExperimentResult:
    """Run ``cfg``: the clean baseline (cached), then one poisoned model per seed.

    Parameters
    ----------
    cfg
        The experiment.
    out_dir
        Folder the poisoned models are saved under (``models/seed-<seed>``).
    device, progress
        Torch device and progress bars.
    splits
        The data, when the caller already has it (the demo shares one load); default: the
        config's dataset.
    overwrite
        Replace the models of an earlier run in ``out_dir``; without it a folder holding one is
        refused (FileExistsError) before anything trains.
    resume
        Reuse the poisoned models a stopped run of the same config left in ``out_dir``
        (:mod:`poisonlab.experiments.single.resume`); the others are trained.

    Returns
    -------
    ExperimentResult
        Everything measured; write it with
        :func:`poisonlab.experiments.single.report.write_experiment`.
    """
    out = claim_experiment_dirs(cfg, out_dir, overwrite=overwrite, resume=resume)
    out.mkdir(parents=True, exist_ok=True)
    splits = _load_splits(cfg) if splits is None else splits
    targets = attack_targets(cfg, splits)
    check_robustness(cfg, splits)  # a bad canary or trusted-share size fails before any training
    external = [cfg.path(p) for p in cfg.metrics.external_images]
    for path in external:
        if not path.is_file():
            raise FileNotFoundError(f"external image not found: {path}")
    per_seed = cfg.baseline == "per_seed"
    first = cfg.seeds[0] if per_seed else None
    clean, clean_id, clean_history, _ = clean_baseline(
        splits, cfg.clean_train_config(first), device=device, progress=progress
    )
    triggered = triggered_test(splits.test, targets)
    ctx = prepare_robustness(cfg, splits, clean, clean_id, targets, device=device)

    def measured(model: PoisonlabModel) -> ModelMeasurement:
        return measure(model, splits.test, targets, triggered=triggered, external=external, device=device)

    def checked(model: PoisonlabModel, reference: PoisonlabModel | None = None) -> dict | None:
        if ctx is None:
            return None
        return robustness_checks(model, ctx, splits.class_names, reference=reference, device=device)

    tools = _Tools(measured, checked, targets, device, progress, overwrite, resume)
    result = ExperimentResult(
        config=cfg,
        splits=splits,
        clean_model_id=clean_id,
        clean_history=clean_history,
        targets=targets,
        clean=measured(clean),
        out_dir=out,
        robustness_setup=None if ctx is None else ctx.record,
        clean_checks=checked(clean),
    )
    for seed in cfg.seeds:
        own = own_checks = None
        if per_seed:  # this seed's own clean model (cached: the first one is the one above)
            clean, clean_id, _, _ = clean_baseline(
                splits, cfg.clean_train_config(seed), device=device, progress=progress
            )
            own = result.clean if seed == first else measured(clean)
            own_checks = result.clean_checks if seed == first else checked(clean)
        run = _run_seed(cfg, splits, seed, clean, clean_id, out, tools)
        run.clean_model_id, run.clean, run.clean_checks = (clean_id if per_seed else None), own, own_checks
        result.runs.append(run)
    return result
