"""What ``poisonlab train --init`` adds to a training run: the parent's dataset and the accuracy check.

A fine-tune that wrecks its parent must not pass silently: the README's Rutan fine-tune, run with
the from-scratch recipe (SGD, peak lr 0.4, 12 epochs) on 27 images, took a CIFAR-10 model from
0.40 to 0.10 test accuracy without a word. So the dataset follows the parent model, the recipe
defaults to the fine-tune one (:func:`poisonlab.training.config.finetune_recipe`), and the
parent's test accuracy is measured on the same test split, recorded beside the child's and
compared with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

#: a fine-tuned model whose test accuracy is more than this below its parent's gets a warning
MAX_ACCURACY_DROP = 0.05


def card_dataset(card: Any) -> str | None:
    """The named dataset a saved model was trained for, from its card; None when it is none of them.

    The card's ``dataset_name`` says it for models trained on a split (``cifar10-train``); a
    fine-tuned model records its fine-tune data there (``rutan``), so the input shape and class
    names decide then.
    """
    from poisonlab.data.catalog import DATASETS
    from poisonlab.data.cifar10 import CIFAR10_CLASSES
    from poisonlab.data.digits import DIGITS_CLASSES

    stem = (card.dataset_name or "").split("-")[0].strip().lower()
    if stem in DATASETS:
        return stem
    shape, classes = tuple(card.input_shape), tuple(card.class_names)
    if shape == (8, 8, 1) and classes == DIGITS_CLASSES:
        return "digits"
    if shape == (32, 32, 3) and classes == CIFAR10_CLASSES:
        return "cifar10"
    return None


def training_dataset(option: str | None, parent: Any | None) -> str:
    """The dataset of a ``train`` run: ``--dataset``, else the parent's (``--init``), else digits.

    Raises
    ------
    ValueError
        ``--dataset`` names another dataset than the parent model's, or the parent's dataset
        cannot be told and ``--dataset`` is missing.
    """
    if parent is None:
        return option or "digits"
    own = card_dataset(parent)
    if option is None:
        if own is None:
            raise ValueError(
                f"cannot tell which dataset model {parent.id} was trained on "
                f"({parent.dataset_name!r}); give --dataset"
            )
        return own
    if own is not None and option.strip().lower().replace("-", "") != own:
        raise ValueError(
            f"--dataset {option} conflicts with --init {parent.id}, a {own} model; "
            "leave --dataset out to fine-tune on the model's own dataset"
        )
    return option


def accuracy_change(parent_acc: float, child_acc: float) -> str:
    """``"+1.2 points"`` / ``"-30.0 points"``: the child's test accuracy minus the parent's."""
    return f"{100 * (child_acc - parent_acc):+.1f} points"


def warn_if_worse(parent_acc: float, child_acc: float, parent_id: str) -> bool:
    """Print a one-line warning to stderr when the child fell more than :data:`MAX_ACCURACY_DROP`."""
    if parent_acc - child_acc <= MAX_ACCURACY_DROP + 1e-9:  # 0.90 - 0.85 is 0.05000000000000004
        return False
    typer.secho(
        f"WARNING: test accuracy fell from {parent_acc:.4f} (parent {parent_id}) to {child_acc:.4f} "
        f"({accuracy_change(parent_acc, child_acc)}): the fine-tune damaged the model; "
        "try fewer --epochs or a lower --lr",
        fg="red",
        bold=True,
        err=True,
    )
    return True


def record_parent_accuracy(model_dir: Path, parent_acc: float) -> Any:
    """Add the parent's test accuracy (same test split) to the new model's card; returns the card."""
    from poisonlab.models.checkpoint import read_card, write_card

    card = read_card(model_dir)
    metrics = {**card.metrics, "parent_test_accuracy": parent_acc}
    child = card.metrics.get("test_accuracy")
    if child is not None:
        metrics["test_accuracy_change"] = child - parent_acc
    card = card.model_copy(update={"metrics": metrics})
    write_card(card, model_dir)
    return card
