"""Which run is which on ``docs/results/clean_label.md``: labels, configs, budgets, seeds.

Several runs may share a setting (the three scaled settings, and a side run such as the
chapter's feature collision in ``transfer_linear``). :func:`label_runs` gives each run the label
the page prints: the setting's name for its first run, ``setting (config name)`` for a later run
of the same setting, ``setting (placebo)`` for a placebo run (:func:`is_placebo`: every attack row
is a random perturbation, the control of the crafted attacks), so no two table rows or prose
mentions read alike.
:func:`named_settings` lists runs in prose without repeating a setting. :func:`config_path` says
which committed config a run came from: the command the run recorded, else a known name, else an
error (a wrong path on the page would send a reader to the wrong experiment).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "KNOWN_CONFIGS",
    "PLACEBO_KINDS",
    "config_path",
    "is_placebo",
    "label_runs",
    "largest_change",
    "named_settings",
    "placebo_row",
    "recorded_config",
    "row_eps",
    "seeds_of",
    "setting_label",
    "unbounded",
]

Run = Mapping[str, Any]

#: The committed config of each committed run that recorded no command (run name -> path).
KNOWN_CONFIGS = {
    "clean-label-transfer-linear-cifar10": "experiments/clean_label/transfer-linear-cifar10.yaml",
    "clean-label-transfer-finetune-cifar10": "experiments/clean_label/transfer-finetune-cifar10.yaml",
    "clean-label-scratch-cifar10": "experiments/clean_label/scratch-cifar10.yaml",
    "feature-collision-chapter": "experiments/chapter/feature-collision-chapter.yaml",
    "clean-label-transfer-finetune-placebo": "experiments/clean_label/transfer-finetune-placebo.yaml",
}


#: Attack kinds that are controls, not attacks: the same images and eps ball as a crafted attack,
#: a random perturbation in no chosen direction (:class:`~poisonlab.attacks.random_noise.RandomNoise`).
PLACEBO_KINDS = ("random_noise",)


def placebo_row(row: Mapping[str, Any]) -> bool:
    """Whether an attack row (a config spec or a trial row) is a placebo, not a crafted attack."""
    return (row.get("kind") or row.get("attack")) in PLACEBO_KINDS


def is_placebo(run: Run) -> bool:
    """Whether every attack row of the run is a placebo (:data:`PLACEBO_KINDS`): the run is the
    control of the crafted attacks of its setting, none of its rows an attack."""
    specs = run["config"].get("attacks") or []
    return bool(specs) and all(placebo_row(spec) for spec in specs)


def label_runs(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Shallow copies of ``runs`` with a ``label`` each, in order (idempotent).

    The first run of a setting is labelled by the setting alone; a later run of the same setting
    by ``setting (its config name)`` (and its position, should that name repeat too). A placebo
    run (:func:`is_placebo`) is ``setting (placebo)`` wherever it stands, so the control never
    reads as the setting's attacks.
    """
    out, seen, used = [], set(), set()
    for i, run in enumerate(runs):
        setting = run["config"]["setting"]
        if is_placebo(run):
            label = f"{setting} (placebo)"
        else:
            label = setting if setting not in seen else f"{setting} ({run['config']['name']})"
            seen.add(setting)
        if label in used:
            label = f"{setting} ({run['config']['name']}, run {i + 1})"
        used.add(label)
        out.append({**run, "label": label})
    return out


def setting_label(run: Run) -> str:
    """The run's label (:func:`label_runs`), else its setting."""
    return run.get("label") or run["config"]["setting"]


def named_settings(chosen: Sequence[Run], runs: Sequence[Run]) -> list[str]:
    """Backticked names for a prose list of the ``chosen`` runs among ``runs``, in page order.

    A setting all of whose runs are chosen is named once, by the setting; otherwise each chosen
    run by its label. No name repeats.
    """
    picked = {id(run) for run in chosen}
    names: list[str] = []
    for run in runs:
        if id(run) not in picked:
            continue
        setting = run["config"]["setting"]
        same = [r for r in runs if r["config"]["setting"] == setting]
        name = setting if all(id(r) in picked for r in same) else setting_label(run)
        names += [] if f"`{name}`" in names else [f"`{name}`"]
    return names


def _command(run: Run) -> tuple[list[str], str]:
    """The command line the run recorded (provenance block first) and its working directory."""
    for record in (run.get("provenance") or {}, run):
        command = record.get("command") or record.get("command_line")
        if command:
            words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
            return words, str(record.get("cwd") or "")
    return [], ""


def recorded_config(run: Run) -> str | None:
    """The config named by the run's recorded ``clean-label CONFIG`` command, relative to its
    working directory; None without a recorded command."""
    words, cwd = _command(run)
    if "clean-label" not in words:
        return None
    rest = [w for w in words[words.index("clean-label") + 1 :] if not w.startswith("-")]
    if not rest:
        return None
    return rest[0].removeprefix(cwd.rstrip("/") + "/") if cwd else rest[0]


def config_path(run: Run) -> str:
    """The committed config a run came from (for the page's reproduce block).

    Raises
    ------
    ValueError
        The run recorded no command and its name is not in :data:`KNOWN_CONFIGS`.
    """
    recorded = recorded_config(run)
    if recorded:
        return recorded
    name = run["config"]["name"]
    if name not in KNOWN_CONFIGS:
        raise ValueError(
            f"run {name!r} recorded no command and is not a known run: add its config to "
            "poisonlab.reporting.clean_label_runs.KNOWN_CONFIGS"
        )
    return KNOWN_CONFIGS[name]


def unbounded(eps: float) -> bool:
    """Whether ``eps`` sets no L-inf budget (255/255: only the [0, 1] pixel range bounds a change)."""
    return eps >= 1.0 - 1e-9


def row_eps(run: Run, spec: Mapping[str, Any]) -> float:
    """An attack row's eps: its own, else the run's."""
    return float(spec.get("eps") or run["config"]["eps"])


def largest_change(run: Run, name: str) -> int | None:
    """The largest L-inf change (of 255) of a stored poison of one attack row; None if unrecorded."""
    values = [
        r["craft"]["max_linf"]
        for r in run["trials"]
        if r["attack"] == name and (r.get("craft") or {}).get("max_linf") is not None
    ]
    return max(values) if values else None


def seeds_of(run: Run) -> list[int]:
    """The seeds a run's trials came from (pooled rows carry theirs; else the config's)."""
    pooled = sorted({int(r["seed"]) for r in run["trials"] if "seed" in r})
    return pooled or [int(run["config"].get("seed", 0))]
