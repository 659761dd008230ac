"""Thread policy benchmark (issue 12): `poisonlab train`, `craft` or `scan` on a busy and on an
idle machine.

Times the same command (``--work train``: a training run; ``--work craft``: crafting clean-label
poisons against a model trained once, untimed, before the rounds; ``--work scan``: ``poisonlab
scan`` of the dataset's training split with one detector, ``--method``, that trains its own small
model, e.g. the autoencoder) under three thread settings,
alternating their order over ``--repeats`` rounds:

* ``policy``: no thread setting at all (the automatic policy of :mod:`poisonlab.threads`);
* ``omp1``: ``OMP_NUM_THREADS=1`` (the reference the target is stated against);
* ``all-cores``: ``POISONLAB_THREADS=<cores>`` (what torch did before the policy: one thread per core).

With ``--load N`` the rounds run beside N busy-looping processes (the "concurrent CPU load" of
the target), started before and stopped after the timings. Results go to a JSON file with the
machine, versions, git commit, command and every timing; the medians are printed.

Reproduce (see BENCHMARKS.md, "Threads")::

    .venv/bin/python benchmarks/threads.py --load 2 --repeats 3 --out benchmarks/results/threads_busy.json
    .venv/bin/python benchmarks/threads.py --dataset cifar10 --data-dir ../shared/datasets/cifar10-jpeg \
        --epochs 1 --repeats 1 --settings policy all-cores --out benchmarks/results/threads_cifar_idle.json
    .venv/bin/python benchmarks/threads.py --work craft --dataset cifar10 \
        --data-dir ../shared/datasets/cifar10-jpeg --epochs 1 --load 1 --repeats 2 \
        --out benchmarks/results/threads_craft_busy.json
    .venv/bin/python benchmarks/threads.py --work scan --method autoencoder --load 1 --repeats 3 \
        --out benchmarks/results/threads_scan_busy.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import environment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("policy", "omp1", "all-cores")


def _spin(stop: mp.Event) -> None:  # a busy loop standing in for another user's job
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def _env_for(setting: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "POISONLAB_THREADS")}
    if setting == "omp1":
        env["OMP_NUM_THREADS"] = "1"
    elif setting == "all-cores":
        env["POISONLAB_THREADS"] = str(len(os.sched_getaffinity(0)))
    return env


def _time_once(command: list[str], setting: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [*command, "--out", str(Path(tmp) / "model")]
        env = {**_env_for(setting), "POISONLAB_HOME": tmp}
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        return time.perf_counter() - start


def _craft_command(train: list[str], args: argparse.Namespace, model_dir: Path) -> list[str]:
    """Train the surrogate once (policy threads, untimed); the crafting command to time against it."""
    subprocess.run([*train, "--out", str(model_dir)], check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    command = [train[0], "craft", args.attack, args.dataset, "--model", str(model_dir), "--target", "1"]
    command += ["--count", str(args.count), "--steps", str(args.steps), "--victim", "test:0", "--seed", "0"]
    if args.data_dir:
        command += ["--data-dir", str(Path(args.data_dir).resolve())]
    return command


def _scan_command(args: argparse.Namespace) -> list[str]:
    """``poisonlab scan DATASET --method METHOD`` (the timing adds ``--out``)."""
    command = [str(ROOT / ".venv/bin/poisonlab"), "scan", args.dataset, "--method", args.method]
    if args.data_dir:
        command += ["--data-dir", str(Path(args.data_dir).resolve())]
    return command


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--load", type=int, default=0, help="busy-looping processes beside the timings")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", choices=("train", "craft", "scan"), default="train")
    parser.add_argument("--method", default="autoencoder", help="--work scan: the detector")
    parser.add_argument("--attack", default="feature_collision", help="--work craft: the crafted attack")
    parser.add_argument("--count", type=int, default=25, help="--work craft: poisons")
    parser.add_argument("--steps", type=int, default=200, help="--work craft: optimisation steps")
    args = parser.parse_args()
    command = [
        str(ROOT / ".venv/bin/poisonlab"),
        "train",
        "--dataset",
        args.dataset,
        "--quiet",
        "--seed",
        "0",
    ]
    if args.data_dir:
        command += ["--data-dir", str(Path(args.data_dir).resolve())]
    if args.epochs:
        command += ["--epochs", str(args.epochs)]
    workdir = tempfile.TemporaryDirectory()
    if args.work == "craft":
        command = _craft_command(command, args, Path(workdir.name) / "surrogate")
    elif args.work == "scan":
        command = _scan_command(args)
    commit = _git_commit()  # before the runs: the code that is timed
    stop = mp.Event()
    spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(args.load)]
    for p in spinners:
        p.start()
    times: dict[str, list[float]] = {s: [] for s in args.settings}
    try:
        for round_ in range(args.repeats):
            order = args.settings if round_ % 2 == 0 else list(reversed(args.settings))
            for setting in order:
                times[setting].append(_time_once(command, setting))
                print(f"round {round_ + 1} {setting}: {times[setting][-1]:.1f} s", flush=True)
    finally:
        stop.set()
        for p in spinners:
            p.join(timeout=5)
        workdir.cleanup()
    medians = {s: statistics.median(v) for s, v in times.items()}
    result = {
        "benchmark": "threads",
        "work": args.work,
        "method": args.method if args.work == "scan" else None,
        "commit": commit,
        "environment": environment(),
        "command": command,
        "load_processes": args.load,
        "repeats": args.repeats,
        "seconds": times,
        "median_seconds": medians,
        "ratio_to_omp1": {s: medians[s] / medians["omp1"] for s in medians} if "omp1" in medians else None,
        "note": "single machine, single session; the load is busy-looping Python processes",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"median_seconds": medians, "ratio_to_omp1": result["ratio_to_omp1"]}, indent=2))


if __name__ == "__main__":
    main()
