"""CLI start-up benchmark (issue 17): wall time of a fresh ``poisonlab`` process that only starts.

Times ``poisonlab --help``, ``poisonlab --version`` and one subcommand's ``--help`` (default
``train --help``), each as a new process, ``--repeats`` times in alternating order, plus a bare
``python -c pass`` (the interpreter's own start, which no change to poisonlab can remove).
Reports the median of each; the JSON record holds every timing, the machine, the versions, the
git commit and the load average before and after (the development machine is shared: other
jobs' load inflates single timings, which is why medians of many runs are reported).

``--src DIR`` times another source tree instead of the installed one (put first on
``PYTHONPATH``), e.g. the commit before the lazy imports, exported read-only with ``git archive``.

Reproduce (see BENCHMARKS.md, "CLI start-up")::

    .venv/bin/python benchmarks/cli_startup.py --repeats 21 --out benchmarks/results/cli_startup.json
    mkdir -p /tmp/before && git archive 82d8626 src | tar -x -C /tmp/before
    .venv/bin/python benchmarks/cli_startup.py --repeats 5 --src /tmp/before/src \
        --out benchmarks/results/cli_startup_before.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import environment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
POISONLAB = ROOT / ".venv" / "bin" / "poisonlab"


def _commands(subcommand: str) -> dict[str, list[str]]:
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "poisonlab --version": [str(POISONLAB), "--version"],
        "poisonlab --help": [str(POISONLAB), "--help"],
        f"poisonlab {subcommand} --help": [str(POISONLAB), *subcommand.split(), "--help"],
    }


def _time_once(command: list[str], src: Path | None = None) -> float:
    env = {**os.environ, "COLUMNS": "100"}  # the same help layout in every run
    if src is not None:
        env["PYTHONPATH"] = str(src)
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _git_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=21, help="fresh processes per command")
    parser.add_argument("--subcommand", default="train", help="the subcommand whose --help is timed")
    parser.add_argument("--src", type=Path, default=None, help="time this source tree (PYTHONPATH)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    src = None if args.src is None else args.src.resolve()
    commands = _commands(args.subcommand)
    commit = _git_commit() if src is None else f"source tree {src}"  # before the runs: the timed code
    load_before = os.getloadavg()
    for command in commands.values():  # warm the file cache: the first start reads every .pyc
        _time_once(command, src)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(args.repeats):
        order = list(commands) if round_ % 2 == 0 else list(reversed(commands))
        for name in order:
            times[name].append(_time_once(commands[name], src))
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "benchmark": "cli_startup",
        "commit": commit,
        "environment": environment(),
        "source": "installed checkout" if src is None else str(src),
        "repeats": args.repeats,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "seconds": times,
        "median_seconds": medians,
        "note": "wall time of a fresh process (fork, interpreter start, imports, help rendering); "
        "shared machine, so other jobs' load is in the figures",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"median_seconds": medians, "load_average_before": load_before}, indent=2))


if __name__ == "__main__":
    main()
