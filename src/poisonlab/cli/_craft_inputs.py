"""Input parsing and outputs of ``poisonlab craft``: victims, triggers, ``--param``, the grid."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.data.catalog import DATASETS, load_dataset_path
from poisonlab.data.dataset import Dataset
from poisonlab.data.images import IMAGE_EXTENSIONS, load_image_file, rgb_to_gray
from poisonlab.defenses.scan import read_scalar

#: the optimisation-based attacks of :data:`poisonlab.attacks.ATTACKS` this command runs
CRAFTED = ("hidden_trigger", "feature_collision", "clean_label_backdoor", "gradient_matching")
NEEDS_VICTIMS = ("feature_collision", "gradient_matching")
NEEDS_TRIGGER = ("hidden_trigger", "clean_label_backdoor")
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
def _key_values(items: list[str], what: str) -> dict[str, Any]:
    """``["k=v", "k2=v2,k3=v3"]`` -> dict (comma-separated pairs allowed in one item too)."""
    params: dict[str, Any] = {}
    for text in items:
        for item in filter(None, (p.strip() for p in text.split(","))):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"{what} must look like key=value, got {item!r}")
            params[key.strip()] = read_scalar(key.strip(), value, item)
    return params


def attack_params(attack: str, items: list[str]) -> dict[str, Any]:
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


def resolve_class_option(data: Dataset, value: str, option: str) -> int:
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
def build_trigger(trigger: str | None, patch_size: int, patch_offset: int) -> tuple[Any, str, dict]:
    """(trigger function, its name, a JSON-safe record) for --trigger or the chapter's patch."""
    from poisonlab.attacks import chapter_patch_trigger
    from poisonlab.triggers import get_trigger

    if trigger is None:
        fn = chapter_patch_trigger(patch_size, patch_offset)
        return fn, f"patch{patch_size}", {"kind": "htbd_patch", "size": patch_size, "offset": patch_offset}
    name, _, rest = trigger.partition(":")
    overrides = _key_values([rest], "--trigger parameter") if rest else {}
    fn = get_trigger(name.strip(), **overrides)
    return fn, name.strip(), {"kind": "registry", "name": name.strip(), "params": json_safe(dict(fn.params))}


# ------------------------------------------------------------------------------------ outputs
def json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return {"shape": list(value.shape), "dtype": str(value.dtype)}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def parameters_record(attack_obj: Any, model_info: dict, victims: dict | None, trigger: dict | None) -> dict:
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
            out[f.name] = json_safe(value)
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


def next_command(out: Path, model: str, named: tuple[str, str] | None) -> str:
    parts = ["poisonlab", "scan", str(out / "data.npz"), "--model", model]
    if named is not None:
        parts += ["--trusted", f"{named[0]}:val"]
    parts += ["--method", "spectral_signatures", "--method", "activation_clustering"]
    parts += ["--out", str(out / "scan")]
    return " ".join(shlex.quote(p) for p in parts)


# ------------------------------------------------------------------------------------ command
