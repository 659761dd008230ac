"""Cost of the default screen on CIFAR-10: seconds per detector, forward passes, peak memory.

What it measures: :func:`poisonlab.defenses.scan.scan` with no methods (the default screen,
the trusted-anchored k-NN included) over the CIFAR-10 training split (40,000 images) with the
validation split (10,000) as the trusted set, on the chapter's CNN. Only cost, never detection:
by default the CNN is *randomly initialised* (seeded), because no trained CIFAR-10 model fits in
a 2-core session next to other work; forward passes and the detectors' arithmetic cost the same
on trained weights, but the clustering detectors' time depends somewhat on the structure of the
features (HDBSCAN, the EM of SCAn), so the figure is labelled as such. Give ``--model DIR`` to
measure a trained model instead.

Peak memory is the process's resident-set high-water mark during the scan (Linux
``/proc/self/status`` VmHWM after a ``clear_refs`` reset), with the start figure beside it.

Reproduce::

    POISONLAB_DATA=../shared/datasets/cifar10-jpeg .venv/bin/python benchmarks/screen_cost.py \
        --out benchmarks/results/screen_cost_cifar10.json
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from poisonlab.data.catalog import load_splits, resolve_data_dir
from poisonlab.defenses.scan import scan
from poisonlab.models.registry import build_model
from poisonlab.models.store import load_model_ref
from poisonlab.provenance import git_commit, package_versions
from poisonlab.threads import set_threads

_STATUS = Path("/proc/self/status")


def _mib(field: str) -> float | None:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a trained model folder or registry reference (default: random init)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    threads = set_threads(args.threads) if args.threads else None
    splits = load_splits("cifar10", data_dir=resolve_data_dir("cifar10", None))
    if args.model:
        model = load_model_ref(args.model)[0]
    else:
        torch.manual_seed(args.seed)
        model = build_model({"arch": "simple-cifar10", "input_shape": (32, 32, 3), "num_classes": 10})
    model.eval()
    rss_start = _mib("VmRSS")
    _STATUS.with_name("clear_refs").write_text("5")
    start = time.perf_counter()
    result = scan(splits.train, None, model=model, trusted=splits.val, device="cpu")
    seconds = time.perf_counter() - start
    record = {
        "what": "default screen cost on CIFAR-10 (train 40,000, trusted 10,000), chapter CNN",
        "model": args.model or f"random init, seed {args.seed} (cost only: no detection figures)",
        "seconds_total": seconds,
        "forward_seconds_penultimate": result.forward_seconds,
        "detector_seconds": {m.name: m.seconds for m in result.methods},
        "rss_start_mib": rss_start,
        "rss_peak_mib": _mib("VmHWM"),
        "flagged_by_screen": int(result.screen.flagged.sum()) if result.screen is not None else None,
        "threads": threads or torch.get_num_threads(),
        "commit": git_commit(),
        "versions": package_versions(),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "single_run": True,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
