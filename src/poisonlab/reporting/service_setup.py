"""The descriptive sections of ``docs/results/service.md``: what the campaign plays, what the
pipeline does. Every number in them is a setting, read from the code that ran
(:class:`~poisonlab.redteam.campaign.CampaignConfig`, :mod:`poisonlab.redteam.world`, the
defaults of :class:`~poisonlab.service.settings.ServiceSettings` and of the detectors and gates),
or a property of the worlds the records describe, never typed.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from typing import Any

from poisonlab.defenses.detectors.anchored_knn import AnchoredKNN
from poisonlab.defenses.gates.neural_cleanse import neural_cleanse
from poisonlab.defenses.scan.screen import ANCHORED_METHODS, MIN_VOTES, SCREEN_METHODS
from poisonlab.redteam.campaign import ATTACKERS, HONEST, SETTINGS, CampaignConfig
from poisonlab.redteam.summary import EFFECTIVE
from poisonlab.redteam.world import POOL_FRACTION
from poisonlab.reporting.prose import para, pct, span
from poisonlab.reporting.results_docs import markdown_table
from poisonlab.reporting.service_data import Campaign, WorldFacts, expected_plays
from poisonlab.service.settings import ServiceSettings

__all__ = ["default", "parameter_default", "pipeline_section", "plays_section", "trigger_draws"]


def default(name: str) -> Any:
    """The default of ``ServiceSettings.<name>``."""
    return ServiceSettings.model_fields[name].get_default(call_default_factory=True)


def parameter_default(func: Any, name: str) -> Any:
    """The default of keyword ``name`` of ``func`` (a function or a class's ``__init__``)."""
    return inspect.signature(func).parameters[name].default


def trigger_draws(campaigns: Iterable[Campaign]) -> dict[str, Any]:
    """The triggers the worlds of ``campaigns`` drew: patch ``sides`` (ints) and ``sizes``,
    ``kinds``, blend ``alphas`` (text)."""
    sizes, kinds, alphas = set(), set(), []
    for c in campaigns:
        for r in c.records:
            patch = re.match(r"(\d+x\d+) (.+?) square", r["world"]["patch"])
            alpha = re.search(r"alpha ([0-9.]+)", r["world"]["blend"])
            if patch is None or alpha is None:
                raise ValueError(
                    f"{c.folder}: unreadable trigger description in seed {r['seed']}: {r['world']}"
                )
            sizes.add(patch[1])
            kinds.add(patch[2])
            alphas.append(float(alpha[1]))
    return {
        "sides": tuple(sorted(int(v.split("x")[0]) for v in sizes)),
        "sizes": " or ".join(sorted(sizes)),
        "kinds": " or ".join(sorted(kinds, reverse=True)),
        "alphas": span(alphas, spec=".2f"),
    }


def _plays_table(cfg: CampaignConfig, world: WorldFacts) -> str:
    plays = expected_plays(cfg)
    sent = {
        "clean": f"{plays['clean'][1]} correctly labelled pool images from {len(HONEST)} honest signed "
        "sources",
        "patch": f"{cfg.poison} pool images of other classes with the patch, labelled the target, signed",
        "blend": "the same with the blend trigger, **unsigned**, to a service with "
        + ", ".join(f"`{k}={v}`" for k, v in SETTINGS.get("blend", {}).items()),
        "label_flip": f"{cfg.poison} pool images of the source class labelled the target, signed",
        "outnumber": f"{cfg.outnumber} patch images labelled the target (the base data holds "
        f"{span(world.base_class_counts, spec='')} images of each class), from {len(ATTACKERS)} "
        "signed sources",
        "retry": f"{cfg.clean_per_run} honest images + {cfg.poison} patch images; run 1 by an admin "
        "with `defenses: []` (no screen), then a plain retry by the trainer",
        "drip": f"{cfg.drip_poison} patch images per run from one signed source",
        "unsigned": f"the {cfg.poison} patch images unsigned, default policy "
        f"(`unsigned_policy={default('unsigned_policy')}`)",
    }
    rows = [[f"`{a}`", sent[a], plays[a][2]] for a in plays]
    return markdown_table(["attack", "what is sent", "runs"], rows, ["l", "l", "r"])


def plays_section(cfg: CampaignConfig, world: WorldFacts, campaigns: Iterable[Campaign]) -> list[str]:
    """``## What the campaign plays``: the world, the attacks, what counts as poisoned."""
    draws = trigger_draws(campaigns)
    h, w = world.image_shape[:2]
    return [
        "## What the campaign plays",
        "",
        para(
            "`poisonlab.redteam.campaign`, against in-process services (`create_app`, the real",
            "training worker) driven through the HTTP API with contributor, trainer and admin keys;",
            "signed uploads use registered Ed25519 sources. Per seed, a world is drawn from the",
            f"embedded digits ({h}x{w} images): {pct(POOL_FRACTION)} of each training class is held",
            "back as the outside world's pool (never in the base data, never a gate image), the",
            f"service's base data is the remaining {world.base_size} images, its trusted sets the",
            "untouched validation and test splits",
            f"({span(world.trusted_class_counts, spec='')} images per class); a clean base model is",
            "trained on",
            f"the base data (digits recipe, {cfg.base_epochs} epochs); a target and a source class, a",
            "patch trigger and a blend trigger are drawn (in these campaigns' worlds: patches",
            f"{draws['sizes']}, {draws['kinds']}, in a corner; blend alpha {draws['alphas']}). Each",
            "attack plays against a fresh service serving that model with the default settings",
            f"({default('finetune_epochs')} fine-tuning epochs), except where the table says otherwise:",
            keep_percent=False,
        ),
        "",
        _plays_table(cfg, world),
        "",
        para(
            "The attacks other than `clean` and `retry` send the poison alone: a run then trains, and",
            "reaches the gates, only on what slipped through the door, the caps and the screen. A",
            "promotion is *poisoned* when a poison contribution is `accepted` right after it (it was",
            "in the promoted model's training set); *effective* when the promoted model's attack",
            "success (triggered test images not of the target class, or test images of the source",
            f"class, predicted as the target) is {EFFECTIVE:.2f} or more above the base model's. The",
            "numbers above are the code's (`CampaignConfig`, `poisonlab.redteam.world`,",
            "`ServiceSettings`); the generator checks that every committed record sent and ran what",
            "they say.",
            keep_percent=False,
        ),
        "",
    ]


def _item(number: int, *pieces: str) -> str:
    return para(*pieces, first=f"{number}. ", indent="   ", keep_percent=False)


def _screen_item() -> str:
    """Item 2: the screen, the anchored detector, source distrust, base flags, rollbacks."""
    k, thr = parameter_default(AnchoredKNN, "k"), parameter_default(AnchoredKNN, "threshold")
    screen = ", ".join(f"`{m}`" for m in SCREEN_METHODS)
    anchored = ", ".join(f"`{m}`" for m in ANCHORED_METHODS)
    alone = ", ".join(f"`{m}`" for m in default("defenses")) or "none"
    return _item(
        2,
        "**the screen on every run**, over the base data and every contribution, accepted ones",
        "included, with the serving model and the held-out validation + test splits as the",
        f"trusted set (never a contribution): {screen} vote ({MIN_VOTES} must agree, on a sample",
        "the anchored detector places beyond the typical trusted sample); the trusted-anchored",
        f"detector ({anchored}: k = {k}, {thr:g} robust standard deviations above the trusted",
        "median, its false-positive rate capped at",
        f"`screen_max_fpr` = {default('screen_max_fpr')} by a split-conformal cut-off) flags alone,",
        f"and so do the `defenses` ({alone}). Flagged contributions are quarantined with the",
        "detectors as the reason; a source with at least",
        f"`source_flag_min` = {default('source_flag_min')} flagged contributions making at least",
        f"`source_flag_share` = {pct(default('source_flag_share'))} of what it sent loses the rest",
        "of its contributions too; a flagged base sample is reported (audit entry; `base_flagged`",
        f"alert when more than `base_flag_alert_fraction` = {pct(default('base_flag_alert_fraction'))}",
        "of one class is flagged) and stays in training; a contribution a served model was trained",
        "on that is flagged now is quarantined and the serving model is rolled back to the version",
        "trained without it (`flagged_accepted` alert, `models.rollback` audit entry);",
    )


def _gates_item() -> str:
    """Item 4: the fine-tune and the promotion gates."""
    nc_batch = parameter_default(neural_cleanse, "batch_size")
    nc_index = parameter_default(neural_cleanse, "anomaly_threshold")
    return _item(
        4,
        f"**fine-tune** for `finetune_epochs` = {default('finetune_epochs')} epochs, then the",
        "**gates** (`defenses/gates/promotion.py`), each against the serving model: accuracy (may",
        f"drop `max_accuracy_drop` = {default('max_accuracy_drop')}), canaries",
        f"(`canaries_per_class` = {default('canaries_per_class')}), reverse-engineered triggers",
        f"(Neural Cleanse, `reverse_engineer_steps` = {default('reverse_engineer_steps')} Adam steps",
        f"of {nc_batch} images, all classes at once; a class is flagged when its trigger works at",
        f"least `reverse_engineer_gap` = {default('reverse_engineer_gap')} more often on the",
        f"candidate, or half that with an anomaly index above {nc_index:g}), the fixed-trigger",
        f"sensitivity test (`sensitivity_spike` = {default('sensitivity_spike')}) and per-class",
        f"behaviour shifts (`behaviour_max_shift` = {default('behaviour_max_shift')});",
    )


def pipeline_section() -> list[str]:
    """``## What the pipeline does``: the defended pipeline with its default settings."""
    return [
        "## What the pipeline does",
        "",
        para(
            "`service/pipeline.py`, `service/screening.py`, `service/decisions.py`; the values are",
            "the defaults of `ServiceSettings` and of the detectors and gates:",
            keep_percent=False,
        ),
        "",
        _item(
            1,
            "**volume caps**: one source (its signing source, else its key) may add at most",
            f"`max_source_class_fraction` = {default('max_source_class_fraction')} of a class's",
            "base-data count, all sources together `max_class_contribution_fraction` =",
            f"{default('max_class_contribution_fraction')}; the rest waits in review (`review: volume cap`);",
        ),
        _screen_item(),
        _item(
            3,
            "**no new version without new data**: a run in which no pending contribution survives",
            "ends `skipped`;",
        ),
        _gates_item(),
        _item(
            5,
            "**a rejected run's new contributions stay quarantined** with the failed gates as the",
            "reason; promotion, rejection, quarantine and rollback are each one transaction.",
        ),
        "",
    ]
