"""``poisonlab models list|show``: the model registry."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import typer

from poisonlab.cli._app import App
from poisonlab.cli._console import make_console
from poisonlab.cli._errors import cli_errors
from poisonlab.cli.options import JSON_OPT

models_app = App(help="List and inspect registered models.")
console = make_console()


def _entry_record(entry: Any) -> dict[str, Any]:
    """A registry entry as a JSON-ready mapping (every field the registry keeps)."""
    return dataclasses.asdict(entry) if dataclasses.is_dataclass(entry) else dict(vars(entry))


@models_app.command("list")
@cli_errors
def list_models(as_json: bool = JSON_OPT) -> None:
    """All registered models with versions, parents and test accuracy."""
    from rich.table import Table

    from poisonlab.models.store import ModelStore

    store = ModelStore()
    entries = store.list()
    if as_json:
        doc = {"registry": str(store.db_path), "models": [_entry_record(e) for e in entries]}
        typer.echo(json.dumps(doc, indent=2, default=str))
        return
    if not entries:
        console.print(f"no models registered yet in {store.db_path}")
        return
    table = Table()
    table.add_column("id", no_wrap=True, min_width=27)  # ids must stay copyable in narrow terminals/CI logs
    for column in ("name", "version", "arch", "parent", "test acc", "created", "path"):
        table.add_column(column)
    for e in entries:
        acc = e.metrics.get("test_accuracy")
        table.add_row(
            e.id,
            e.name,
            str(e.version),
            e.arch,
            e.parent_id or "-",
            "-" if acc is None else f"{acc:.4f}",
            e.created_at,
            e.path,
        )
    console.print(table)


@models_app.command("show")
@cli_errors
def show_model(model_id: str = typer.Argument(..., help="id, id prefix, name or name:version")) -> None:
    """A model's card (model.json) and its lineage."""
    from poisonlab.models.checkpoint import read_card
    from poisonlab.models.store import ModelStore

    store = ModelStore()
    entry = store.get(model_id)
    card = read_card(entry.path)
    console.print_json(json.dumps(card.model_dump()))
    chain = " <- ".join(f"{e.name} v{e.version} ({e.id})" for e in store.lineage(entry.id))
    console.print(f"lineage: {chain}")
