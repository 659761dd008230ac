"""``poisonlab craft ATTACK DATASET``: craft clean-label poisons against a saved model.

Writes the poisoned training set (``data.npz``, poison mask included, ready for ``poisonlab
scan``), ``craft.json`` (parameters, the attack's :class:`~poisonlab.attacks.CraftReport`, poison
indices) and ``poisons.png`` (originals, poisons and their amplified difference).

The command only maps options to the attacker's inputs: the attack is built by
:func:`poisonlab.attacks.factory.build_crafted_attack`, which knows from each attack class which
inputs it takes.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from poisonlab.cli._console import make_console
from poisonlab.cli._errors import cli_errors
from poisonlab.cli.options import DATA_DIR_OPT, DEVICE_OPT, SEED_RANGE, THREADS_OPT, use_threads
from poisonlab.cli.scan_cmd import _named, load_scan_data

if TYPE_CHECKING:
    import numpy as np

    from poisonlab.attacks.factory import TriggerChoice
    from poisonlab.data.dataset import Dataset

console = make_console()
_GRID = 16  # poisons shown in poisons.png

#: The crafted attacks and the inputs only some of them take (attack capability flag -> attacks),
#: written out for the help texts: reading them from :data:`poisonlab.attacks.ATTACKS` would import
#: torch for every ``poisonlab --help``. tests/cli/test_startup.py checks them against the registry.
CRAFTED_ATTACKS = (
    "clean_label_backdoor",
    "hidden_trigger",
    "feature_collision",
    "gradient_matching",
    "random_noise",
)
CRAFT_TAKERS = {
    "needs_source_class": ("hidden_trigger",),
    "needs_victims": ("feature_collision", "gradient_matching"),
    "needs_trigger": ("clean_label_backdoor", "hidden_trigger"),
}


def _takers(flag: str) -> str:
    """The crafted attacks with capability ``flag``, for help texts."""
    return " / ".join(CRAFT_TAKERS[flag])


@dataclass
class _Run:
    """What one ``craft`` run loaded and built, for the outputs."""

    data: Dataset
    card: Any
    model_info: dict[str, Any]
    named: tuple[str, str] | None
    target: int
    source: int | None = None
    victims: dict[str, Any] | None = None
    trigger: dict[str, Any] | None = None
    victim_labels: list[dict[str, Any]] = field(default_factory=list)


@cli_errors
def craft_command(
    attack: str = typer.Argument(..., help=f"crafted attack: {', '.join(CRAFTED_ATTACKS)}"),
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
        None,
        "--source",
        "-s",
        help=f"{_takers('needs_source_class')}: class whose triggered images should become --target",
    ),
    count: int | None = typer.Option(None, "--count", "-n", help="number of poisons"),
    fraction: float | None = typer.Option(None, "--fraction", help="poisons as a share of the whole set"),
    eps: float = typer.Option(16.0, "--eps", help="L-inf budget in 1/255 units, in (0, 255]"),
    steps: int | None = typer.Option(None, "--steps", help="optimisation steps (default: the attack's)"),
    victim: list[str] = typer.Option(
        [],
        "--victim",
        help=f"{_takers('needs_victims')}, repeatable: test:N or val:N (of a named DATASET), "
        "an image file, .npz or folder (every image), or PATH:N",
    ),
    patch_size: int | None = typer.Option(
        None, "--patch-size", help=f"{_takers('needs_trigger')}: side of the htbd patch (default 8)"
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
    seed: int = typer.Option(0, "--seed", help="picks the poisons and seeds the optimisation", **SEED_RANGE),
    data_dir: Path | None = DATA_DIR_OPT,
    device: str = DEVICE_OPT,
    threads: int | None = THREADS_OPT,
) -> None:
    """Craft clean-label poisons against a saved model; write the poisoned set for poisonlab scan."""
    import numpy as np

    from poisonlab.attacks.factory import build_crafted_attack
    from poisonlab.cli._craft_inputs import attack_params, check_options

    use_threads(threads)
    uses_patch = patch_size is not None or patch_offset is not None
    given = {
        "source": source is not None,
        "victims": bool(victim),
        "trigger": trigger is not None or uses_patch,
    }
    check_options(attack, eps=eps, steps=steps, count=count, fraction=fraction, given=given)
    if trigger is not None and uses_patch:
        raise ValueError("give either --trigger or --patch-size/--patch-offset, not both")
    extra = attack_params(attack, param) | ({} if steps is None else {"steps": steps})
    run, net, splits = _load(model, dataset, target, source, data_dir)
    victims = _victims(run, victim, splits, dataset) if victim else None
    choice = _trigger(attack, run.data, trigger, patch_size, patch_offset)
    run.trigger = None if choice is None else _json_safe(choice.record)
    attack_obj = build_crafted_attack(
        attack,
        model=net,
        target=run.target,
        count=count,
        fraction=fraction,
        eps=eps / 255.0,
        seed=seed,
        device=device,
        source=run.source,
        victims=victims,
        trigger=None if choice is None else choice.fn,
        trigger_name=None if choice is None else choice.name,
        params=extra,
    )
    _print_notes(run)
    _say(f"crafting {attack} against {run.card.name} on {run.data.name} ({len(run.data)} images)...")
    result = attack_obj.poison(run.data)
    _write_outputs(out, attack, dataset, attack_obj, result, run, eps_px=int(np.floor(eps + 1e-6)))
    _print_summary(result, len(run.data), out, _next_command(out, model, run.named))


# ------------------------------------------------------------------------------------ inputs
def _load(
    model: str, dataset: str, target: str, source: str | None, data_dir: Path | None
) -> tuple[_Run, Any, Any]:
    """The model, the training set (and its splits when named) and the resolved classes."""
    from poisonlab.cli._craft_inputs import resolve_class_option
    from poisonlab.data.catalog import load_named_splits
    from poisonlab.models.checkpoint import check_model_fits
    from poisonlab.models.store import load_model_ref

    net, card, model_path = load_model_ref(model)
    named = _named(dataset)
    splits = None
    if named is not None:
        splits = load_named_splits(named[0], data_dir=data_dir)
        data = getattr(splits, named[1] or "train")
    else:
        data, _ = load_scan_data(
            dataset, None, split="train", data_dir=data_dir, class_names=tuple(card.class_names)
        )
    check_model_fits(card, data)
    run = _Run(
        data=data,
        card=card,
        model_info={"ref": model, "id": card.id, "name": card.name, "path": str(model_path)},
        named=named,
        target=resolve_class_option(data, target, "--target"),
        source=None if source is None else resolve_class_option(data, source, "--source"),
    )
    return run, net, splits


def _victims(run: _Run, specs: list[str], splits: Any, dataset: str) -> np.ndarray:
    from poisonlab.cli._craft_inputs import load_victims

    victims, records = load_victims(
        specs,
        splits=splits,
        dataset=dataset,
        shape=tuple(run.card.input_shape),
        class_names=tuple(run.card.class_names),
    )
    run.victims = {"specs": records, "shape": list(victims.shape)}
    return victims


def _trigger(
    attack: str, data: Dataset, trigger: str | None, patch_size: int | None, patch_offset: int | None
) -> TriggerChoice | None:
    """The trigger of an attack that takes one, tried on one image so a misfit fails before crafting."""
    from poisonlab.attacks.factory import crafted_attack_class, make_trigger
    from poisonlab.cli._craft_inputs import parse_trigger

    if not crafted_attack_class(attack).needs_trigger:
        return None
    size, offset = 8 if patch_size is None else patch_size, 5 if patch_offset is None else patch_offset
    if trigger is None:
        choice = make_trigger(patch_size=size, patch_offset=offset)
    else:
        choice = make_trigger(*parse_trigger(trigger))
    try:
        choice.fn(data.x[:1])
    except ValueError as exc:
        if trigger is not None:
            raise ValueError(f"--trigger {trigger}: {exc}") from None
        h, w = data.image_shape[:2]
        raise ValueError(
            f"--patch-size {size} --patch-offset {offset}: the patch does not fit {h}x{w} images "
            "(e.g. --patch-size 3 --patch-offset 0 for digits)"
        ) from None
    return choice


def _print_notes(run: _Run) -> None:
    target_name = run.data.class_names[run.target]
    for record in (run.victims or {}).get("specs", []):
        if record.get("label") == target_name:
            _say(f"note: victim {record['spec']} is already labelled {record['label']!r}, the target class")
    mask = run.data.poison_mask
    if mask is not None and mask.any():
        _say(f"note: {run.data.name} already marks {int(mask.sum())} poisons; data.npz keeps them marked")


def _say(text: str) -> None:
    console.print(text, soft_wrap=True, markup=False, highlight=False)


# ------------------------------------------------------------------------------------ outputs
def _write_outputs(
    out: Path, attack: str, dataset: str, attack_obj: Any, result: Any, run: _Run, *, eps_px: int
) -> None:
    """data.npz, poisons.png and craft.json under ``out``."""
    from poisonlab.data.arrays import save_arrays

    data, idx = run.data, result.indices_array()
    out.mkdir(parents=True, exist_ok=True)
    data_path = save_arrays(result.dataset, out / "data.npz")
    png = _poison_grid(data.x[idx], result.dataset.x[idx], idx, out / "poisons.png", eps_px=eps_px)
    names = data.class_names
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
        "model": run.model_info,
        "target": {"index": run.target, "name": names[run.target]},
        "source": None if run.source is None else {"index": run.source, "name": names[run.source]},
        "parameters": _parameters_record(attack_obj, run),
        "report": _json_safe(result.report.to_dict()) if result.report is not None else None,
        "poison_indices": [int(i) for i in idx],
        "class_names": list(names),
        "files": {"data": data_path.name, "image_grid": png.name},
    }
    (out / "craft.json").write_text(json.dumps(doc, indent=2) + "\n")


def _json_safe(value: Any) -> Any:
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return {"shape": list(value.shape), "dtype": str(value.dtype)}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def _parameters_record(attack_obj: Any, run: _Run) -> dict[str, Any]:
    """Every constructor field of the attack (defaults included), JSON-safe; the model, victims
    and trigger as the records of where they came from."""
    special = {"model": run.model_info, "victims": run.victims, "trigger": run.trigger}
    out = {
        f.name: special[f.name] if f.name in special else _json_safe(getattr(attack_obj, f.name))
        for f in fields(attack_obj)
    }
    if isinstance(out.get("eps"), float):
        out["eps_255"] = round(out["eps"] * 255.0, 6)
    return out


def _poison_grid(
    originals: np.ndarray, poisons: np.ndarray, indices: np.ndarray, path: Path, *, eps_px: int
) -> Path:
    """PNG: the first up to 16 originals, their poisons and the signed difference amplified
    around mid-grey (128 = unchanged) so that a change of ``eps_px`` (or the largest change, if
    smaller) reaches 0 or 255; a visible trigger beyond the budget saturates."""
    import numpy as np

    from poisonlab.reporting.plots import image_grid_png

    n = min(_GRID, len(poisons))
    o, p = originals[:n], poisons[:n]
    diff = p.astype(np.int16) - o.astype(np.int16)
    peak = max(1, min(int(eps_px), int(np.abs(diff).max(initial=0))))
    gain = 127.0 / peak
    amplified = np.clip(np.rint(128 + diff * gain), 0, 255).astype(np.uint8)
    titles = [f"#{int(i)}" for i in indices[:n]] + ["poison"] * n + [f"diff x{gain:.3g}"] * n
    return image_grid_png(np.concatenate([o, p, amplified]), path, titles=titles, cols=max(n, 1), scale=1.0)


def _next_command(out: Path, model: str, named: tuple[str, str] | None) -> str:
    parts = ["poisonlab", "scan", str(out / "data.npz"), "--model", model]
    if named is not None:
        parts += ["--trusted", f"{named[0]}:val"]
    parts += ["--method", "spectral_signatures", "--method", "activation_clustering"]
    parts += ["--out", str(out / "scan")]
    return " ".join(shlex.quote(p) for p in parts)


def _print_summary(result: Any, n: int, out: Path, next_cmd: str) -> None:
    _say(result.description)
    report = result.report
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
        _say(f"{key:<16} {value}")
