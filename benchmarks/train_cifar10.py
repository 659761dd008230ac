"""Benchmark: train a CIFAR-10 network with a named recipe, time to 85/90/93% and final accuracy.

Trains on the 40,000-image training split, one run per ``--seeds`` entry. After every epoch
(outside the timed training) the model is evaluated on the 10,000-image VALIDATION split,
plain and with the recipe's test-time augmentation (TTA: flip + 1-pixel translations, airbench's
evaluation); the time to 85/90/93% is the cumulative training wall time of the first epoch that
reaches it. The test split is evaluated once per run, after the last epoch, with and without TTA.
Hyper-parameters are chosen on the validation split only. fp32 by default; ``--bf16`` only where
the CPU has AMX (or on a GPU), labelled in the record. The JSON record carries the provenance
(:func:`poisonlab.provenance.run_record`: commit, versions, command), the machine and the threads.

    python benchmarks/train_cifar10.py --arch airbench --preset airbench --seeds 0 1 2 \\
        --data-dir ../shared/datasets/cifar10-jpeg
    python benchmarks/train_cifar10.py --preset chapter-fast --seeds 0 1 2 \\
        --data-dir ../shared/datasets/cifar10-jpeg

A quick end-to-end check on real data (not a measurement): ``--train-size 2000 --val-size 1000
--epochs 1``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import environment  # noqa: E402

from poisonlab.data.catalog import load_splits  # noqa: E402
from poisonlab.device import cpu_has_amx  # noqa: E402
from poisonlab.inference import forward_pass  # noqa: E402
from poisonlab.provenance import run_record  # noqa: E402
from poisonlab.training import PRESETS, TrainConfig, train  # noqa: E402
from poisonlab.training.config import airbench_sgd, apply_settings, base_recipe  # noqa: E402

THRESHOLDS = (0.85, 0.90, 0.93)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("POISONLAB_DATA"))
    parser.add_argument("--arch", choices=["simple-cifar10", "airbench", "preact-resnet18"])
    parser.add_argument("--preset", choices=sorted(PRESETS), help="default: poisonlab's cifar10 recipe")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument(
        "--batch-size",
        type=int,
        help="override the batch size; with --preset airbench the lr and weight decay follow the "
        "paper's per-1,024-example rule (poisonlab.training.config.airbench_sgd)",
    )
    parser.add_argument("--set", action="append", default=[], help="override a field: key=json-value")
    parser.add_argument("--train-size", type=int, help="first N training images only (smoke checks)")
    parser.add_argument("--val-size", type=int, help="first N validation images only (smoke checks)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast; only with AMX or a GPU")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", help="default: benchmarks/results/train_cifar10-<arch>-<preset>.json")
    args = parser.parse_args()
    if args.bf16 and not (cpu_has_amx() or torch.cuda.is_available()):
        parser.error("--bf16 needs a CPU with AMX or a GPU: without AMX bf16 measured slower than fp32")
    return args


def _config(args: argparse.Namespace, seed: int) -> TrainConfig:
    cfg = base_recipe("cifar10", preset=args.preset)
    settings: dict = {"seed": seed, "precision": "bf16" if args.bf16 else "fp32"}
    if args.arch is not None:
        settings["model"] = {"arch": args.arch}
    if args.epochs is not None:
        settings["epochs"] = args.epochs
    if args.batch_size is not None:
        settings["batch_size"] = args.batch_size
        if args.preset == "airbench":
            settings["lr"], settings["weight_decay"] = airbench_sgd(args.batch_size)
    for item in args.set:
        key, _, value = item.partition("=")
        settings[key] = json.loads(value)
    return apply_settings(cfg, settings)


def _accuracies(model, data, tta, device: str) -> tuple[float, float | None]:
    """(plain, TTA) accuracy from one pass; TTA None when the recipe has none."""
    out = forward_pass(model, data.x, tta=tta, device=device)
    plain = out.logits if tta is None else out.plain_logits
    acc = float((plain.argmax(1) == data.y).mean())
    return acc, None if tta is None else float((out.predictions == data.y).mean())


def _time_to(curve: list[dict], key: str) -> dict[str, float | None]:
    """Cumulative training seconds of the first epoch whose ``key`` reaches each threshold."""
    out: dict[str, float | None] = {}
    for t in THRESHOLDS:
        hit = next((c["train_seconds"] for c in curve if (c[key] or 0.0) >= t), None)
        out[f"{t:.2f}"] = hit
    return out


def _run_seed(splits, cfg: TrainConfig, device: str) -> dict:
    tta = cfg.test_time_augmentation()
    curve: list[dict] = []
    threads: set[int] = set()
    clock = {"start": time.perf_counter(), "callbacks": 0.0}

    def log(stats, model) -> None:
        t0 = time.perf_counter()
        # training wall so far, setup (whitening) included, evaluations excluded: train()'s clock
        elapsed = t0 - clock["start"] - clock["callbacks"]
        threads.add(torch.get_num_threads())  # inside train(): the training's thread count
        val, val_tta = _accuracies(model, splits.val, tta, device)
        curve.append(
            {
                "epoch": stats.epoch,
                "train_seconds": round(elapsed, 2),
                "val_accuracy": val,
                "val_tta_accuracy": val_tta,
                "train_accuracy": round(stats.train_accuracy, 4),
                "train_loss": round(stats.train_loss, 4),
                "lr": stats.lr,
                "eval_seconds": round(time.perf_counter() - t0, 2),
            }
        )
        tta_text = "" if val_tta is None else f"  val TTA {val_tta:.4f}"
        print(f"  epoch {stats.epoch:3d}  train wall {elapsed:7.1f}s  val {val:.4f}{tta_text}", flush=True)
        clock["callbacks"] += time.perf_counter() - t0

    result = train(splits.train, cfg, device=device, progress=False, on_epoch_end=log)
    t0 = time.perf_counter()
    test, test_tta = _accuracies(result.model, splits.test, tta, device)  # the test set, once
    return {
        "seed": cfg.seed,
        "train_wall_seconds": round(result.seconds, 2),
        "test_accuracy": test,
        "test_tta_accuracy": test_tta,
        "test_eval_seconds": round(time.perf_counter() - t0, 2),
        "time_to_val_tta": _time_to(curve, "val_tta_accuracy") if tta is not None else None,
        "time_to_val": _time_to(curve, "val_accuracy"),
        "train_threads": sorted(threads),
        "curve": curve,
    }


def _summary(runs: list[dict]) -> dict:
    def stats(key: str) -> dict | None:
        values = [r[key] for r in runs if r[key] is not None]
        if not values:
            return None
        return {"mean": statistics.fmean(values), "min": min(values), "max": max(values), "n": len(values)}

    return {k: stats(k) for k in ("test_accuracy", "test_tta_accuracy", "train_wall_seconds")}


def _subset(data, n: int | None):
    return data if n is None else data.subset(np.arange(min(n, len(data))))


def main() -> None:
    args = _parse()
    t_load = time.perf_counter()
    splits = load_splits("cifar10", data_dir=args.data_dir)
    splits = type(splits)(
        train=_subset(splits.train, args.train_size), val=_subset(splits.val, args.val_size), test=splits.test
    )
    load_seconds = time.perf_counter() - t_load
    runs, configs = [], []
    for seed in args.seeds:
        cfg = _config(args, seed)
        configs.append(cfg.model_dump(mode="json"))
        print(
            f"seed {seed}: {cfg.model.arch}, preset {args.preset or 'default'}, {cfg.precision}", flush=True
        )
        runs.append(_run_seed(splits, cfg, args.device))
        r = runs[-1]
        tta = r["test_tta_accuracy"]
        print(f"  train {r['train_wall_seconds']:.1f}s  test {r['test_accuracy']:.4f}  test TTA {tta}")
    arch, preset = configs[0]["model"]["arch"], args.preset or "default"
    out = Path(args.out or f"benchmarks/results/train_cifar10-{arch}-{preset}.json")
    record = run_record(
        "benchmark",
        config=configs[0],
        extra={
            "benchmark": "train_cifar10",
            "arch": arch,
            "preset": preset,
            "precision": configs[0]["precision"] + (" (AMX)" if args.bf16 and cpu_has_amx() else ""),
            "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
            "smoke_check": args.train_size is not None or args.val_size is not None,
            "data_load_seconds": round(load_seconds, 2),
            "thresholds": list(THRESHOLDS),
            "summary": _summary(runs),
            "runs": runs,
            "machine": environment(),
            "poisonlab_threads_env": os.environ.get("POISONLAB_THREADS"),
            "load_average_end": list(os.getloadavg()),
        },
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["summary"], indent=2), f"-> {out}", sep="\n")


if __name__ == "__main__":
    main()
