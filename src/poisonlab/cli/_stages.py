"""Stage headers of the long commands (run, matrix, demo, clean-label, bench detection).

A run that trains several models printed nothing but ``epoch N/M`` lines, model after model, so a
reader could not tell the clean baseline from the poisoned model, nor how long to wait. Each stage
now starts with one ``==> ...`` line on stderr (where the progress bars and epoch lines go, so the
order holds) naming it and, where it was measured, its expected duration on the 2-core
development machine (:func:`poisonlab.training.config.estimate_train_seconds`).
"""

from __future__ import annotations

from typing import Any

import typer


def duration(seconds: float | None) -> str:
    """``" (~13 min on 2 idle cores)"``, as measured on the development machine (a busy machine or
    ``POISONLAB_THREADS=1`` takes longer); empty when the duration is unknown."""
    if seconds is None:
        return ""
    if seconds < 90:
        text = f"~{max(1, round(seconds))} s"
    elif seconds < 90 * 60:
        text = f"~{round(seconds / 60)} min"
    else:
        text = f"~{seconds / 3600:.1f} h"
    return f" ({text} on 2 idle cores)"


def stage(text: str) -> None:
    """Print one stage header on stderr."""
    typer.secho(f"==> {text}", bold=True, err=True)


def train_time(config: Any, data: Any, arch: str | None = None) -> str:
    """:func:`duration` of training ``config`` on dataset ``data``."""
    from poisonlab.training.config import estimate_train_seconds

    return duration(estimate_train_seconds(config, len(data), data.image_shape[0], arch))


def baseline_is_cached(train: Any, config: Any) -> bool:
    """Whether the model trained from scratch on ``train`` with ``config`` is in the cache
    (:mod:`poisonlab.experiments.common.cache`), so the header can say so before it loads."""
    from poisonlab.experiments.common.cache import baseline_key
    from poisonlab.models.store import poisonlab_home

    return (poisonlab_home() / "baselines" / baseline_key(train, config) / "model.json").is_file()


def ensure_baseline(
    splits: Any, config: Any, *, name: str | None, device: str, progress: bool, what: str = "clean baseline"
) -> None:
    """Train (or find in the cache) the model a runner is about to ask the cache for, under its
    own header, so that the runner's later stages are not hidden behind its epoch lines.

    ``name`` is the registry name the runner would give it (None: the clean baseline's).
    """
    from poisonlab.experiments.common.cache import cached_model, clean_baseline

    if not baseline_is_cached(splits.train, config):
        stage(f"training the {what} on {len(splits.train)} images{train_time(config, splits.train)}")
    if name is None:
        _, model_id, _, cached = clean_baseline(splits, config, device=device, progress=progress)
    else:
        _, model_id, _, cached = cached_model(splits, config, device=device, progress=progress, name=name)
    if cached:
        stage(f"{what} loaded from cache ({model_id})")
