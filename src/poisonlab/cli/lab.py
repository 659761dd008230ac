"""``poisonlab train``, ``evaluate`` and ``predict``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from poisonlab.cli._console import make_console
from poisonlab.cli._errors import cli_errors
from poisonlab.cli.options import (
    DATA_DIR_OPT,
    DATASET_OPT,
    DEVICE_OPT,
    MODEL_ARG,
    PRECISION_OPT,
    QUIET_OPT,
    THREADS_OPT,
    check_precision,
    out_option,
    use_threads,
)
from poisonlab.data.catalog import load_dataset_path, load_splits
from poisonlab.data.dataset import Dataset, Splits
from poisonlab.data.images import load_image_file, rgb_to_gray
from poisonlab.evaluation import evaluate, write_evaluation
from poisonlab.inference import forward_pass
from poisonlab.models.base import PoisonlabModel
from poisonlab.models.checkpoint import check_model_fits
from poisonlab.models.store import load_model_ref
from poisonlab.training.config import resolve_train_config
from poisonlab.training.save import train_and_save

console = make_console()


@cli_errors
def train_command(
    out: Path = out_option("folder to write the model to"),
    dataset: str = DATASET_OPT,
    data_dir: Path | None = DATA_DIR_OPT,
    config: Path | None = typer.Option(None, "--config", help="training config file (YAML/JSON)"),
    preset: str | None = typer.Option(None, "--preset", help="fast, digits, chapter or chapter-finetune"),
    arch: str | None = typer.Option(None, "--arch", help="simple-cifar10 or preact-resnet18"),
    epochs: int | None = typer.Option(None, "--epochs", min=1),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1),
    lr: float | None = typer.Option(None, "--lr"),
    seed: int | None = typer.Option(None, "--seed"),
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
) -> None:
    """Train a model (or fine-tune one with --init), evaluate it on the test split, save and register it."""
    use_threads(threads)
    if precision is not None:
        check_precision(precision)
    splits = load_splits(dataset, data_dir=data_dir)
    cfg = resolve_train_config(
        dataset=dataset,
        config_path=config,
        preset=preset,
        arch=arch,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        precision=precision,
    )
    data, init_model, parent = _training_inputs(splits, init, train_data, label)
    trained = train_and_save(
        data,
        cfg,
        out,
        val_data=splits.val,
        test_data=splits.test,
        init=init_model,
        parent_id=parent,
        name=name,
        device=device,
        progress=not quiet,
    )
    acc = trained.test_accuracy
    console.print(
        f"saved [bold]{trained.card.id}[/] to {out} (test accuracy {acc:.4f}, {trained.result.seconds:.0f}s)"
    )


def _training_inputs(
    splits: Splits, init: str | None, train_data: Path | None, label: str | None
) -> tuple[Dataset, PoisonlabModel | None, str | None]:
    """The data to train on (``--train-data``, else the training split) and, with ``--init``, the
    model to fine-tune and its id (checked against the dataset before any training)."""
    init_model, parent = None, None
    if init is not None:
        init_model, card, _ = load_model_ref(init)
        check_model_fits(card, splits.train)
        parent = card.id
    data = splits.train
    if train_data is not None:
        data = load_dataset_path(
            train_data, class_names=splits.class_names, label=label, size=splits.train.image_shape[0]
        )
    return data, init_model, parent


@cli_errors
def evaluate_command(
    model: str = MODEL_ARG,
    out: Path = out_option("report folder"),
    dataset: str = DATASET_OPT,
    data_dir: Path | None = DATA_DIR_OPT,
    split: str = typer.Option("test", "--split", help="train, val or test"),
    source: str | None = typer.Option(None, "--source", help="count this class predicted as --target"),
    target: str | None = typer.Option(None, "--target"),
    device: str = DEVICE_OPT,
    threads: int | None = THREADS_OPT,
) -> None:
    """Evaluate a model: accuracy, per-class accuracy, confusion matrix, source->target confusions."""
    use_threads(threads)
    if split not in ("train", "val", "test"):
        raise ValueError(f"--split must be train, val or test, got {split!r}")
    net, card, path = load_model_ref(model)
    data = getattr(load_splits(dataset, data_dir=data_dir), split)
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


@cli_errors
def predict_command(
    model: str = MODEL_ARG,
    images: list[Path] = typer.Argument(..., help="image files (any common format)"),
    top: int = typer.Option(3, "--top", min=1, help="probabilities to show per image"),
    device: str = DEVICE_OPT,
    threads: int | None = THREADS_OPT,
    precision: str = PRECISION_OPT,
) -> None:
    """Classify image files; external photos are padded to a square and resized like the chapter."""
    use_threads(threads)
    check_precision(precision)
    net, card, _ = load_model_ref(model)
    h, w, c = card.input_shape
    if h != w:
        raise ValueError(f"predict needs a square input model, this one takes {h}x{w}")
    batch = np.stack([load_image_file(p, size=h) for p in images])
    if c == 1:
        batch = rgb_to_gray(batch)
    probs = forward_pass(net, batch, device=device, precision=precision).probabilities
    table = Table("image", "prediction", f"top {min(top, len(card.class_names))}")
    for path, p in zip(images, probs, strict=True):
        order = np.argsort(-p)[:top]
        table.add_row(
            str(path),
            card.class_names[order[0]],
            ", ".join(f"{card.class_names[i]} {p[i]:.3f}" for i in order),
        )
    console.print(table)
