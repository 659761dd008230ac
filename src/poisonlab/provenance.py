"""Where a result came from: ``run.json`` in every run folder, and no silent overwrites.

Every folder a training run or an experiment writes gets a ``run.json``: a run id, the time,
the versions of poisonlab, torch and Python (and the packages the figures depend on), the git
commit of a source checkout (``-dirty`` with uncommitted changes), the command line and the
config as given. :func:`claim_run_dir` refuses a folder that already holds a run unless
``overwrite=True``, so a second run cannot replace the first one's model or report unnoticed.

The git commit and versions are computed once per process: the code that runs is the code that
was imported at start, whatever the checkout becomes later.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import secrets
import shlex
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "TRAINING_REVISION",
    "RUN_FILE",
    "check_output_folder",
    "check_resume_target",
    "claim_run_dir",
    "claim_run_dirs",
    "git_commit",
    "holds_run",
    "machine",
    "new_run_id",
    "package_versions",
    "read_run_json",
    "run_kind",
    "record_resumable_run",
    "run_record",
    "write_run_json",
]

#: the provenance file of a run folder
RUN_FILE = "run.json"
#: files that mark a folder as holding a finished run (``model.json``: model folders from before
#: ``run.json`` existed)
_RUN_MARKERS = (RUN_FILE, "model.json")
_PACKAGES = ("poisonlab", "numpy", "scipy", "scikit-learn", "torch", "pydantic", "typer")

#: Raised when the same config and data train a different model, so that caches keyed on the
#: config (:func:`poisonlab.experiments.common.cache.baseline_key`) do not hand out a model the
#: code no longer trains, and recorded with the versions, so that a result says which training
#: code made its models. 2: the BatchNorm recalibration sees augmented images (commit 8877156).
#: Kept here rather than in :mod:`poisonlab.training` so that stamping a record imports no torch.
TRAINING_REVISION = 2


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


@functools.cache
def git_commit(source: Path | None = None) -> str | None:
    """``git rev-parse HEAD`` of the poisonlab checkout, ``-dirty`` with uncommitted changes.

    Dirty means a changed tracked file or an untracked file under ``src/``. The checks never
    write the index (``--no-optional-locks``). None outside a git checkout (an installed wheel)
    or without git.

    Parameters
    ----------
    source : Path, optional
        The checkout's root; default the one this module was imported from.

    Returns
    -------
    str or None
    """
    root = source or Path(__file__).resolve().parents[2]
    if not (root / "src" / "poisonlab").is_dir():  # not a source checkout
        return None
    head = _git(["rev-parse", "HEAD"], root)
    if not head:
        return None
    tracked = _git(["--no-optional-locks", "status", "--porcelain", "--untracked-files=no"], root)
    untracked = _git(
        ["--no-optional-locks", "status", "--porcelain", "--untracked-files=all", "--", "src"], root
    )
    return f"{head}-dirty" if tracked or untracked else head


@functools.cache
def _versions() -> tuple[tuple[str, str | None], ...]:
    out: list[tuple[str, str | None]] = [("python", platform.python_version())]
    for name in _PACKAGES:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, None))
    out.append(("training_revision", str(TRAINING_REVISION)))
    return tuple(out)


def package_versions() -> dict[str, str | None]:
    """Installed versions of poisonlab and the packages its figures depend on, Python's, and
    ``training_revision`` (:data:`TRAINING_REVISION`; absent from records made before it existed)."""
    return dict(_versions())


#: environment variables that change which CPU kernels torch runs (and so the trained weights)
_KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def machine() -> dict[str, Any]:
    """What a result's numerics depend on beyond the package versions: the CPU model, the kernel
    level torch dispatches to and the variables that cap it.

    fp32 training repeats bitwise on one kind of machine but not across CPUs: the same code, data
    and seed trained other weights on an AMD EPYC than on an Intel Xeon (issue 14's
    ``control-finetune-b32``), and ``platform.platform()`` names only the kernel. torch is asked
    only when already imported, so that stamping a record imports no torch.

    Returns
    -------
    dict
        ``cpu`` (the model name, None where unknown), ``torch_cpu_capability`` (``"AVX512"``,
        ``"AVX2"``, ...; None without torch loaded), ``cuda`` (the first GPU's name or None) and
        ``kernel_env`` (the set ones of ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA,
        MKL_ENABLE_INSTRUCTIONS).
    """
    torch = sys.modules.get("torch")
    capability = cuda = None
    if torch is not None:
        capability = torch.backends.cpu.get_cpu_capability()
        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": _cpu_model(),
        "torch_cpu_capability": capability,
        "cuda": cuda,
        "kernel_env": {k: os.environ[k] for k in _KERNEL_ENV if k in os.environ},
    }


@functools.cache
def _cpu_model() -> str | None:
    try:  # Linux names the model; platform.processor() says only "x86_64" there
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def new_run_id() -> str:
    """A fresh run id: ``run-<UTC time>-<6 random hex digits>``, sortable by start time."""
    return f"run-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def run_record(
    kind: str,
    *,
    config: Any = None,
    run_id: str | None = None,
    argv: list[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The contents of a ``run.json``.

    Parameters
    ----------
    kind : str
        What ran: ``"train"``, ``"experiment"``, ``"matrix"``, ``"demo"``, ...
    config : object, optional
        The config as given (JSON-ready: a dict, a list, a string).
    run_id : str, optional
        Default: a new one (:func:`new_run_id`).
    argv : list of str, optional
        The command line; default ``sys.argv``.
    extra : mapping, optional
        Further JSON-ready fields (the model id, the dataset hash, ...).

    Returns
    -------
    dict
        ``run_id``, ``kind``, ``created_at`` (UTC, ISO 8601), ``versions`` (python, poisonlab,
        torch, ...), ``commit``, ``platform``, ``machine`` (:func:`machine`), ``command`` (the
        argv list), ``command_line`` (shell-quoted), ``cwd``, ``config`` and the ``extra`` fields.
    """
    args = list(sys.argv if argv is None else argv)
    return {
        "run_id": run_id or new_run_id(),
        "kind": kind,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "commit": git_commit(),
        "platform": platform.platform(),
        "machine": machine(),
        "command": args,
        "command_line": shlex.join(args),
        "cwd": os.getcwd(),
        "config": config,
        **dict(extra or {}),
    }


def holds_run(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a run (its ``run.json``, or a saved model's ``model.json``)."""
    path = Path(folder)
    return any((path / name).is_file() for name in _RUN_MARKERS)


def check_output_folder(folder: str | os.PathLike[str]) -> Path:
    """``folder`` as a Path, after checking that no file stands at it or above it.

    Call it before any work, so that a command does not learn after minutes of training that it
    cannot write its output (``mkdir`` would fail then).

    Raises
    ------
    FileExistsError
        When ``folder``, or the nearest existing folder above it, is a file.
    """
    path = Path(folder)
    for place in (path, *path.parents):
        if place.exists() and not place.is_dir():
            raise FileExistsError(f"output folder {path} cannot be made: {place} is a file, not a folder")
        if place.is_dir():
            break
    return path


def claim_run_dir(folder: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Check that a run may write into ``folder``; call it before any work.

    Parameters
    ----------
    folder : path-like
        The run folder (need not exist).
    overwrite : bool
        Allow replacing a run already in ``folder`` (the CLI's ``--overwrite``).

    Returns
    -------
    Path

    Raises
    ------
    FileExistsError
        When ``folder`` holds a run (:func:`holds_run`) and ``overwrite`` is False; the message
        names the run there. Also, whatever ``overwrite``, when ``folder`` or a folder above it
        is a file: the run could not write there, and would learn it only after its work.
    """
    path = check_output_folder(folder)
    if overwrite or not holds_run(path):
        return path
    previous = read_run_json(path)
    what = (
        f"run {previous.get('run_id')} of {previous.get('created_at')}"
        if previous
        else "a saved model (model.json)"
    )
    raise FileExistsError(
        f"{path} already holds {what}; choose another output folder, or pass overwrite=True "
        "(--overwrite on the command line) to replace it"
    )


def read_run_json(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``run.json`` of ``folder``, or None when it has none (or an unreadable one)."""
    path = Path(folder) / RUN_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_run_json(folder: str | os.PathLike[str], record: Mapping[str, Any]) -> Path:
    """Write ``record`` (see :func:`run_record`) as ``folder/run.json``, atomically; its path."""
    path = Path(folder) / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


#: the fields of a later session kept in a resumed run's ``run.json``
_SESSION_FIELDS = ("run_id", "created_at", "commit", "versions", "command_line")


def record_resumable_run(folder: str | os.PathLike[str], record: Mapping[str, Any], *, resume: bool) -> Path:
    """Write ``run.json`` for a run that ``--resume`` may continue in later sessions.

    A fresh run (or a resumed folder without a readable ``run.json``: one written before runs
    recorded themselves) writes ``record``. A resumed run keeps the first session's record, so its
    run id and config stay those its finished work was made with, and appends this session's
    run id, time, commit, versions and command line to its ``resumed`` list.

    Parameters
    ----------
    folder : path-like
        The run folder.
    record : mapping
        This session's record (:func:`run_record`).
    resume : bool
        Whether this session continues the run already in ``folder``.

    Returns
    -------
    Path
        The ``run.json`` written.
    """
    previous = read_run_json(folder) if resume else None
    if previous is None:
        return write_run_json(folder, record)
    session = {key: record.get(key) for key in _SESSION_FIELDS}
    return write_run_json(folder, {**previous, "resumed": [*previous.get("resumed", []), session]})


#: what ``run_kind`` calls the folder of ``poisonlab bench detection`` (its ``run.json`` is the
#: grid's header: ``grid`` and ``sessions``, and no ``kind`` in folders written before it had one)
DETECTION_BENCH = "bench-detection"


def run_kind(folder: str | os.PathLike[str]) -> str | None:
    """Which command wrote the run in ``folder``: its ``run.json``'s ``kind`` (``"experiment"``,
    ``"matrix"``, ``"clean-label"``, ``"train"``...), :data:`DETECTION_BENCH` for a detection
    grid's header, ``"model"`` for a saved model without ``run.json``; None for no run."""
    record = read_run_json(folder)
    if record is None:
        return "model" if (Path(folder) / "model.json").is_file() else None
    if "kind" in record:
        return str(record["kind"])
    return DETECTION_BENCH if {"grid", "sessions"} <= record.keys() else "unknown"


def check_resume_target(folder: str | os.PathLike[str], kind: str) -> Path:
    """For ``--resume``: ``folder`` as a Path, refused when it holds another command's run.

    A resumed run reads the folder's cell log and rewrites its report and ``run.json``; in a
    folder of another command it would replace that run's files (or train for minutes before
    its cell log is found to be another grid's).

    Raises
    ------
    FileExistsError
        ``folder`` (or a folder above it) is a file, or it holds a run whose kind is not ``kind``.
    """
    path = check_output_folder(folder)
    found = run_kind(path)
    if found is not None and found != kind:
        raise FileExistsError(
            f"{path} holds a {found} run, not a {kind} run: --resume continues a run of the same "
            "command; choose another --out"
        )
    return path


def claim_run_dirs(folders: list[Path], *, kind: str, overwrite: bool, resume: bool) -> None:
    """Check, before any work, that a run of ``kind`` may write into each of ``folders`` (a grid
    over seeds writes ``OUT`` and ``OUT/seed-K``: each is checked, not only the top).

    Without ``resume``: :func:`claim_run_dir` (a run already there is refused unless
    ``overwrite``). With ``resume``: :func:`check_resume_target`.

    Raises
    ------
    ValueError
        ``resume`` and ``overwrite`` together (one continues the run, the other replaces it).
    FileExistsError
        As :func:`claim_run_dir` or :func:`check_resume_target`.
    """
    if resume and overwrite:
        raise ValueError("--resume continues the run in --out, --overwrite replaces it: pick one")
    for folder in folders:
        if resume:
            check_resume_target(folder, kind)
        else:
            claim_run_dir(folder, overwrite=overwrite)
