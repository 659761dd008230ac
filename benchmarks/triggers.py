"""Benchmark: throughput of poisonlab's triggers against IBM ART 1.20.1 on CIFAR-10 training images.

Loads ``--n`` training images from ``<data-dir>/cifar-10-batches-py/data_batch_*`` (read here
directly: pickle, ``b"data"`` N x 3072 uint8, channel-major), converts them to float32 in [0, 1]
NHWC and times each trigger, best of ``--repeats`` runs, ours and ART's side by side.  ART's
``insert_image`` loops over images in Python with Pillow, so it is timed on the first
``--art-insert-n`` images only (throughput is per image either way).  Before timing, every ART
row's output is compared with ours on a subset and the table says whether they are identical.

    python benchmarks/triggers.py --data-dir ../shared/datasets/cifar10-jpeg \\
        --out benchmarks/results/triggers.json
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import sys
import time
from pathlib import Path

import numpy as np
import PIL
from _machine import cpu_model

from poisonlab.triggers import add_pattern_bd, add_single_bd, default_trigger_path, get_trigger, insert_image

ALERT = default_trigger_path("alert")
INSERT_FIXED = dict(size=(8, 8), mode="RGB", blend=1.0, random=False, x_shift=19, y_shift=19)
INSERT_RANDOM = dict(size=(8, 8), mode="RGB", blend=1.0, random=True)


def load_cifar_train(data_dir: Path, n: int) -> np.ndarray:
    """First ``n`` CIFAR-10 training images as uint8 ``(n, 32, 32, 3)``."""
    parts, have = [], 0
    for batch in sorted((data_dir / "cifar-10-batches-py").glob("data_batch_*")):
        with open(batch, "rb") as f:
            data = pickle.load(f, encoding="bytes")[b"data"]
        parts.append(np.asarray(data, np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        have += len(parts[-1])
        if have >= n:
            break
    if have < n:
        raise SystemExit(f"only {have} training images under {data_dir}, asked for {n}")
    return np.ascontiguousarray(np.concatenate(parts)[:n])


def best_rate(fn, x: np.ndarray, repeats: int) -> float:
    """Images per second of ``fn(x)``, best of ``repeats`` runs."""
    fn(x[:64])  # warm-up: imports, caches
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - start)
    return len(x) / best


def cases(art) -> list[tuple]:
    """``(name, ours, art_fn or None, subset)`` rows; ``subset``: time ART on the small subset."""
    rows = [
        ("add_single_bd", lambda x: add_single_bd(x, 2, 1), "add_single_bd", (2, 1), {}, False),
        ("add_pattern_bd", lambda x: add_pattern_bd(x, 2, 1), "add_pattern_bd", (2, 1), {}, False),
        (
            "insert_image (8x8, blend=1, random=False)",
            lambda x: insert_image(x, ALERT, **INSERT_FIXED),
            "insert_image",
            (str(ALERT),),
            INSERT_FIXED,
            True,
        ),
        (
            "insert_image (8x8, blend=1, random=True)",
            lambda x: insert_image(x, ALERT, **INSERT_RANDOM),
            "insert_image",
            (str(ALERT),),
            INSERT_RANDOM,
            True,
        ),
    ]
    table = []
    for name, ours, art_name, art_args, art_kwargs, subset in rows:
        art_fn = None if art is None else _bind(getattr(art, art_name), art_args, art_kwargs)
        table.append((name, ours, art_fn, subset))
    for name in ("cyan_square_add", "cyan_square_replace", "blended"):
        table.append((f"registry {name} (ours only)", get_trigger(name), None, False))
    return table


def _bind(fn, args: tuple, kwargs: dict):
    """``x -> fn(x, *args, **kwargs)``."""
    return lambda x: fn(x, *args, **kwargs)


def identical(ours, art_fn, x: np.ndarray) -> bool:
    """Whether both give the same output on ``x`` (same global RNG state for random placement)."""
    np.random.seed(0)
    a = art_fn(x)
    np.random.seed(0)
    return bool(np.array_equal(ours(x), a))


def run(x: np.ndarray, art, art_insert_n: int, repeats: int) -> list[dict]:
    results = []
    for name, ours, art_fn, subset in cases(art):
        row = {"trigger": name, "ours_img_per_s": best_rate(ours, x, repeats), "n_ours": len(x)}
        if art_fn is not None:
            xa = x[:art_insert_n] if subset else x
            row.update(identical=identical(ours, art_fn, x[:500]), n_art=len(xa))
            row["art_img_per_s"] = best_rate(art_fn, xa, repeats)
            row["speedup"] = row["ours_img_per_s"] / row["art_img_per_s"]
        results.append(row)
        print(f"  {name}: done", file=sys.stderr)
    return results


def markdown(results: list[dict]) -> str:
    lines = [
        "| trigger | ours (img/s) | ART 1.20.1 (img/s) | speed-up | identical output |",
        "|---|---:|---:|---:|:---:|",
    ]
    for r in results:
        if "art_img_per_s" in r:
            art_col = f"{r['art_img_per_s']:,.0f} (n={r['n_art']:,})"
            lines.append(
                f"| {r['trigger']} | {r['ours_img_per_s']:,.0f} | {art_col} | {r['speedup']:.1f}x | "
                f"{'yes' if r['identical'] else 'NO'} |"
            )
        else:
            lines.append(f"| {r['trigger']} | {r['ours_img_per_s']:,.0f} | - | - | - |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = os.environ.get("POISONLAB_DATA", "../shared/datasets/cifar10-jpeg")
    parser.add_argument("--data-dir", default=default_data, help="folder holding cifar-10-batches-py")
    parser.add_argument("--n", type=int, default=40000, help="training images to load (default 40000)")
    parser.add_argument("--art-insert-n", type=int, default=4000, help="images for ART's slow insert_image")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row; the best counts")
    parser.add_argument("--out", default="benchmarks/results/triggers.json", help="JSON file to write")
    parser.add_argument("--no-art", action="store_true", help="time ours only")
    args = parser.parse_args()

    art = None
    if not args.no_art:
        from art.attacks.poisoning import perturbations as art

    x = load_cifar_train(Path(args.data_dir), args.n).astype(np.float32) / np.float32(255)
    results = run(x, art, args.art_insert_n, args.repeats)
    table = markdown(results)
    print(table)
    record = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "n": args.n,
        "repeats": args.repeats,
        "input": "CIFAR-10 training images, float32 NHWC in [0, 1]",
        "machine": {"nproc": len(os.sched_getaffinity(0)), "cpu": cpu_model()},
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pillow": PIL.__version__,
            "art": getattr(sys.modules.get("art"), "__version__", None),
        },
        "results": results,
        "markdown": table,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
