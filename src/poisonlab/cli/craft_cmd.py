"""``poisonlab craft ATTACK DATASET``: craft clean-label poisons against a saved model.

Writes the poisoned training set (``data.npz``, poison mask included, ready for ``poisonlab
scan``), ``craft.json`` (parameters, the attack's :class:`~poisonlab.attacks.CraftReport`, poison
indices) and ``poisons.png`` (originals, poisons and their amplified difference).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import typer
import yaml

from poisonlab.cli._console import make_console
from poisonlab.cli._errors import cli_errors
from poisonlab.cli.lab import DATA_DIR_OPT, DEVICE_OPT
from poisonlab.cli.scan_cmd import _named, load_scan_data
from poisonlab.data.catalog import DATASETS, load_dataset_path, load_splits
from poisonlab.data.dataset import Dataset
from poisonlab.data.images import IMAGE_EXTENSIONS, load_image_file, rgb_to_gray

console = make_console()

#: the optimisation-based attacks of :data:`poisonlab.attacks.ATTACKS` this command runs
CRAFTED = ("hidden_trigger", "feature_collision", "clean_label_backdoor", "gradient_matching")
_NEEDS_VICTIMS = ("feature_collision", "gradient_matching")
_NEEDS_TRIGGER = ("hidden_trigger", "clean_label_backdoor")
#: constructor parameters set by dedicated options; ``--param`` may not set them
_OPTION_OF = {
    "model": "--model",
    "target": "--target",
    "source": "--source",
    "count": "--count",
    "fraction": "--fraction",
    "eps": "--eps",
    "steps": "--steps",
    "victims": "--victim",
    "trigger": "--trigger/--patch-size",
    "trigger_name": "--trigger",
    "seed": "--seed",
    "device": "--device",
}
_SPLIT_VICTIM = re.compile(r"^(train|val|test):(.*)$")
_GRID = 16  # poisons shown in poisons.png


# ------------------------------------------------------------------------------------ parsing
def _yaml_value(key: str, value: str, where: str) -> Any:
    """A ``key=value`` value read like ``poisonlab scan --method`` (YAML scalars), plus ``None``
    and exponent floats without a dot (``1e-3``), which YAML 1.1 would keep as strings."""
    if value.strip() in ("None", "none"):
        return None
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ValueError(f"cannot read the value of {key!r} in {where!r}: {exc}") from None
    if isinstance(parsed, str):
        for cast in (int, float):
            try:
                return cast(parsed)
            except ValueError:
                pass
    return parsed


def _key_values(items: list[str], what: str) -> dict[str, Any]:
    """``["k=v", "k2=v2,k3=v3"]`` -> dict (comma-separated pairs allowed in one item too)."""
    params: dict[str, Any] = {}
    for text in items:
        for item in filter(None, (p.strip() for p in text.split(","))):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"{what} must look like key=value, got {item!r}")
            params[key.strip()] = _yaml_value(key.strip(), value, item)
    return params


def _attack_params(attack: str, items: list[str]) -> dict[str, Any]:
    """``--param`` values, checked against the attack's constructor."""
    from poisonlab.attacks import ATTACKS

    params = _key_values(items, "--param")
    fields = [f.name for f in dataclasses.fields(ATTACKS[attack]) if f.init]  # type: ignore[arg-type]
    free = [f for f in fields if f not in _OPTION_OF]
    for key in params:
        if key in _OPTION_OF and key in fields:
            raise ValueError(f"--param {key}=...: use {_OPTION_OF[key]} to set {key!r} of {attack}")
        if key not in fields:
            raise ValueError(
                f"unknown parameter {key!r} for attack {attack!r}; valid --param keys: {', '.join(free)}"
            )
    return params


def _resolve_class(data: Dataset, value: str, option: str) -> int:
    try:
        return data.class_index(value)
    except ValueError as exc:
        raise ValueError(f"{option}: {exc}") from None


# ------------------------------------------------------------------------------------ victims
def _images_for_model(x: np.ndarray, shape: tuple[int, int, int], what: str) -> np.ndarray:
    if shape[2] == 1 and x.shape[-1] == 3:
        x = rgb_to_gray(x)
    if tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(
            f"{what}: the model expects images {tuple(shape)} (H, W, C), got {tuple(x.shape[1:])}"
        )
    return x


def _index(images: np.ndarray, index: str, what: str) -> np.ndarray:
    try:
        i = int(index)
    except ValueError:
        raise ValueError(f"--victim {what}: the index must be an integer, got {index!r}") from None
    if not 0 <= i < len(images):
        raise ValueError(f"--victim {what}: index {i} out of range [0, {len(images) - 1}]")
    return images[i : i + 1]


def _victim_file(path: Path, shape: tuple[int, int, int], class_names: tuple[str, ...]) -> np.ndarray:
    """Images of an image file, .npz/.npy or folder, at the model's input size and channels."""
    h, w, _ = shape
    if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
        if h != w:
            raise ValueError(
                f"--victim {path}: image files need a square-input model, this one takes {h}x{w}"
            )
        x = load_image_file(path, size=h)[None]
    else:
        # label 0: a victim's label is never used; it only lets label-less files and flat folders load
        x = load_dataset_path(path, class_names=class_names, label=0, size=h).x
    return _images_for_model(x, shape, f"--victim {path}")


def load_victims(
    specs: list[str], *, splits: Any, dataset: str, shape: tuple[int, int, int], class_names: tuple[str, ...]
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Victim images (M, H, W, C) uint8 for ``--victim`` specs, and a JSON-safe record of each.

    A spec is ``SPLIT:INDEX`` (a split of the named DATASET), ``PATH`` (image file, .npz/.npy,
    folder: every image in it) or ``PATH:INDEX`` (one image of an .npz/.npy/folder).
    """
    batches, records = [], []
    for spec in specs:
        m = _SPLIT_VICTIM.match(spec)
        if m and not Path(spec).exists():
            if splits is None:
                raise ValueError(
                    f"--victim {spec}: SPLIT:INDEX needs a named DATASET ({', '.join(DATASETS)}); "
                    f"{dataset!r} is a path, so give the victim as an image file, .npz or folder"
                )
            split = getattr(splits, m.group(1))
            x = _index(split.x, m.group(2), f"{spec} ({split.name}, {len(split)} images)")
            x = _images_for_model(x, shape, f"--victim {spec}")
            label = split.class_names[int(split.y[int(m.group(2))])]
            records.append({"spec": spec, "count": 1, "label": label})
        else:
            path, index = Path(spec), None
            head, sep, tail = spec.rpartition(":")
            if not path.exists() and sep and Path(head).exists():
                path, index = Path(head), tail
            if not path.exists():
                raise FileNotFoundError(
                    f"--victim {spec}: no such file or folder "
                    "(expected test:N, val:N, an image file, .npz or folder)"
                )
            x = _victim_file(path, shape, class_names)
            if index is not None:
                x = _index(x, index, f"{spec} ({len(x)} images)")
            records.append({"spec": spec, "count": int(len(x))})
        batches.append(x)
    return np.concatenate(batches), records


# ------------------------------------------------------------------------------------ triggers
def _build_trigger(trigger: str | None, patch_size: int, patch_offset: int) -> tuple[Any, str, dict]:
    """(trigger function, its name, a JSON-safe record) for --trigger or the chapter's patch."""
    from poisonlab.attacks import chapter_patch_trigger
    from poisonlab.triggers import get_trigger

    if trigger is None:
        fn = chapter_patch_trigger(patch_size, patch_offset)
        return fn, f"patch{patch_size}", {"kind": "htbd_patch", "size": patch_size, "offset": patch_offset}
    name, _, rest = trigger.partition(":")
    overrides = _key_values([rest], "--trigger parameter") if rest else {}
    fn = get_trigger(name.strip(), **overrides)
    return fn, name.strip(), {"kind": "registry", "name": name.strip(), "params": _json_safe(dict(fn.params))}


# ------------------------------------------------------------------------------------ outputs
def _json_safe(value: Any) -> Any:
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


def _parameters(attack_obj: Any, model_info: dict, victims: dict | None, trigger: dict | None) -> dict:
    """Every constructor field of the attack (defaults included), JSON-safe."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(attack_obj):
        value = getattr(attack_obj, f.name)
        if f.name == "model":
            out["model"] = model_info
        elif f.name == "victims":
            out["victims"] = victims
        elif f.name == "trigger":
            out["trigger"] = trigger
        else:
            out[f.name] = _json_safe(value)
    if "eps" in out and isinstance(out["eps"], float):
        out["eps_255"] = round(out["eps"] * 255.0, 6)
    return out


def poison_grid(
    originals: np.ndarray, poisons: np.ndarray, indices: np.ndarray, path: Path, *, eps_px: int
) -> Path:
    """PNG: the first up to 16 originals, their poisons and the signed difference amplified
    around mid-grey (128 = unchanged) so that a change of ``eps_px`` (or the largest change, if
    smaller) reaches 0 or 255; a visible trigger beyond the budget saturates."""
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


# ------------------------------------------------------------------------------------ command
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
    if attack in _NEEDS_VICTIMS and not victim:
        raise ValueError(
            f"{attack} needs at least one --victim (test:N, val:N, an image file, .npz or folder)"
        )
    if attack not in _NEEDS_VICTIMS and victim:
        raise ValueError(f"--victim applies to {' and '.join(_NEEDS_VICTIMS)} only, not {attack}")
    if attack == "hidden_trigger" and source is None:
        raise ValueError("hidden_trigger needs --source (the class whose triggered images become --target)")
    if attack != "hidden_trigger" and source is not None:
        raise ValueError(f"--source applies to hidden_trigger only, not {attack}")
    uses_patch = patch_size is not None or patch_offset is not None
    if attack not in _NEEDS_TRIGGER and (trigger is not None or uses_patch):
        raise ValueError(
            "--trigger/--patch-size/--patch-offset apply to "
            f"{' and '.join(_NEEDS_TRIGGER)} only, not {attack}"
        )
    if trigger is not None and uses_patch:
        raise ValueError("give either --trigger or --patch-size/--patch-offset, not both")
    extra = _attack_params(attack, param)

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
        "target": _resolve_class(data, target, "--target"),
        "count": count,
        "fraction": fraction,
        "eps": eps / 255.0,
        "seed": seed,
        "device": device,
    }
    if steps is not None:
        params["steps"] = steps
    victims_info = trigger_info = None
    if attack in _NEEDS_VICTIMS:
        victims, records = load_victims(
            victim, splits=splits, dataset=dataset, shape=shape, class_names=tuple(card.class_names)
        )
        params["victims"] = victims
        victims_info = {"specs": records, "shape": list(victims.shape)}
    if attack in _NEEDS_TRIGGER:
        fn, trigger_name, trigger_info = _build_trigger(
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
        params["source"] = _resolve_class(data, source, "--source")  # type: ignore[arg-type]
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
        "parameters": _parameters(attack_obj, model_info, victims_info, trigger_info),
        "report": _json_safe(report.to_dict()) if report is not None else None,
        "poison_indices": [int(i) for i in idx],
        "class_names": list(data.class_names),
        "files": {"data": data_path.name, "image_grid": png.name},
    }
    (out / "craft.json").write_text(json.dumps(doc, indent=2) + "\n")
    _print_summary(result, report, len(data), out, _next_command(out, model, named))


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
