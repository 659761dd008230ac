"""``poisonlab train`` and ``evaluate`` (``predict`` is in :mod:`poisonlab.cli.predict_cmd`).

Everything heavy (torch, the data loaders, training) is imported inside the commands, so that
``poisonlab --help`` does not pay for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from poisonlab.cli import _finetune
from poisonlab.cli._console import make_console
from poisonlab.cli._errors import cli_errors
from poisonlab.cli.options import (
    DATA_DIR_OPT,
    DEVICE_OPT,
    MODEL_ARG,
    OVERWRITE_OPT,
    QUIET_OPT,
    SEED_RANGE,
    THREADS_OPT,
    check_precision,
    dataset_name,
    out_option,
    use_threads,
)

console = make_console()


@cli_errors
def train_command(
    out: Path = out_option("folder to write the model to"),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        "-d",
        help="cifar10 or digits (embedded, offline); default: digits, or with --init the model's own",
        callback=dataset_name,
    ),
    data_dir: Path | None = DATA_DIR_OPT,
    config: Path | None = typer.Option(None, "--config", help="training config file (YAML/JSON)"),
    preset: str | None = typer.Option(
        None,
        "--preset",
        help="fast, digits, chapter, chapter-finetune, chapter-fast (the chapter CNN with lookahead, "
        "alternating flips, translations) or airbench (with --arch airbench: whitening, SGD-Nesterov, "
        "lookahead, TTA) (default: the dataset's recipe; with --init chapter-finetune)",
    ),
    arch: str | None = typer.Option(
        None, "--arch", help="simple-cifar10 (the chapter's CNN), airbench or preact-resnet18"
    ),
    epochs: int | None = typer.Option(None, "--epochs", min=1),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1),
    lr: float | None = typer.Option(None, "--lr"),
    seed: int | None = typer.Option(None, "--seed", **SEED_RANGE),
    init: str | None = typer.Option(None, "--init", help="fine-tune this model (path or registry id)"),
    train_data: Path | None = typer.Option(
        None, "--train-data", help="fine-tune on these samples only (image folder, prepared folder, .npz)"
    ),
    label: str | None = typer.Option(None, "--label", help="label for --train-data without labels"),
    name: str | None = typer.Option(None, "--name", help="registry name (default: folder name)"),
    device: str = DEVICE_OPT,
    threads: int | None = THREADS_OPT,
    precision: str | None = typer.Option(
        None, "--precision", help="fp32 (the recipes' default) or bf16 (opt-in; recorded in the model card)"
    ),
    quiet: bool = QUIET_OPT,
    overwrite: bool = OVERWRITE_OPT,
) -> None:
    """Train a model (or fine-tune one with --init), evaluate it on the test split, save and register it.

    With --init the dataset is the model's own and the recipe defaults to the chapter's fine-tune
    (Adam, lr 0.001, batch 64, 10 epochs); the parent is evaluated on the same test split, both
    accuracies go into the new model card, and a drop of more than 5 points prints a warning.
    """
    from poisonlab.data.catalog import load_named_splits
    from poisonlab.models.checkpoint import check_model_fits
    from poisonlab.models.store import load_model_ref
    from poisonlab.provenance import claim_run_dir
    from poisonlab.training.config import resolve_train_config
    from poisonlab.training.save import train_and_save

    use_threads(threads)
    if precision is not None:
        check_precision(precision)
    claim_run_dir(out, overwrite=overwrite)  # a folder holding a run is refused before any loading
    if init is not None and arch is not None:
        raise ValueError("--arch applies to training from scratch; --init keeps the model's architecture")
    parent_net, parent_card = (None, None) if init is None else load_model_ref(init)[:2]
    dataset = _finetune.training_dataset(dataset, parent_card)
    splits = load_named_splits(dataset, data_dir=data_dir)
    cfg = resolve_train_config(
        dataset=dataset,
        config_path=config,
        preset=preset,
        finetune=init is not None,
        arch=arch,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        precision=precision,
    )
    data = _training_data(splits, train_data, label)
    parent_acc = None
    if parent_card is not None:
        check_model_fits(parent_card, splits.train)  # before any training
        parent_acc = _accuracy(parent_net, splits.test, device)
    trained = train_and_save(
        data,
        cfg,
        out,
        val_data=splits.val,
        test_data=splits.test,
        init=parent_net,
        parent_id=None if parent_card is None else parent_card.id,
        name=name,
        device=device,
        progress=not quiet,
        overwrite=overwrite,
    )
    _report(trained, out, parent_card, parent_acc)


def _training_data(splits: Any, train_data: Path | None, label: str | None) -> Any:
    """``--train-data`` at the dataset's image size and channels, else the training split."""
    if train_data is None:
        return splits.train
    from poisonlab.data.catalog import load_dataset_path
    from poisonlab.data.images import rgb_to_gray

    shape = splits.train.image_shape
    data = load_dataset_path(train_data, class_names=splits.class_names, label=label, size=shape[0])
    if data.image_shape[-1] == 3 and shape[-1] == 1:  # photos for a grey model (digits)
        data = data.replace(x=rgb_to_gray(data.x))
    return data


def _accuracy(net: Any, test: Any, device: str) -> float:
    from poisonlab.evaluation import evaluate

    return evaluate(net, test, device=device).accuracy


def _report(trained: Any, out: Path, parent: Any | None, parent_acc: float | None) -> None:
    """The one ``saved ...`` line; with a parent, its accuracy beside the new one (and in the card)."""
    acc = trained.test_accuracy
    line = f"saved [bold]{trained.card.id}[/] to {out} (test accuracy {acc:.4f}"
    if parent is not None and parent_acc is not None:
        _finetune.record_parent_accuracy(out, parent_acc)
        line += f", parent {parent_acc:.4f}: {_finetune.accuracy_change(parent_acc, acc)}"
    console.print(line + f", {trained.result.seconds:.0f}s)", soft_wrap=True)
    if parent is not None and parent_acc is not None:
        _finetune.warn_if_worse(parent_acc, acc, parent.id)


@cli_errors
def evaluate_command(
    model: str = MODEL_ARG,
    out: Path = out_option("report folder"),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        "-d",
        help="cifar10 or digits (default: the model's own dataset, else digits)",
        callback=dataset_name,
    ),
    data_dir: Path | None = DATA_DIR_OPT,
    split: str = typer.Option("test", "--split", help="train, val or test"),
    source: str | None = typer.Option(None, "--source", help="count this class predicted as --target"),
    target: str | None = typer.Option(None, "--target"),
    device: str = DEVICE_OPT,
    threads: int | None = THREADS_OPT,
) -> None:
    """Evaluate a model: accuracy, per-class accuracy, confusion matrix, source->target confusions."""
    from poisonlab.data.catalog import load_named_splits
    from poisonlab.evaluation import evaluate, write_evaluation
    from poisonlab.models.checkpoint import check_model_fits
    from poisonlab.models.store import load_model_ref

    use_threads(threads)
    if split not in ("train", "val", "test"):
        raise ValueError(f"--split must be train, val or test, got {split!r}")
    net, card, path = load_model_ref(model)
    dataset = dataset or _finetune.card_dataset(card) or "digits"
    data = getattr(load_named_splits(dataset, data_dir=data_dir), split)
    check_model_fits(card, data)
    result = evaluate(net, data, source=source, target=target, device=device)
    info = {"id": card.id, "name": card.name, "path": str(path), "arch": card.arch, "parent": card.parent_id}
    paths = write_evaluation(
        result, data, out, title=f"Evaluation of {card.name} on {data.name}", model_info=info
    )
    msg = f"accuracy {result.accuracy:.4f} on {len(data)} images"
    if result.confusion_count is not None:
        msg += f"; {source} predicted as {target}: {result.confusion_count}"
    console.print(msg)
    console.print(f"report: {paths['report_html']}")
