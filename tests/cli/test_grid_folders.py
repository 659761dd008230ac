"""The grid commands (matrix, clean-label, bench detection) refuse, before any work, an output
folder or store they would damage or could not use, and the executor options that cannot work."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import assert_cli_error
from typer.testing import CliRunner

from poisonlab.cli.main import app
from poisonlab.experiments.executor import make_executor
from poisonlab.experiments.executor.store import resolve_store
from poisonlab.provenance import check_resume_target, run_kind, run_record, write_run_json

runner = CliRunner()
_EXPERIMENTS = Path(__file__).parents[2] / "experiments"
#: a config of each grid command (only read: every refusal here comes before any data is loaded)
CONFIGS = {
    "matrix": _EXPERIMENTS / "defenses" / "matrix-digits.yaml",
    "clean-label": _EXPERIMENTS / "clean_label" / "transfer-linear-cifar10.yaml",
    "bench": _EXPERIMENTS / "detection" / "digits-dev.yaml",
}


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


def _finished(folder: Path, kind: str) -> Path:
    """A folder as a finished run of ``kind`` leaves it: run.json, a cell log, a report."""
    folder.mkdir(parents=True)
    write_run_json(folder, run_record(kind, config={"name": "done"}))
    (folder / "cells.jsonl").write_text('{"grid": "g", "key": "k", "record": {}}\n')
    (folder / "report.md").write_text("# finished\n")
    return folder


@pytest.mark.parametrize(
    ("command", "kind"),
    [
        (["matrix"], "experiment"),
        (["matrix"], "clean-label"),
        (["clean-label"], "matrix"),
        (["bench", "detection"], "matrix"),
    ],
)
def test_resuming_into_another_commands_run_is_refused_and_changes_nothing(tmp_path, command, kind):
    out = _finished(tmp_path / "done", kind)
    before = _digests(out)
    resume = [] if command[0] == "bench" else ["--resume"]  # bench detection resumes by its --out
    line = assert_cli_error(
        runner.invoke(app, [*command, str(CONFIGS[command[0]]), "--out", str(out), *resume, "-q"])
    )
    assert f"holds a {kind} run" in line and "--resume continues a run of the same command" in line
    assert _digests(out) == before


def test_seed_folders_of_an_interrupted_grid_are_claimed_too(tmp_path):
    out = tmp_path / "grid"
    _finished(out / "seed-1", "matrix")  # seed 1 finished, no top-level run.json yet
    before = _digests(out)
    line = assert_cli_error(
        runner.invoke(app, ["matrix", str(CONFIGS["matrix"]), "--out", str(out), "--seeds", "2", "-q"])
    )
    assert "seed-1 already holds run" in line and "overwrite" in line
    assert _digests(out) == before
    both = runner.invoke(
        app, ["matrix", str(CONFIGS["matrix"]), "--out", str(out), "--resume", "--overwrite", "-q"]
    )
    assert "pick one" in assert_cli_error(both)


@pytest.mark.parametrize("command", [["matrix"], ["clean-label"], ["bench", "detection"]])
def test_a_store_that_cannot_be_created_is_refused_before_the_old_run_is_replaced(tmp_path, command):
    if command[0] == "bench":  # a bench folder is only ever resumed: its own (empty) grid here
        out = tmp_path / "done"
        out.mkdir()
        (out / "run.json").write_text(json.dumps({"grid": {}, "sessions": []}))
    else:
        out = _finished(tmp_path / "done", command[0])
    (tmp_path / "afile").write_text("x")
    before = _digests(out)
    args = [
        *command,
        str(CONFIGS[command[0]]),
        "--out",
        str(out),
        "--store",
        str(tmp_path / "afile" / "sub"),
        "-q",
    ]
    line = assert_cli_error(runner.invoke(app, [*args, *([] if command[0] == "bench" else ["--overwrite"])]))
    assert "--store" in line and "cannot create the folder" in line
    assert _digests(out) == before


def test_store_urls_are_refused_also_after_a_path_collapsed_their_slashes(tmp_path):
    for text in ("s3://bucket/x", str(Path("s3://bucket/x")), "gs:/b"):
        with pytest.raises(ValueError, match="got the URL"):
            resolve_store(text)
    assert resolve_store(tmp_path / "new" / "store").is_dir()  # created now


def test_run_kind_names_every_command_and_the_detection_header(tmp_path):
    assert run_kind(tmp_path) is None
    (tmp_path / "run.json").write_text(json.dumps({"grid": {}, "sessions": []}))
    assert run_kind(tmp_path) == "bench-detection"
    check_resume_target(tmp_path, "bench-detection")
    with pytest.raises(FileExistsError, match="holds a bench-detection run, not a matrix run"):
        check_resume_target(tmp_path, "matrix")


def test_an_empty_ray_address_with_the_local_executor_is_refused_not_ignored():
    with pytest.raises(ValueError, match="--ray-address needs --executor ray"):
        make_executor("local", address="")
    with pytest.raises(ValueError, match="--ray-address and --workers need --executor ray"):
        make_executor("local", address="auto", workers=2)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_ray_addresses_that_cannot_answer_are_refused_at_once():
    pytest.importorskip("ray")
    from poisonlab.experiments.executor.ray_executor import RayExecutor

    port = _closed_port()
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(ValueError, match=f"nothing answers at 127.0.0.1:{port}"):
            RayExecutor(address=address)
    with pytest.raises(ValueError, match="the port must be 1 to 65535"):
        RayExecutor(address="127.0.0.1:99999")
    with pytest.raises(ValueError, match="this machine's .* CPUs take at most"):
        RayExecutor(workers=100_000)


def test_usage_errors_of_the_installed_command_are_one_line():
    """Click renders a bad option value in a multi-line box; the console entry point (``main``)
    prints one ``error:`` line naming the command's help instead, exit code 2."""
    code = "import sys; sys.argv = ['poisonlab', *sys.argv[1:]]; from poisonlab.cli.main import main; main()"
    cases = {
        ("matrix", "x.yaml", "--workers", "0"): "Invalid value for '--workers'",
        ("run", "x.yaml", "--executor", "ray"): "No such option: --executor",
        ("nosuch",): "No such command 'nosuch'",
    }
    for args, expected in cases.items():
        done = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
        )
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert lines[0].startswith(f"error: {expected}") and lines[0].endswith("--help)"), lines
    version = subprocess.run(
        [sys.executable, "-c", code, "--version"], capture_output=True, text=True, timeout=120
    )
    assert version.returncode == 0 and version.stdout.startswith("poisonlab ")


class _NoCluster:
    """A stand-in for the ``ray`` module whose ``init`` fails as Ray's does without a cluster."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def is_initialized(self) -> bool:
        return False

    def init(self, **_options) -> None:
        raise self.error


def test_a_cluster_that_cannot_be_joined_is_one_line_naming_the_option():
    pytest.importorskip("ray")
    from poisonlab.experiments.executor.ray_executor import RayExecutor

    executor = RayExecutor(address="auto")
    executor.ray = _NoCluster(
        ConnectionError("Could not find any running Ray instance.\nPlease specify --address")
    )
    with pytest.raises(ValueError, match=r"^--ray-address auto: no Ray cluster runs on this machine"):
        executor.connect()
    with socket.socket() as server:  # something answers, so the address passes the probe
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"ray://127.0.0.1:{server.getsockname()[1]}"
        executor = RayExecutor(address=address)
    executor.ray = _NoCluster(ConnectionError("ray client connection timeout"))
    with pytest.raises(ValueError, match=f"--ray-address {address}: cannot join the cluster .*timeout"):
        executor.connect()


@pytest.mark.parametrize("command", ["run", "matrix", "clean-label"])
def test_more_seeds_than_the_limit_are_refused_before_any_work(tmp_path, command):
    from poisonlab.cli.options import MAX_SEEDS

    args = [command, "x.yaml", "--out", str(tmp_path / "o"), "--seeds", str(MAX_SEEDS + 1)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "--seeds" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()
