"""The red-team campaign: seeds x attacks against an in-process ImRecS, counting poisoned promotions.

For every seed a :class:`~poisonlab.redteam.world.World` is drawn (base data, outsiders' pool,
target and source classes, triggers) and a clean base model is trained on the base data with the
digits recipe; every attack then plays against a fresh service serving that model with the
default settings (except where an attack says otherwise), through the HTTP API
(:mod:`poisonlab.redteam.harness`). Honest contributors (``alice``, ``bob``, each signing with a
registered source) send correctly labelled pool images in ``clean`` (the control) and before the
attacker in ``retry``; the other attacks send the poison alone, so that a run trains (and reaches
the gates) only on what slipped through: the campaign fits its time budget that way, and a
promotion can only come from poison the screen missed.

Attacks (:data:`ATTACKS`):

``clean``
    no attacker: the control that measures how many clean contributions get quarantined;
``patch``, ``blend``
    all-to-one backdoors: pool images of every class but the target, the world's patch or blend
    trigger stamped on, labelled the target; patch signed by the attacker's source, blend sent
    *unsigned* to a service whose operator lets unsigned data in (``unsigned_policy=pending``);
``label_flip``
    pool images of the source class labelled the target, signed;
``outnumber``
    a patch backdoor larger than the base data's target class, from three attacker sources;
``retry``
    the issue's walk-past: honest data and a patch backdoor, run 1 with the screen switched off by
    an admin (the gates alone), then a plain retry by the trainer (default defenses);
``drip``
    a few patch-poisoned images per run over several runs, from one signed source;
``unsigned``
    the patch backdoor unsigned against the default signing policy (quarantine at the door).

A promotion is *poisoned* when, right after it, a poison contribution is ``accepted`` (it was in
the promoted model's training set). Attack success (share of triggered test images not of the
target class, or test images of the source class for a flip, predicted as the target) is measured
on the base model, on the model serving after every run, and on the one serving at the end. The
first run of ``retry`` runs without the screen by design and is reported on its own; every other
run uses the default defenses.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from poisonlab.data.dataset import Dataset
from poisonlab.inference import predict
from poisonlab.models.checkpoint import load_model, save_model
from poisonlab.redteam.harness import Service
from poisonlab.redteam.world import World, make_world
from poisonlab.training import digits_recipe, train

__all__ = ["ATTACKS", "CampaignConfig", "reason_kind", "run_campaign", "run_scenario"]

ATTACKS = ("clean", "patch", "blend", "label_flip", "outnumber", "retry", "drip", "unsigned")
HONEST = ("alice", "bob")
ATTACKERS = ("mallory", "mallory-2", "mallory-3")


@dataclass(frozen=True)
class CampaignConfig:
    """What the campaign plays: seeds, attacks, batch sizes; ``work_dir`` holds the services."""

    seeds: tuple[int, ...]
    work_dir: Path
    attacks: tuple[str, ...] = ATTACKS
    clean_per_run: int = 40
    poison: int = 35
    outnumber: int = 100
    drip_runs: int = 3
    drip_poison: int = 11
    base_epochs: int = 20


def fate(row: dict) -> str:
    """Where a contribution ended: ``accepted``, ``pending``, or the layer that quarantined it."""
    return row["status"] if row["status"] in ("accepted", "pending") else reason_kind(row["reason"])


def reason_kind(reason: str) -> str:
    """Which layer put a contribution where it is, from its reason."""
    prefixes = {
        "unsigned": "door",
        "review: volume cap": "caps",
        "screen:": "screen",
        "defense:": "screen",
        "source:": "distrust",
        "rejected run": "gates",
        "validation": "validation",
    }
    return next((kind for p, kind in prefixes.items() if reason.startswith(p)), "other")


@dataclass
class Play:
    """One scenario in progress: its world, service, and which contribution ids are poison."""

    world: World
    svc: Service
    attack: str
    poison: list[int] = field(default_factory=list)
    clean: list[int] = field(default_factory=list)
    door: Counter = field(default_factory=Counter)
    runs: list[dict] = field(default_factory=list)

    def honest(self, n: int) -> None:
        """``n`` correctly labelled pool images, split between the honest signed sources."""
        batch = self.world.draw(n)
        for i, who in enumerate(HONEST):
            part = batch.subset(np.arange(i, n, len(HONEST)))
            self.clean += [r["id"] for r in self.svc.contribute(who, part.x, part.y, source=who)]

    def send(self, data: Dataset, *, who: str = "mallory", signed: bool = True) -> None:
        rows = self.svc.contribute(who, data.x, data.y, source=who if signed else None)
        self.poison += [r["id"] for r in rows]
        self.door.update(r["status"] for r in rows)

    def backdoor(self, n: int, trigger: str = "patch") -> Dataset:
        """``n`` pool images not of the target class, triggered, labelled the target."""
        w = self.world
        data = w.draw(n, exclude=w.target)
        stamp = (w.patch if trigger == "patch" else w.blend).apply
        return data.replace(x=stamp(data.x), y=np.full(n, w.target, np.int64))

    def run(self, who: str = "trainer", body: dict | None = None, *, screened: bool = True) -> dict:
        """One training run and its outcome for our contributions."""
        run = self.svc.train(who, body)
        now = self.svc.statuses()
        poison = Counter(now[i]["status"] for i in self.poison)
        record = {
            "run_id": run["id"],
            "status": run["status"],
            "decision": (run.get("report") or {}).get("decision", run.get("error")),
            "screened": screened,
            "failed_gates": sorted(
                g for g, v in (run["report"].get("gates") or {}).items() if not v.get("passed")
            ),
            "poison": dict(poison),
            "clean": dict(Counter(now[i]["status"] for i in self.clean)),
            "poisoned_promotion": run["status"] == "promoted" and poison["accepted"] > 0,
            "evidence": gate_evidence(run["report"].get("gates") or {}),
            # what the model serving after this run does with the attack's inputs
            "asr_serving": attack_success(self.svc.serving()[1], self.world, self.attack),
        }
        self.runs.append(record)
        return record


def gate_evidence(gates: dict) -> dict:
    """The one figure of each gate a reader compares with its threshold."""
    out: dict = {}
    if "accuracy" in gates:
        out["accuracy"] = [gates["accuracy"].get("serving"), gates["accuracy"].get("candidate")]
    nc = gates.get("neural_cleanse") or {}
    if nc.get("reference_success"):
        gaps = np.subtract(nc["success"], nc["reference_success"])
        out["nc_gap"] = round(float(gaps.max()), 4)
        out["nc_index"] = round(float(max(nc["anomaly_index"])), 3)
    spikes = (gates.get("sensitivity") or {}).get("suspected") or []
    out["spike"] = round(max((s["excess"] for s in spikes), default=0.0), 4)
    largest = (gates.get("behaviour") or {}).get("largest") or {}
    out["shift"] = largest.get("shift")
    return out


def _clean(p: Play, cfg: CampaignConfig) -> None:
    p.honest(2 * cfg.clean_per_run)
    p.run()


def _patch(p: Play, cfg: CampaignConfig) -> None:
    p.send(p.backdoor(cfg.poison))
    p.run()


def _blend(p: Play, cfg: CampaignConfig) -> None:
    p.send(p.backdoor(cfg.poison, "blend"), signed=False)
    p.run()


def _label_flip(p: Play, cfg: CampaignConfig) -> None:
    w = p.world
    flipped = w.draw(cfg.poison, classes=np.array([w.source]))
    p.send(flipped.replace(y=np.full(len(flipped), w.target, np.int64)))
    p.run()


def _outnumber(p: Play, cfg: CampaignConfig) -> None:
    poison = p.backdoor(cfg.outnumber)
    for i, who in enumerate(ATTACKERS):
        p.send(poison.subset(np.arange(i, len(poison), len(ATTACKERS))), who=who)
    p.run()


def _retry(p: Play, cfg: CampaignConfig) -> None:
    p.honest(cfg.clean_per_run)
    p.send(p.backdoor(cfg.poison))
    p.run("admin", {"defenses": []}, screened=False)  # the screen missed it: the gates alone
    p.run()  # the walk-past: a plain retry


def _drip(p: Play, cfg: CampaignConfig) -> None:
    for _ in range(cfg.drip_runs):
        p.send(p.backdoor(cfg.drip_poison))
        p.run()


def _unsigned(p: Play, cfg: CampaignConfig) -> None:
    p.send(p.backdoor(cfg.poison), signed=False)
    p.run()


SCENARIOS: dict[str, Callable[[Play, CampaignConfig], None]] = {
    "clean": _clean,
    "patch": _patch,
    "blend": _blend,
    "label_flip": _label_flip,
    "outnumber": _outnumber,
    "retry": _retry,
    "drip": _drip,
    "unsigned": _unsigned,
}
SETTINGS = {"blend": {"unsigned_policy": "pending"}}


def attack_success(model, world: World, attack: str) -> float | None:
    """Share of the attack's test inputs the model sends to the target (None for ``clean``)."""
    test, t = world.splits.test, world.target
    if attack == "clean":
        return None
    if attack == "label_flip":
        x = test.x[test.y == world.source]
    else:
        stamp = world.blend.apply if attack == "blend" else world.patch.apply
        x = stamp(test.x[test.y != t])
    return round(float(np.mean(predict(model, x, device="cpu") == t)), 4)


def run_scenario(world: World, attack: str, base_dir: Path, cfg: CampaignConfig, folder: Path) -> dict:
    """Play ``attack`` against a fresh service serving the model in ``base_dir``; returns its record."""
    world.rng = np.random.default_rng([world.seed, ATTACKS.index(attack)])
    world.reset()
    start = time.perf_counter()
    contributors = HONEST + ATTACKERS
    with Service(
        folder, base_dir, world.splits, contributors, seed=world.seed, **SETTINGS.get(attack, {})
    ) as svc:
        for name in contributors:
            svc.add_source(name)
        play = Play(world, svc, attack)
        SCENARIOS[attack](play, cfg)
        final = svc.statuses()
        _, model = svc.serving()
        asr = attack_success(model, world, attack)
    base, _ = load_model(base_dir)
    return {
        "seed": world.seed,
        "attack": attack,
        "world": world.describe(),
        "poison_sent": len(play.poison),
        "clean_sent": len(play.clean),
        "at_submission": dict(play.door),
        "runs": play.runs,
        "poison_final": dict(Counter(fate(final[i]) for i in play.poison)),
        "clean_final": dict(Counter(final[i]["status"] for i in play.clean)),
        "clean_quarantined_by": dict(
            Counter(
                reason_kind(final[i]["reason"]) for i in play.clean if final[i]["status"] == "quarantined"
            )
        ),
        "clean_reasons": dict(
            Counter(final[i]["reason"][:80] for i in play.clean if final[i]["status"] == "quarantined")
        ),
        "asr_base": attack_success(base, world, attack),
        "asr_final": asr,
        "seconds": round(time.perf_counter() - start, 1),
    }


def base_model(world: World, folder: Path, epochs: int) -> Path:
    """Train (digits recipe, the world's seed) and save the seed's clean base model."""
    torch.manual_seed(world.seed)
    cfg = digits_recipe().model_copy(update={"epochs": epochs, "seed": world.seed})
    model = train(world.splits.train, cfg, device="cpu", progress=False).model.eval()
    base = world.splits.train
    save_model(
        model, folder, class_names=base.class_names, dataset_name=base.name, dataset_hash=base.content_hash
    )
    return folder


def run_campaign(
    cfg: CampaignConfig,
    *,
    progress: Callable[[str], None] | None = None,
    sink: Callable[[dict], object] | None = None,
) -> list[dict]:
    """Every (seed, attack) of ``cfg``; returns one record per scenario (see :func:`run_scenario`).

    ``progress`` gets a one-line account of each scenario, ``sink`` each record as it is made.
    """
    say = progress or (lambda _m: None)
    records = []
    for seed in cfg.seeds:
        world = make_world(seed)
        root = cfg.work_dir / f"seed-{seed}"
        shutil.rmtree(root, ignore_errors=True)
        model_dir = base_model(world, root / "base-model", cfg.base_epochs)
        for attack in cfg.attacks:
            rec = run_scenario(world, attack, model_dir, cfg, root / attack)
            records.append(rec)
            shutil.rmtree(root / attack, ignore_errors=True)
            if sink is not None:
                sink(rec)
            say(_line(rec))
        shutil.rmtree(root, ignore_errors=True)
    return records


def _line(rec: dict) -> str:
    runs = ", ".join(f"{r['status']}{'*' if r['poisoned_promotion'] else ''}" for r in rec["runs"])
    return (
        f"seed {rec['seed']} {rec['attack']:10s} runs [{runs}] poison {rec['poison_final']} "
        f"clean {rec['clean_final']} asr {rec['asr_base']} -> {rec['asr_final']} ({rec['seconds']} s)"
    )
