"""Benchmark: images/s of a scan-sized forward pass (44,000 CIFAR-shaped images) per architecture.

Times :func:`poisonlab.inference.forward_pass` with penultimate features (what a scan asks for)
on the chapter CNN (``simple-cifar10``) and the airbench-style network (``airbench``), untrained
and seeded (speed does not depend on what the weights learned), best of ``--repeats`` after one
warm-up pass. With ``--data-dir`` the images are real CIFAR-10 (the 40,000 training images, then
validation images); without it they are uniformly random uint8 pixels, labelled ``synthetic``
in the record (throughput does not depend on the pixel values). ``reference`` rows time the
forward pass as it was before issue 15 (batches of 1,000, weights left in NCHW, a host copy per
batch, ``torch.no_grad``) on the same images. Besides the automatic thread choice, ``forward_pass``
runs pinned to 1 worker (one torch thread) and to ``--workers`` workers (that many batches at a
time, each on one torch thread). fp32 by default; ``--bf16`` adds bf16 autocast rows,
labelled with whether the CPU has AMX (without it bf16 measured slower than fp32 here).

    python benchmarks/inference.py --data-dir ../shared/datasets/cifar10-jpeg \\
        --out benchmarks/results/inference.json
    python benchmarks/inference.py --batch-sizes 64 128 256 1000 --archs simple-cifar10   # sweep
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import environment  # noqa: E402

from poisonlab.device import autocast, cpu_has_amx, resolve_device  # noqa: E402
from poisonlab.inference import default_batch_size, forward_pass, to_input  # noqa: E402
from poisonlab.models import build_model  # noqa: E402
from poisonlab.provenance import run_record  # noqa: E402
from poisonlab.threads import available_cores, choose_threads, estimate_flops, set_threads  # noqa: E402

SHAPE = (32, 32, 3)


def _images(n: int, data_dir: str | None) -> tuple[np.ndarray, str]:
    if data_dir is None:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, size=(n, *SHAPE), dtype=np.uint8), "synthetic (uniform random pixels)"
    from poisonlab.data.catalog import load_splits

    splits = load_splits("cifar10", data_dir=data_dir)
    x = np.concatenate([splits.train.x, splits.val.x])[:n]
    return x, f"CIFAR-10 (training + validation images, first {len(x)})"


def _model(arch: str, images: np.ndarray):
    torch.manual_seed(0)
    model = build_model({"arch": arch, "input_shape": list(SHAPE), "num_classes": 10}).eval()
    if hasattr(model, "init_whitening"):
        model.init_whitening(images[:5000])
    return model


@torch.no_grad()
def _reference(model, images: np.ndarray, bs: int, dev: torch.device, bf16: bool) -> None:
    """The forward pass before issue 15: NCHW weights, a host copy of every batch's outputs."""
    logits, feats = [], []
    for start in range(0, len(images), bs):
        x = to_input(images[start : start + bs], dev)
        with autocast(dev, bf16):
            f = model.features(x)
            z = model.head(f)
        logits.append(z.float().cpu())
        feats.append(f.float().cpu())
    torch.cat(logits), torch.cat(feats)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"need a whole number >= 1, got {text}")
    return value


def _pinned(threads: int, fn) -> None:
    """Run ``fn`` with poisonlab's thread choice fixed to ``threads`` (then back to automatic)."""
    set_threads(threads)
    try:
        fn()
    finally:
        set_threads(None)


def _time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _measure(arch: str, images: np.ndarray, args, dev: torch.device) -> list[dict]:
    rows = []
    precisions = ["fp32", "bf16"] if args.bf16 else ["fp32"]
    for precision in precisions:
        for bs in args.batch_sizes or [default_batch_size(dev)]:
            model = _model(arch, images)
            threads = choose_threads(estimate_flops(model, SHAPE) * bs)
            kw = {"features": True, "batch_size": bs, "device": dev, "precision": precision}
            modes = {"forward_pass": lambda m=model, kw=kw: forward_pass(m, images, **kw)}
            pinned: dict[str, int] = {}
            for workers in sorted({1, args.workers}):
                pinned[f"forward_pass, {workers} worker(s)"] = workers
                # explicit counts: 1 = one torch thread; N = N batches at a time, one thread each
                modes[f"forward_pass, {workers} worker(s)"] = lambda m=model, kw=kw, w=workers: _pinned(
                    w, lambda: forward_pass(m, images, **kw)
                )
            if args.compile:
                modes["forward_pass compile=True"] = lambda m=model, kw=kw: forward_pass(
                    m, images, compile=True, **kw
                )
            if args.reference:
                ref_model = _model(arch, images)  # its own copy: forward_pass converts weights in place
                modes["reference (before issue 15)"] = lambda m=ref_model, b=bs, p=precision: _reference(
                    m, images, b, dev, p == "bf16"
                )
            for mode, fn in modes.items():
                forward_pass(model, images[:1000], features=True, batch_size=bs, device=dev)  # warm-up
                seconds = _time(fn, args.repeats)
                label = precision if precision == "fp32" else f"bf16 ({'AMX' if cpu_has_amx() else 'no AMX'})"
                rows.append(
                    {
                        "arch": arch,
                        "mode": mode,
                        "precision": label,
                        "batch_size": bs,
                        "threads": pinned.get(mode, threads),  # a pinned row: its own count
                        "seconds": round(seconds, 3),
                        "images_per_second": round(len(images) / seconds, 1),
                    }
                )
                print(f"{arch:15s} {mode:28s} {label:14s} bs {bs:5d} threads {rows[-1]['threads']}: "
                      f"{rows[-1]['images_per_second']:9.1f} images/s", flush=True)  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("POISONLAB_DATA"))
    parser.add_argument("--n", type=int, default=44_000)
    parser.add_argument("--archs", nargs="+", default=["simple-cifar10", "airbench"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="default: forward_pass's own")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--workers",
        type=_positive,
        default=available_cores(),
        help="the pinned many-worker row (default: free cores)",
    )
    parser.add_argument("--bf16", action="store_true", help="also time bf16 autocast (labelled)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time compile=True (best of --repeats: after the first, compiled call)",
    )
    parser.add_argument("--no-reference", dest="reference", action="store_false")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="benchmarks/results/inference.json")
    args = parser.parse_args()
    dev = resolve_device(args.device)
    images, source = _images(args.n, args.data_dir)
    rows = [row for arch in args.archs for row in _measure(arch, images, args, dev)]
    record = run_record(
        "benchmark",
        config=vars(args),
        extra={
            "benchmark": "inference",
            "images": source,
            "n": len(images),
            "device": str(dev),
            "features": True,
            "rows": rows,
            "machine": environment(),
            "poisonlab_threads_env": os.environ.get("POISONLAB_THREADS"),
            "load_average_end": list(os.getloadavg()),
        },
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
