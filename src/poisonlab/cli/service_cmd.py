"""``poisonlab serve``, ``poisonlab keys ...`` and ``poisonlab sources ...``: the ImRecS service."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from poisonlab.cli._app import App
from poisonlab.cli._console import make_console
from poisonlab.cli._errors import cli_errors
from poisonlab.error_text import field_problems

console = make_console()
keys_app = App(help="API keys of the ImRecS service (shown once, stored hashed).")
sources_app = App(help="Data sources and their Ed25519 signing keys.")

if TYPE_CHECKING:
    from pydantic import ValidationError

DB_OPT = typer.Option(None, "--db", help="SQLAlchemy database URL (default: sqlite in the data folder)")
DATA_OPT = typer.Option(None, "--data", help="service data folder (default: $POISONLAB_HOME/imrecs)")


def _database(db: str | None, data: Path | None, *, create: bool = True):
    """The service database of ``--db``, else the SQLite file in ``--data``; a command that only
    reads (``create=False``) refuses a folder without one instead of creating folder and file."""
    from poisonlab.service.db import Database
    from poisonlab.service.settings import default_data_dir, sqlite_url

    folder = data or default_data_dir()
    if db is None and not create and not (folder / "imrecs.sqlite").is_file():
        raise FileNotFoundError(
            f"no service database in {folder} (imrecs.sqlite); give the --data of a service, or --db"
        )
    if db is None:
        folder.mkdir(parents=True, exist_ok=True)
    return Database(db or sqlite_url(folder))


def _cli_actor():
    """The audit actor of a CLI command: the operating-system user, with admin rights."""
    import getpass

    from poisonlab.service.audit import Actor

    return Actor(f"cli:{getpass.getuser()}", "admin")


# `serve --workers N`: uvicorn spawns N processes that import their app by name; each builds it from this
_WORKER_SPEC = "POISONLAB_SERVE_WORKER"


def _use_threads(threads: int) -> None:
    import torch

    from poisonlab.threads import set_threads

    set_threads(threads)  # the policy of poisonlab.threads then leaves the service's choice alone
    torch.set_num_threads(threads)


def worker_app():
    """The app of one ``serve --workers N`` process (a uvicorn factory; the settings come from the parent)."""
    from poisonlab.service.app import create_app
    from poisonlab.service.settings import ServiceSettings

    spec = json.loads(os.environ[_WORKER_SPEC])
    _use_threads(spec["threads"])
    return create_app(ServiceSettings.model_validate(spec["settings"]))


#: ServiceSettings fields that ``serve`` sets from an option, named as the option in errors
_SERVE_OPTIONS = {
    "data_dir": "--data",
    "db_url": "--db",
    "model_ref": "--model",
    "unsigned_policy": "--unsigned",
    "base_data_dir": "--base-data-dir",
    "max_body_bytes": "--max-body-mb",
    "precision": "--precision",
    "defenses": "--defenses",
    "inference_workers": "--inference-threads",
}


#: uvicorn's log levels
_LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
#: largest image signed (the service's default image limit is 8 MiB): a device or a huge file given
#: by mistake is refused, not read into memory (key files: signing.MAX_KEY_BYTES)
_MAX_IMAGE_BYTES = 64 * (1 << 20)


def _check_listen(host: str, port: int) -> None:
    """ValueError unless this process can listen on ``host:port`` now (uvicorn would exit with code
    3 and its own log line after the model loaded)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise ValueError(f"--host/--port: cannot listen on {host}:{port} ({exc.strerror or exc})") from None


def _note_unused_model(state, model: str | None) -> None:
    """Say so when ``--model`` is not used: the database already names a serving model, which
    promotions and rollbacks change, not a restart."""
    from poisonlab.service.registry import serving_version

    if model is None:
        return
    with state.db.read() as session:
        serving = serving_version(session)
    if serving is not None:
        console.print(
            f"note: --model {model} not used: the database already serves model {serving.id} "
            "(change it through the API's promote or rollback)",
            style="yellow",
            highlight=False,
        )  # stdout, like serve's other start-up lines


def _read_limited(path: Path, limit: int, what: str) -> bytes:
    """The bytes of ``path``; ValueError for a file over ``limit`` bytes (or a device), unread."""
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{what} {path} is over {limit:,} bytes; expected a small file")
    return data


def _option_errors(exc: ValidationError) -> str:
    """``--unsigned: Input should be 'quarantine', 'pending' or 'reject'; ...`` on one line."""
    return field_problems(exc.errors(), rename=_SERVE_OPTIONS, empty="settings")


@cli_errors
def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (plain HTTP: put TLS in front)"),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    db: str | None = DB_OPT,
    data: Path | None = DATA_OPT,
    model: str | None = typer.Option(None, "--model", help="initial serving model (folder or registry id)"),
    unsigned: str = typer.Option(
        "quarantine", "--unsigned", help="unsigned contributions: quarantine|pending|reject"
    ),
    defenses: str | None = typer.Option(
        None, "--defenses", help="comma-separated pipeline defenses ('' for none)"
    ),
    base_data_dir: Path | None = typer.Option(
        None, "--base-data-dir", help="CIFAR-10 location for the base data"
    ),
    precision: str = typer.Option("fp32", "--precision", help="fp32 (default) or bf16 (opt-in)"),
    max_body_mb: float = typer.Option(
        16.0, "--max-body-mb", min=0.01, max=2048, help="largest request body in MiB (at most 2048)"
    ),
    threads: int = typer.Option(
        1,
        "--threads",
        min=1,
        help="torch threads per forward pass (1: fastest on shared cores; see --inference-threads)",
    ),
    inference_threads: int | None = typer.Option(
        None, "--inference-threads", min=1, help="inference threads per process (default: min(2, CPUs))"
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, help="server processes on the port (more than 1 needs a PostgreSQL --db)"
    ),
    log_level: str = typer.Option("info", "--log-level", help=f"uvicorn's: {', '.join(_LOG_LEVELS)}"),
) -> None:
    """Run the ImRecS image-recognition service (FastAPI + uvicorn) until interrupted."""
    import uvicorn
    from pydantic import ValidationError
    from sqlalchemy.engine import make_url

    from poisonlab.service.app import create_app
    from poisonlab.service.settings import ServiceSettings, default_data_dir
    from poisonlab.service.state import ServiceState

    extra = (
        {} if defenses is None else {"defenses": tuple(d.strip() for d in defenses.split(",") if d.strip())}
    )
    try:
        settings = ServiceSettings(
            data_dir=data or default_data_dir(),
            db_url=db,
            model_ref=model,
            unsigned_policy=unsigned,
            base_data_dir=base_data_dir,
            max_body_bytes=int(max_body_mb * (1 << 20)),
            precision=precision,
            **extra,
            **({} if inference_threads is None else {"inference_workers": inference_threads}),
        )
    except ValidationError as exc:
        raise ValueError(_option_errors(exc)) from None
    if workers > 1 and settings.database_url.startswith("sqlite"):
        raise ValueError("--workers above 1 needs a PostgreSQL --db (postgresql+psycopg://...), not SQLite")
    if log_level not in _LOG_LEVELS:
        raise ValueError(f"--log-level must be one of {', '.join(_LOG_LEVELS)}, got {log_level!r}")
    _check_listen(host, port)  # before the model loads: a taken port or bad host is one line now
    _use_threads(threads)
    # the database and the initial model are opened here, so that a bad --db or --model is one error
    # line now, not a traceback from inside uvicorn's start-up; one process serves from this state
    state = ServiceState(settings)
    try:
        _note_unused_model(state, model)
        state.bootstrap()
    except BaseException:
        state.close()
        raise
    if workers > 1:  # each worker process opens its own; this one only registered the model
        state.close()
    db_shown = make_url(settings.database_url).render_as_string(hide_password=True)  # no password in logs
    console.print(f"ImRecS on http://{host}:{port}  data {settings.data_dir}  db {db_shown}")
    # proxy_headers=False: X-Forwarded-For from a local client must not choose its rate-limit address
    run = {"host": host, "port": port, "log_level": log_level, "access_log": False, "proxy_headers": False}
    if workers == 1:
        uvicorn.run(create_app(settings, state=state), **run)
        return
    # the initial model was registered above, once, before N processes race to it
    spec = {"settings": settings.model_dump(mode="json"), "threads": threads}
    os.environ[_WORKER_SPEC] = json.dumps(spec)
    uvicorn.run(f"{__name__}:worker_app", factory=True, workers=workers, **run)


@keys_app.command("create")
@cli_errors
def create_key(
    role: str = typer.Option(..., "--role", help="viewer, contributor, trainer or admin"),
    name: str = typer.Option(..., "--name", help="who holds the key (unique; contributions carry it)"),
    db: str | None = DB_OPT,
    data: Path | None = DATA_OPT,
) -> None:
    """Create an API key and print it once (only its sha256 is stored)."""
    from poisonlab.service.auth import create_key as make

    with _database(db, data).write() as session:
        key, row = make(session, name=name, role=role, actor=_cli_actor())
    typer.echo(key)
    typer.echo(f"key {row.id} for {row.name} ({row.role}): store it now, it cannot be shown again", err=True)


@keys_app.command("list")
@cli_errors
def list_keys(db: str | None = DB_OPT, data: Path | None = DATA_OPT) -> None:
    """Keys with role, prefix and state (never the keys themselves)."""
    from rich.table import Table

    from poisonlab.service.auth import list_keys as rows

    table = Table("id", "name", "role", "prefix", "created", "revoked")
    with _database(db, data, create=False).read() as session:
        keys = rows(session)
    for k in keys:
        table.add_row(
            str(k.id), k.name, k.role, k.prefix + "...", str(k.created_at)[:19], str(k.revoked_at or "-")[:19]
        )
    console.print(table)


@keys_app.command("revoke")
@cli_errors
def revoke_key(
    key_id: int = typer.Argument(..., min=1), db: str | None = DB_OPT, data: Path | None = DATA_OPT
) -> None:
    """Revoke a key by id (takes effect on the next request)."""
    from poisonlab.service.auth import revoke_key as revoke

    try:
        with _database(db, data).write() as session:
            row = revoke(session, key_id, actor=_cli_actor())
    except LookupError as exc:  # NotFound: one line on stderr, exit code 2, like any bad argument
        raise ValueError(exc.args[0]) from None
    typer.echo(f"revoked key {row.id} ({row.name})")


@sources_app.command("add")
@cli_errors
def add_source(
    name: str = typer.Argument(..., help="source name contributions will give"),
    public_key: Path = typer.Option(..., "--public-key", help="Ed25519 public key, PEM"),
    db: str | None = DB_OPT,
    data: Path | None = DATA_OPT,
) -> None:
    """Register a data source and the Ed25519 public key its contributions are signed with."""
    from poisonlab.service.signing import MAX_KEY_BYTES
    from poisonlab.service.sources import add_source as add

    pem = _read_limited(public_key, MAX_KEY_BYTES, "--public-key").decode("ascii", errors="replace")
    with _database(db, data).write() as session:
        row = add(session, name, pem, actor=_cli_actor())
    typer.echo(f"source {row.name} registered, key fingerprint {row.fingerprint}")


@sources_app.command("list")
@cli_errors
def list_sources(db: str | None = DB_OPT, data: Path | None = DATA_OPT) -> None:
    """Registered data sources and their key fingerprints."""
    from rich.table import Table

    from poisonlab.service.sources import list_sources as rows

    table = Table("name", "fingerprint", "created")
    with _database(db, data, create=False).read() as session:
        registered = rows(session)
    for s in registered:
        table.add_row(s.name, s.fingerprint, str(s.created_at)[:19])
    console.print(table)


@sources_app.command("keygen")
@cli_errors
def keygen(
    out: Path = typer.Option(..., "--out", help="folder for <name>.key (private, 0600) and <name>.pub"),
    name: str = typer.Option("source", "--name", help="file stem"),
) -> None:
    """Generate an Ed25519 key pair for a data source (refuses to overwrite a private key)."""
    from poisonlab.service.signing import generate_keypair

    private, public = generate_keypair(out, name)
    typer.echo(f"private key {private}\npublic key  {public}")


@sources_app.command("sign")
@cli_errors
def sign(
    image: Path = typer.Argument(..., help="image file to contribute"),
    key: Path = typer.Option(..., "--key", help="the source's private key (PEM)"),
    label: str = typer.Option(..., "--label", help="the class name the contribution will carry"),
) -> None:
    """Print the contribution's signature field for IMAGE with LABEL (timestamp.nonce.signature).

    Each printed value is accepted once, within the service's skew window (5 minutes by default):
    sign every upload right before sending it.
    """
    from poisonlab.service.signing import load_private_key, sign_contribution

    data = _read_limited(image, _MAX_IMAGE_BYTES, "image")
    typer.echo(sign_contribution(load_private_key(key), data, label))
