"""``poisonlab scan``: screen a training set with one or more defenses; JSON + HTML report.

Named datasets are found by :func:`poisonlab.data.catalog.resolve_data_dir`, the rule every
command follows; the defenses, the data loaders and torch are imported when the command runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from poisonlab.cli._app import App
from poisonlab.cli._console import make_console
from poisonlab.cli._defense_params import check_methods, defense_parameters
from poisonlab.cli._errors import cli_errors
from poisonlab.cli.options import DATA_DIR_OPT, DEVICE_OPT, JSON_OPT, THREADS_OPT, out_option, use_threads

if TYPE_CHECKING:
    from poisonlab.data.dataset import Dataset

console = make_console()

_SPLITS = ("train", "val", "test")


def _named(text: str) -> tuple[str, str] | None:
    """``"digits"`` -> ("digits", ""), ``"cifar10:val"`` -> ("cifar10", "val"); None for paths."""
    from poisonlab.data.catalog import DATASETS

    name, _, split = text.partition(":")
    if name.strip().lower() not in DATASETS:
        return None
    if split and split not in _SPLITS:
        raise ValueError(f"split after {name!r} must be one of {list(_SPLITS)}, got {split!r}")
    return name.strip().lower(), split


def load_scan_data(
    dataset: str,
    trusted: str | None,
    *,
    split: str,
    data_dir: Path | None,
    class_names: tuple[str, ...] | None,
) -> tuple[Dataset, Dataset | None]:
    """The dataset to scan and the trusted reference set (see ``poisonlab scan --help``)."""
    from poisonlab.data.catalog import load_dataset_path, load_named_splits

    named = _named(dataset)
    if named is not None:
        splits = load_named_splits(named[0], data_dir=data_dir)
        data = getattr(splits, named[1] or split)
        default_trusted = splits.val if (named[1] or split) != "val" else splits.test
    else:
        data = load_dataset_path(dataset, class_names=class_names)
        default_trusted = None
    if trusted is None:
        return data, default_trusted
    named_t = _named(trusted)
    if named_t is not None:
        return data, getattr(load_named_splits(named_t[0], data_dir=data_dir), named_t[1] or "val")
    if trusted in _SPLITS and named is not None:
        return data, getattr(splits, trusted)
    return data, load_dataset_path(trusted, class_names=data.class_names)


@cli_errors
def scan_command(
    dataset: str = typer.Argument(
        ...,
        help="a dataset name (digits, cifar10, optionally name:split) or a path (.npz as written by "
        "poisonlab run --save-data, image folder, prepared folder)",
    ),
    method: list[str] | None = typer.Option(
        None,
        "--method",
        "-M",
        help="defense to run, repeatable; NAME or NAME:key=value,... (see poisonlab defenses list); "
        "default: the screen (the recommended detectors, combined without ground truth; needs --model)",
    ),
    screen: bool = typer.Option(
        False, "--screen", help="also combine the given --method detectors into the screen's verdict"
    ),
    out: Path = out_option("report folder"),
    model: str | None = typer.Option(None, "--model", "-m", help="model folder or registry id"),
    trusted: str | None = typer.Option(
        None,
        "--trusted",
        help="clean reference data: val/test (of a named dataset), name:split or a path; default: the "
        "named dataset's val split",
    ),
    split: str = typer.Option("train", "--split", help="split of a named dataset to scan"),
    top: int = typer.Option(50, "--top", min=1, help="ranked suspicious samples to list per method"),
    data_dir: Path | None = DATA_DIR_OPT,
    device: str = DEVICE_OPT,
    threads: int | None = THREADS_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Screen a training set for poison with one or more defenses (they share one forward pass)."""
    from poisonlab.defenses.scan import scan
    from poisonlab.defenses.scan.report import write_scan_report
    from poisonlab.models.checkpoint import check_model_fits
    from poisonlab.models.store import load_model_ref

    use_threads(threads)
    if split not in _SPLITS:
        raise ValueError(f"--split must be one of {list(_SPLITS)}, got {split!r}")
    check_methods(method)  # a misspelt parameter fails before the model and data load
    net = card = None
    if model is not None:
        net, card, path = load_model_ref(model)
    data, reference = load_scan_data(
        dataset, trusted, split=split, data_dir=data_dir, class_names=card.class_names if card else None
    )
    if card is not None:
        check_model_fits(card, data)
    result = scan(data, method or None, model=net, trusted=reference, device=device, screen=screen or None)
    info = None if card is None else {"id": card.id, "name": card.name, "path": str(path)}
    paths = write_scan_report(result, out, top=top, model_info=info)
    if as_json:
        typer.echo(json.dumps(scan_record(result, paths, info), indent=2, default=_json_default))
        return
    _print_summary(result)
    console.print(f"report: {paths['report_html']}", soft_wrap=True)


def scan_record(result: Any, paths: dict[str, Path], model_info: dict[str, Any] | None) -> dict[str, Any]:
    """The ``--json`` document: the summary table's figures, the screen's verdict and the files."""
    data = result.dataset
    methods = [
        {
            "name": m.name,
            "params": m.params,
            "flagged": int(m.flagged.sum()),
            "metrics": m.metrics,
            "seconds": round(m.seconds, 3),
        }
        for m in result.methods
    ]
    return {
        "dataset": {"name": data.name, "samples": len(data), "poison_known": data.poison_mask is not None},
        "model": model_info,
        "methods": methods,
        "screen": None if result.screen is None else result.screen.to_dict(),
        "files": {key: str(value) for key, value in paths.items()},
    }


def _json_default(value: Any) -> Any:
    """numpy scalars and anything else JSON lacks, as plain values or text."""
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


def _print_summary(result: Any) -> None:
    from rich.table import Table

    known = result.dataset.poison_mask is not None
    table = Table(title=f"scan of {result.dataset.name} ({len(result.dataset)} samples)")
    for col in ["method", "flagged", *(["precision", "recall", "f1", "auroc"] if known else []), "seconds"]:
        table.add_column(col)
    for m in result.methods:
        row = [m.name, str(int(m.flagged.sum()))]
        if known:
            row += [
                "-" if m.metrics[k] is None else f"{m.metrics[k]:.3f}"
                for k in ("precision", "recall", "f1", "auroc")
            ]
        table.add_row(*row, f"{m.seconds:.2f}")
    if result.screen is not None:
        v = result.screen
        row = ["screen", str(int(v.flagged.sum()))]
        if known:
            row += [
                "-" if v.metrics[k] is None else f"{v.metrics[k]:.3f}"
                for k in ("precision", "recall", "f1", "auroc")
            ]
        table.add_row(*row, f"{sum(m.seconds for m in result.methods):.2f}", style="bold")
    console.print(table)
    if result.screen is not None:
        v = result.screen
        poisoned = [c["class"] for c in v.classes if c["screen_flagged"]]
        console.print(
            f"screen: {int(v.flagged.sum())} samples flagged by >= {v.min_votes} detectors"
            + (f" in classes {', '.join(poisoned)}" if poisoned else "")
        )


defenses_app = App(help="The registered defenses.")


@defenses_app.command("list")
@cli_errors
def list_command(
    as_json: bool = JSON_OPT,
) -> None:
    """List every registered defense: what it looks at, what it needs, its paper, and the
    parameters --method NAME:key=value,... accepts (name: type = default)."""
    from rich.markup import escape
    from rich.table import Table

    from poisonlab.defenses import DEFENSES

    records = [_defense_record(name, DEFENSES[name]) for name in DEFENSES]
    if as_json:
        typer.echo(json.dumps({"defenses": records}, indent=2, default=_json_default))
        return
    table = Table("name", "space", "needs", "paper", "parameters (--method NAME:key=value,...)")
    for r in records:
        params = "\n".join(p.describe() for p in defense_parameters(r["name"]))
        cells = (r["name"], r["space"], ", ".join(r["needs"]) or "-", r["paper"], params or "-")
        table.add_row(*map(escape, cells))  # annotations such as Sequence[str] are not markup
    console.print(table)
    console.print("e.g. poisonlab scan DATA --model MODEL --method zscore:space=pixels,threshold=4")


def _defense_record(name: str, cls: Any) -> dict[str, Any]:
    needs = [w for w, flag in (("model", cls.needs_model), ("trusted", cls.needs_trusted)) if flag]
    params = [
        {"name": p.name, "type": p.type, "required": p.required, "default": None if p.required else p.default}
        for p in defense_parameters(name)
    ]
    return {"name": name, "space": cls.space, "needs": needs, "paper": cls.paper, "parameters": params}
