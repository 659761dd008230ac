"""Inputs of ``poisonlab craft``: option checks, ``--param``/``--trigger`` parsing, victim images.

Which attack takes which input is asked of the attack classes (their capability flags, through
:mod:`poisonlab.attacks.factory`); this module only maps inputs to option names.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.attacks.factory import attack_parameters, check_crafted_inputs
from poisonlab.data.catalog import DATASETS, load_dataset_path
from poisonlab.data.dataset import Dataset
from poisonlab.data.images import IMAGE_EXTENSIONS, load_image_file, rgb_to_gray
from poisonlab.defenses.scan import read_scalar

#: the option that sets each crafted-attack input, for messages
INPUT_OPTIONS = {
    "source": "--source",
    "victims": "--victim",
    "trigger": "--trigger/--patch-size/--patch-offset",
}
#: constructor parameters set by dedicated options; ``--param`` may not set them
_OPTION_OF = {
    "model": "--model",
    "target": "--target",
    "count": "--count",
    "fraction": "--fraction",
    "eps": "--eps",
    "steps": "--steps",
    "trigger_name": "--trigger",
    "seed": "--seed",
    "device": "--device",
    **INPUT_OPTIONS,
}
_SPLIT_VICTIM = re.compile(r"^(train|val|test):(.*)$")


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
    params = _key_values(items, "--param")
    fields = attack_parameters(attack)
    free = [f for f in fields if f not in _OPTION_OF]
    for key in params:
        if key in _OPTION_OF and key in fields:
            raise ValueError(f"--param {key}=...: use {_OPTION_OF[key]} to set {key!r} of {attack}")
        if key not in fields:
            raise ValueError(
                f"unknown parameter {key!r} for attack {attack!r}; valid --param keys: {', '.join(free)}"
            )
    return params


def check_options(
    attack: str,
    *,
    eps: float,
    steps: int | None,
    count: int | None,
    fraction: float | None,
    given: dict[str, bool],
) -> None:
    """The checks that need nothing loaded, so a typo fails before the model and data load."""
    check_crafted_inputs(attack, given=given, labels=INPUT_OPTIONS)
    if not 0.0 < eps <= 255.0:
        raise ValueError(f"--eps must be in (0, 255] (1/255 units, e.g. 8 or 16), got {eps:g}")
    if steps is not None and steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    if (count is None) == (fraction is None):
        raise ValueError("give exactly one of --count or --fraction")


def parse_trigger(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME`` or ``NAME:key=value,...`` -> (registry name, overrides)."""
    name, _, rest = text.partition(":")
    return name.strip(), _key_values([rest], "--trigger parameter") if rest else {}


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
