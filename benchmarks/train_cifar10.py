"""Benchmark: train the chapter's CNN on the 40k CIFAR-10 split with poisonlab's default recipe.

Logs test accuracy (evaluated after every epoch, outside the timed training) and the cumulative
training wall time per epoch, then writes a JSON record. The exact command and results are in
BENCHMARKS.md.

    python benchmarks/train_cifar10.py --data-dir ../shared/datasets/cifar10-jpeg \
        --out benchmarks/results/train_cifar10.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from poisonlab.data.catalog import load_splits
from poisonlab.inference import forward_pass
from poisonlab.training import TrainConfig, default_recipe, load_train_config, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("POISONLAB_DATA"))
    parser.add_argument("--config", help="training config file (default: poisonlab's cifar10 recipe)")
    parser.add_argument("--set", action="append", default=[], help="override a field: key=json-value")
    parser.add_argument("--out", default="benchmarks/results/train_cifar10.json")
    args = parser.parse_args()

    cfg = load_train_config(args.config) if args.config else default_recipe("cifar10")
    if args.set:
        data = cfg.model_dump()
        for item in args.set:
            key, _, value = item.partition("=")
            data[key] = json.loads(value)
        cfg = TrainConfig.model_validate(data)
    t_load = time.perf_counter()
    splits = load_splits("cifar10", data_dir=args.data_dir)
    load_seconds = time.perf_counter() - t_load
    curve: list[dict] = []
    elapsed = 0.0

    def log(stats, model) -> None:
        nonlocal elapsed
        elapsed += stats.seconds
        acc = float((forward_pass(model, splits.test.x).predictions == splits.test.y).mean())
        curve.append(
            {
                "epoch": stats.epoch,
                "train_seconds": round(elapsed, 1),
                "test_accuracy": acc,
                "train_accuracy": round(stats.train_accuracy, 4),
                "lr": stats.lr,
            }
        )
        print(f"epoch {stats.epoch:3d}  wall {elapsed:7.1f}s  test acc {acc:.4f}", flush=True)

    result = train(splits.train, cfg, val_data=None, progress=False, on_epoch_end=log)
    record = {
        "benchmark": "train_cifar10",
        "config": cfg.model_dump(mode="json"),
        "data_load_seconds": round(load_seconds, 2),
        "train_wall_seconds": round(result.seconds, 1),
        "final_test_accuracy": curve[-1]["test_accuracy"],
        "curve": curve,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(
        f"train wall {result.seconds:.1f}s, final test accuracy {record['final_test_accuracy']:.4f} -> {out}"
    )


if __name__ == "__main__":
    main()
