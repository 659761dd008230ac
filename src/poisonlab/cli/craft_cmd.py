"""``poisonlab craft ATTACK DATASET``: craft clean-label poisons against a saved model.

Writes the poisoned training set (``data.npz``, poison mask included, ready for ``poisonlab
scan``), ``craft.json`` (parameters, the attack's :class:`~poisonlab.attacks.CraftReport`, poison
indices) and ``poisons.png`` (originals, poisons and their amplified difference).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import typer

from poisonlab.cli._console import make_console
from poisonlab.cli._craft_inputs import (
    CRAFTED,
    NEEDS_TRIGGER,
    NEEDS_VICTIMS,
    attack_params,
    build_trigger,
    json_safe,
    load_victims,
    next_command,
    parameters_record,
    poison_grid,
    resolve_class_option,
)
from poisonlab.cli._errors import cli_errors
from poisonlab.cli.lab import DATA_DIR_OPT, DEVICE_OPT
from poisonlab.cli.scan_cmd import _named, load_scan_data
from poisonlab.data.catalog import load_splits

console = make_console()


@cli_errors
def craft_command(
    attack: str = typer.Argument(..., help=f"crafted attack: {', '.join(CRAFTED)}"),
    dataset: str = typer.Argument(
        ...,
        help="training set to poison: a dataset name (digits, cifar10, optionally name:split; default "
        "split train) or a path (.npz, image folder, prepared folder)",
    ),
    model: str = typer.Option(
        ..., "--model", "-m", help="surrogate model to craft against: folder or registry id"
    ),
    target: str = typer.Option(
        ..., "--target", "-t", help="attacker's class (name or index); poisons are its images"
    ),
    out: Path = typer.Option(..., "--out", "-o", help="folder for data.npz, craft.json and poisons.png"),
    source: str | None = typer.Option(
        None, "--source", "-s", help="hidden_trigger: class whose triggered images should become --target"
    ),
    count: int | None = typer.Option(None, "--count", "-n", help="number of poisons"),
    fraction: float | None = typer.Option(None, "--fraction", help="poisons as a share of the whole set"),
    eps: float = typer.Option(16.0, "--eps", help="L-inf budget in 1/255 units, in (0, 255]"),
    steps: int | None = typer.Option(None, "--steps", help="optimisation steps (default: the attack's)"),
    victim: list[str] = typer.Option(
        [],
        "--victim",
        help="feature_collision / gradient_matching, repeatable: test:N or val:N (of a named DATASET), "
        "an image file, .npz or folder (every image), or PATH:N",
    ),
    patch_size: int | None = typer.Option(
        None, "--patch-size", help="hidden_trigger / clean_label_backdoor: side of the htbd patch (default 8)"
    ),
    patch_offset: int | None = typer.Option(
        None, "--patch-offset", help="patch distance from the bottom-right corner (default 5)"
    ),
    trigger: str | None = typer.Option(
        None,
        "--trigger",
        help="registry trigger instead of the patch, NAME or NAME:key=value,... (e.g. pattern)",
    ),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="extra attack parameter key=value, repeatable (e.g. lr=0.02, restarts=2)"
    ),
    seed: int = typer.Option(0, "--seed", help="picks the poisons and seeds the optimisation"),
    data_dir: Path | None = DATA_DIR_OPT,
    device: str = DEVICE_OPT,
) -> None:
    """Craft clean-label poisons against a saved model; write the poisoned set for poisonlab scan."""
    from poisonlab.attacks import ATTACKS
    from poisonlab.data.arrays import save_arrays
    from poisonlab.workflows import check_model_fits, load_model_ref

    # ---- options that need nothing loaded
    if attack not in CRAFTED:
        kind = "not a crafted attack" if attack in ATTACKS else "unknown attack"
        raise ValueError(f"{kind} {attack!r}; poisonlab craft runs one of {', '.join(CRAFTED)}")
    if not 0.0 < eps <= 255.0:
        raise ValueError(f"--eps must be in (0, 255] (1/255 units, e.g. 8 or 16), got {eps:g}")
    if steps is not None and steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    if (count is None) == (fraction is None):
        raise ValueError("give exactly one of --count or --fraction")
    if attack in NEEDS_VICTIMS and not victim:
        raise ValueError(
            f"{attack} needs at least one --victim (test:N, val:N, an image file, .npz or folder)"
        )
    if attack not in NEEDS_VICTIMS and victim:
        raise ValueError(f"--victim applies to {' and '.join(NEEDS_VICTIMS)} only, not {attack}")
    if attack == "hidden_trigger" and source is None:
        raise ValueError("hidden_trigger needs --source (the class whose triggered images become --target)")
    if attack != "hidden_trigger" and source is not None:
        raise ValueError(f"--source applies to hidden_trigger only, not {attack}")
    uses_patch = patch_size is not None or patch_offset is not None
    if attack not in NEEDS_TRIGGER and (trigger is not None or uses_patch):
        raise ValueError(
            f"--trigger/--patch-size/--patch-offset apply to {' and '.join(NEEDS_TRIGGER)} only, not {attack}"
        )
    if trigger is not None and uses_patch:
        raise ValueError("give either --trigger or --patch-size/--patch-offset, not both")
    extra = attack_params(attack, param)

    # ---- model and data
    net, card, model_path = load_model_ref(model)
    named = _named(dataset)
    splits = None
    if named is not None:
        splits = load_splits(named[0], data_dir=data_dir)
        data = getattr(splits, named[1] or "train")
    else:
        data, _ = load_scan_data(
            dataset, None, split="train", data_dir=data_dir, class_names=tuple(card.class_names)
        )
    check_model_fits(card, data)
    shape = tuple(card.input_shape)

    params: dict[str, Any] = {
        "model": net,
        "target": resolve_class_option(data, target, "--target"),
        "count": count,
        "fraction": fraction,
        "eps": eps / 255.0,
        "seed": seed,
        "device": device,
    }
    if steps is not None:
        params["steps"] = steps
    victims_info = trigger_info = None
    if attack in NEEDS_VICTIMS:
        victims, records = load_victims(
            victim, splits=splits, dataset=dataset, shape=shape, class_names=tuple(card.class_names)
        )
        params["victims"] = victims
        victims_info = {"specs": records, "shape": list(victims.shape)}
    if attack in NEEDS_TRIGGER:
        fn, trigger_name, trigger_info = build_trigger(
            trigger, 8 if patch_size is None else patch_size, 5 if patch_offset is None else patch_offset
        )
        params.update(trigger=fn, trigger_name=trigger_name)
        try:  # a trigger that does not fit the images fails here, before any crafting
            fn(data.x[:1])
        except ValueError as exc:
            if trigger is not None:
                raise ValueError(f"--trigger {trigger}: {exc}") from None
            h, w = data.image_shape[:2]
            raise ValueError(
                f"--patch-size {trigger_info['size']} --patch-offset {trigger_info['offset']}: the patch "
                f"does not fit {h}x{w} images (e.g. --patch-size 3 --patch-offset 0 for digits)"
            ) from None
    if attack == "hidden_trigger":
        params["source"] = resolve_class_option(data, source, "--source")  # type: ignore[arg-type]
    params.update(extra)
    try:
        attack_obj = ATTACKS[attack](**params)  # type: ignore[call-arg]
    except TypeError as exc:
        raise ValueError(f"bad parameters for attack {attack!r}: {exc}") from None

    # ---- craft and write
    for record in (victims_info or {}).get("specs", []):
        if record.get("label") == data.class_names[params["target"]]:
            console.print(
                f"note: victim {record['spec']} is already labelled {record['label']!r}, the target class",
                soft_wrap=True,
                markup=False,
                highlight=False,
            )
    if data.poison_mask is not None and data.poison_mask.any():
        console.print(
            f"note: {data.name} already marks {int(data.poison_mask.sum())} poisons; "
            "data.npz keeps them marked",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
    console.print(
        f"crafting {attack} against {card.name} on {data.name} ({len(data)} images)...",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )
    result = attack_obj.poison(data)
    report = result.report
    idx = result.indices_array()
    out.mkdir(parents=True, exist_ok=True)
    data_path = save_arrays(result.dataset, out / "data.npz")
    png = poison_grid(
        data.x[idx], result.dataset.x[idx], idx, out / "poisons.png", eps_px=int(np.floor(eps + 1e-6))
    )
    model_info = {"ref": model, "id": card.id, "name": card.name, "path": str(model_path)}
    tgt = params["target"]
    doc = {
        "attack": attack,
        "description": result.description,
        "dataset": {
            "ref": dataset,
            "name": data.name,
            "samples": len(data),
            "image_shape": list(data.image_shape),
            "poisoned_name": result.dataset.name,
        },
        "model": model_info,
        "target": {"index": tgt, "name": data.class_names[tgt]},
        "source": None
        if attack != "hidden_trigger"
        else {"index": params["source"], "name": data.class_names[params["source"]]},
        "parameters": parameters_record(attack_obj, model_info, victims_info, trigger_info),
        "report": json_safe(report.to_dict()) if report is not None else None,
        "poison_indices": [int(i) for i in idx],
        "class_names": list(data.class_names),
        "files": {"data": data_path.name, "image_grid": png.name},
    }
    (out / "craft.json").write_text(json.dumps(doc, indent=2) + "\n")
    _print_summary(result, report, len(data), out, next_command(out, model, named))


def _print_summary(result: Any, report: Any, n: int, out: Path, next_cmd: str) -> None:
    console.print(result.description, soft_wrap=True, markup=False, highlight=False)
    rows = [("poisons", f"{result.num_poison} of {n} ({100 * result.num_poison / max(n, 1):.2f}%)")]
    if report is not None:
        rows += [
            ("seconds", f"{report.seconds:.2f}"),
            ("peak RSS", f"{report.peak_rss_mib:.0f} MiB"),
            ("loss", f"{report.loss_initial:.4g} -> {report.loss_final:.4g} ({report.steps} steps)"),
            ("max Linf", f"{report.max_linf}/255"),
        ]
        adv = report.extras.get("max_linf_adversarial")
        if adv is not None:
            rows.append(("  before trigger", f"{adv}/255"))
    rows += [("wrote", f"{out / 'data.npz'}, craft.json, poisons.png"), ("next", next_cmd)]
    for key, value in rows:
        console.print(f"{key:<16} {value}", soft_wrap=True, markup=False, highlight=False)
