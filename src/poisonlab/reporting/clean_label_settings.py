"""The scaled settings of ``docs/results/clean_label.md``: one bullet per run, then the crafting.

Each bullet reads the run's recorded config and clean figures (sizes, poisons, eps, trials, the
surrogate) and the victim's training recipe (:func:`~.clean_label_setup.victim_training`: the
provenance block, else the config's preset resolved by today's code, said so on the page), and
sets them beside the paper's protocol as we read it (:data:`~.clean_label_setup.PAPER`, printed
as the paper's figures).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from poisonlab.reporting.clean_label_runs import (
    config_path,
    is_placebo,
    label_runs,
    row_eps,
    setting_label,
    unbounded,
)
from poisonlab.reporting.clean_label_setup import (
    PAPER,
    attack_class,
    attack_param,
    dataset_text,
    eps_text,
    first_specs,
    paper_protocol,
    trial_count,
    victim_training,
)
from poisonlab.reporting.prose import and_list, para

__all__ = ["settings_section"]

Run = Mapping[str, Any]

_SETTING_NAMES = {
    "transfer_linear": "transfer learning, white box",
    "transfer_finetune": "end-to-end fine-tuning",
    "scratch": "training from scratch",
}


def _augment_text(augment: Mapping[str, Any] | None) -> str:
    if not augment:
        return "**no augmentation**"
    parts = [f"random crops (padding {augment['crop_padding']})"] if augment.get("crop_padding") else []
    parts += ["flips"] if augment.get("flip") else []
    return " and ".join(parts) or "augmentation"


def _eps_words(eps: float) -> str:
    """``eps 8/255``, or, without a budget, ``**no L-inf budget** (eps 255/255)``."""
    return f"**no L-inf budget** (eps {eps_text(eps)})" if unbounded(eps) else f"eps {eps_text(eps)}"


def _budget(run: Run, images: str) -> str:
    clean, n = run["clean"], trial_count(run)
    return (
        f"{images} {clean['poisons']:,} of them poisons; {_eps_words(run['config']['eps'])}; "
        f"**{n} trial{'s' if n != 1 else ''}**"
    )


def _transfer_paper(run: Run) -> str:
    text, diffs = paper_protocol(run)
    same = "**ours differ**: " + ", ".join(diffs) if diffs else "the fine-tuning set and the budget match"
    return (
        f"The paper's transfer benchmark also {text}, so {same}. What differs: the paper's feature "
        "extractors are ResNet-18 / MobileNetV2 / "
        "VGG11-class networks pre-trained on **CIFAR-100** (classes the victim's task does not share), "
        f"ours is the chapter's small CNN pre-trained on {dataset_text(run)} images of the victim's own "
        "classes; the paper averages far more trials (we did not re-check how many)."
    )


def _extra_rows(run: Run) -> str:
    """Attack rows of a kind already run under another name in this run (the chapter's HTBD)."""
    firsts: dict[str, Mapping[str, Any]] = {}
    extra = []
    for spec in run["config"]["attacks"]:
        first = firsts.setdefault(spec["attack"], spec)
        if first is spec:
            continue
        head = f"`{spec['name']}`, a second `{spec['attack']}` row: "
        if getattr(attack_class(spec["attack"]), "needs_trigger", False):
            extra.append(head + _trigger_row(run, spec))
        else:
            extra.append(head + _param_row(run, spec, first))
    return "; plus " + "; ".join(extra) if extra else ""


def _trigger_row(run: Run, spec: Mapping[str, Any]) -> str:
    """A second backdoor row: its patch and eps, and whether they are the chapter's defaults."""
    from poisonlab.experiments.clean_label.config import PatchSpec

    patch = spec.get("patch") or PatchSpec().model_dump()
    eps = spec.get("eps") or run["config"]["eps"]
    default_eps = {f.name: f.default for f in dataclasses.fields(attack_class(spec["attack"]))}["eps"]
    chapter = (
        " (the attack's and the patch's defaults: the chapter's parameters)"
        if default_eps is not None and abs(eps - default_eps) < 1e-9 and patch == PatchSpec().model_dump()
        else ""
    )
    return (
        f"{patch['size']}x{patch['size']} patch {patch['offset']} px from the bottom-right corner, "
        f"{_eps_words(eps)}{chapter}"
    )


def _param_row(run: Run, spec: Mapping[str, Any], first: Mapping[str, Any]) -> str:
    """A second row without a trigger: the parameters (and eps) it changes against the first."""
    mine, theirs = spec.get("params") or {}, first.get("params") or {}
    keys = [k for k in dict.fromkeys([*mine, *theirs]) if mine.get(k) != theirs.get(k)]
    diffs = [f"{k} {mine.get(k)} ({first['name']}: {theirs.get(k)})" for k in keys]
    if row_eps(run, spec) != row_eps(run, first):
        diffs.append(f"{_eps_words(row_eps(run, spec))} ({first['name']}: {eps_text(row_eps(run, first))})")
    return ", ".join(diffs) or f"the same parameters as {first['name']}"


def _recipe(run: Run) -> tuple[str, bool]:
    train, _ = victim_training(run)
    text = (
        f"{train['epochs']} epochs, {train['optimizer'].upper()} lr {train['lr']:g}, "
        f"batch {train['batch_size']}, "
        f"{_augment_text(train.get('augment'))}, label smoothing {train['label_smoothing']:g}"
    )
    return text, bool(train.get("augment"))


def _scratch_bullet(run: Run, head: str) -> str:
    clean, (recipe, _) = run["clean"], _recipe(run)
    share = clean["train_size"] / PAPER["scratch_train"]
    images = (
        f"**{clean['train_size']:,}** images (the paper, as we read it: all {PAPER['scratch_train']:,} "
        "with a "
        f"{100 * PAPER['budget']:g} % budget; ours is {100 * share:.0f} % of that set),"
    )
    return para(
        head,
        f"the victim trains the CNN from scratch ({recipe}) on {_budget(run, images)}; the attacker crafts",
        "against a model trained on the same clean images. The clean model reaches",
        f"{clean['victim_accuracy']:.3f} on the {clean['eval_size']:,} evaluation images.",
        indent="  ",
    )


def _surrogate_per_seed(run: Run) -> str:
    """A pooled run's surrogates: each seed pre-trained its own (and drew its own trials)."""
    per_seed = run["clean_per_seed"]
    seeds = sorted(per_seed, key=int)
    accuracy = ", ".join(f"{per_seed[s]['surrogate_accuracy']:.3f}" for s in seeds)
    victims = ", ".join(f"{per_seed[s]['victim_accuracy']:.3f}" for s in seeds)
    return (
        f"each of the {len(seeds)} seeds ({', '.join(seeds)}) pre-trains its own surrogate, the chapter "
        f"CNN on {run['config']['pretrain_size']:,} {dataset_text(run)} images (accuracy {accuracy} on "
        f"{run['clean']['eval_size']:,} evaluation images; the clean victims {victims}), and draws its "
        "own trials"
    )


def _setting_bullet(run: Run, first_transfer: Run | None) -> str:
    cfg, clean, setting = run["config"], run["clean"], run["config"]["setting"]
    head = f'- `{setting_label(run)}` ("{_SETTING_NAMES.get(setting, setting)}"):'
    if is_placebo(run):
        head = (
            f'- `{setting_label(run)}` ("{_SETTING_NAMES.get(setting, setting)}"; the placebo control of '
            f"`{setting}`, config `{config_path(run)}`: no attack, a random perturbation of as many "
            "images inside the same eps):"
        )
    elif setting_label(run) != setting:
        head = (
            f'- `{setting_label(run)}` ("{_SETTING_NAMES.get(setting, setting)}"; another `{setting}` '
            f"run, config `{config_path(run)}`, whose recorded description says what it runs):"
        )
    if setting == "scratch":
        return _scratch_bullet(run, head)
    surrogate = (
        f"the chapter CNN pre-trained on {cfg['pretrain_size']:,} {dataset_text(run)} images is the "
        "surrogate "
        f"(`{clean['surrogate_id']}`, accuracy {clean['surrogate_accuracy']:.3f} on {clean['eval_size']:,} "
        "evaluation images)"
    )
    if first_transfer is not None and first_transfer["clean"]["surrogate_id"] == clean["surrogate_id"]:
        surrogate = f"the same surrogate (`{clean['surrogate_id']}`)"
    if len(run.get("clean_per_seed") or {}) > 1:
        surrogate = _surrogate_per_seed(run)
    images = f"{clean['train_size']:,} other training images,"
    if setting == "transfer_linear":
        lin = cfg.get("linear") or {}
        victim = (
            "the victim refits **only the last layer** (logistic regression, "
            f"C = {lin.get('c', 1.0):g}, at most "
            f"{lin.get('max_iter')} iterations) on {_budget(run, images)}"
        )
        aug = ""
    else:
        recipe, augmented = _recipe(run)
        victim = f"the victim fine-tunes **the whole model** ({recipe}) on {_budget(run, images)}"
        aug = (
            ""
            if augmented
            else "The paper's victims train with augmentation (random crops and flips, as we read it); "
            "ours do not."
        )
    paper = _transfer_paper(run) if first_transfer is None else ""
    return para(head, f"{surrogate}; {victim}{_extra_rows(run)}.", aug, paper, indent="  ")


def _craft_text(runs: Sequence[Run], kind: str, spec: Mapping[str, Any]) -> str:
    steps, _ = attack_param(spec, "steps")
    name = spec["name"]
    if kind == "feature_collision":
        mark, _ = attack_param(spec, "watermark")
        return f"{name} {steps} forward-backward steps " + (
            "without watermark" if mark is None else f"watermark {mark:g}"
        )
    if kind == "clean_label_backdoor":
        return f"{name} {steps} PGD steps"
    if kind == "hidden_trigger":
        pool, code = attack_param(spec, "max_sources")
        default = ", the code default" if code else ""
        return f"{name} {steps} Adam steps ({pool:,} patched sources sampled{default})"
    if kind == "random_noise":
        dist, _ = attack_param(spec, "distribution")
        return f"{name} no optimisation (one random `{dist}` perturbation per poison)"
    if kind == "gradient_matching":
        restarts, _ = attack_param(spec, "restarts")
        crafts = [r["craft"] for run in runs for r in run["trials"] if r["kind"] == kind and r.get("craft")]
        aug = " and differentiable crop+flip" if any(c.get("augment") for c in crafts) else ""
        plural = "s" if restarts != 1 else ""
        paper = PAPER["wb_restarts"]
        return f"{name} {steps} steps with **{restarts} restart{plural}** (the paper: {paper}){aug}"
    return f"{name} {steps} steps"


def _crafted_specs(runs: Sequence[Run]) -> list[tuple[str, Mapping[str, Any]]]:
    """The first row of each kind, then every row whose parameters differ from those listed."""
    specs = list(first_specs(runs).items())
    for run in runs:
        for spec in run["config"]["attacks"]:
            key = (spec["attack"], spec.get("params") or {})
            if all((k, s.get("params") or {}) != key for k, s in specs):
                specs.append((spec["attack"], spec))
    return specs


def _crafting_bullet(runs: Sequence[Run]) -> str:
    parts = [_craft_text(runs, kind, spec) for kind, spec in _crafted_specs(runs)]
    patches: dict[tuple[int, int], list[str]] = {}
    for run in runs:
        for s in run["config"]["attacks"]:
            if getattr(attack_class(s["attack"]), "needs_trigger", False) and s.get("patch"):
                names = patches.setdefault((s["patch"]["size"], s["patch"]["offset"]), [])
                names += [] if s["name"] in names else [s["name"]]
    patch = "; ".join(
        f"{a}x{a}, {b} px from the bottom-right corner ({', '.join(n)})" for (a, b), n in patches.items()
    )
    return para(
        f"- Crafting: {'; '.join(parts)}. Backdoor patches: the shipped `htbd.png` checker, {patch}",
        f"(the paper places a {PAPER['patch']}x{PAPER['patch']} patch at random).",
        indent="  ",
    )


def settings_section(runs: Sequence[Run]) -> list[str]:
    """``**Scaled settings**``: one bullet per run, the crafting, the published averages."""
    runs = label_runs(runs)
    bullets, first = [], None
    for run in runs:
        transfer = run["config"]["setting"].startswith("transfer")
        bullets.append(_setting_bullet(run, first if transfer else None))
        first = run if first is None and transfer else first
    published = para(
        "- *Published avg* is the paper's average over its architectures for the setting family (white",
        "box transfer for both of our transfer settings), not its figure for our architecture, which",
        "the paper does not have.",
        indent="  ",
    )
    folders = dict.fromkeys(config_path(run).rpartition("/")[0] + "/" for run in runs)
    lines = [
        para(
            f"**Scaled settings** (configs in {' and '.join(f'`{f}`' for f in folders)}; the differences",
            "to the paper are the point of this paragraph):",
        ),
        "",
        *bullets,
        _crafting_bullet(runs),
        published,
    ]
    lines += _recipe_note(runs)
    return lines


def _recipe_note(runs: Sequence[Run]) -> list[str]:
    """Which runs' recipes are resolved by today's code (no provenance block recorded them)."""
    todays = [run for run in runs if not victim_training(run)[1]]
    if not todays:
        return []
    if len(todays) == len(runs):
        which, whose = "The victims' training recipes above are", "the committed `results.json` predate"
    else:
        listed = and_list([f"`{setting_label(run)}`" for run in todays])
        which, whose = (
            f"The training recipes of the {listed} victims above are",
            "their `results.json` predate",
        )
    return [
        "",
        para(
            f"{which} the recorded config's preset resolved by today's code: {whose} the provenance",
            "block that records the resolved recipe.",
        ),
    ]
