"""Benchmark: does one key flooding ``POST /v1/predict`` slow another key down? (issue 13)

A real ``poisonlab serve`` process on loopback (default settings: 50 requests/s and bursts of 200
per key) serves the chapter's CNN with untrained seeded weights (32x32x3 PNGs, as in
``benchmarks/service.py``). Phases of ``--seconds`` each:

1. **alone**: key B sends single-image predictions open-loop at ``--rate`` requests/s (each
   on its own schedule slot, whatever the previous answer's latency), alone;
2. **flooded**: the same, while key A floods the same route at full speed from ``--flood-threads``
   threads in a separate process (so that the flood's client-side CPU and GIL do not sit inside
   B's process and timings);
3. **control** (``--control-rate``): the same, with key A paced just under its limit: the work
   the limiter admits from A, without the refused part of the flood.

Reported: A's requests and the share answered 429 (with ``Retry-After``), B's p50/p99 latency in
each phase and B's p99 flooded / alone (target: < 2); the control phase tells how much of B's loss
is A's admitted predictions rather than the refusals. Clients and server share the machine's
cores, so A's client is part of the load; on a shared machine label the result with ``--note``.

    python benchmarks/ratelimit.py --out benchmarks/results/ratelimit.json --note "quiet machine"
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
from _machine import environment  # noqa: E402
from service import free_port, latency_ms, png_bytes, prepare, start_server  # noqa: E402

from poisonlab.provenance import run_record  # noqa: E402

TARGET_P99_RATIO = 2.0


def flood(url: str, key: str, image: bytes, threads: int, rate: float, started, stop, out) -> None:
    """Key A: ``threads`` clients sending until ``stop``, as fast as answers come back (``rate``
    0) or paced at ``rate`` requests/s in all.

    Sets ``started`` once the clients run; puts the statuses counted, the 429s without a
    ``Retry-After`` and the seconds sent on ``out``.
    """
    counts: Counter[int] = Counter()
    missing_retry = [0]
    lock = threading.Lock()

    def client() -> None:
        local: Counter[int] = Counter()
        no_retry = 0
        interval, begin = threads / rate if rate else 0.0, time.perf_counter()
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as http:
            while not stop.is_set():
                delay = begin + sum(local.values()) * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                try:
                    r = http.post("/v1/predict", files={"file": ("x.png", image)})
                except httpx.HTTPError:
                    local[0] += 1  # no answer (a connection the server closed after a 429)
                    continue
                local[r.status_code] += 1
                no_retry += r.status_code == 429 and "retry-after" not in r.headers
        with lock:
            counts.update(local)
            missing_retry[0] += no_retry

    pool = [threading.Thread(target=client) for _ in range(threads)]
    begin = time.perf_counter()
    for t in pool:
        t.start()
    started.set()
    for t in pool:
        t.join()
    seconds = time.perf_counter() - begin
    out.put({"statuses": dict(counts), "429_without_retry_after": missing_retry[0], "seconds": seconds})


def paced(url: str, key: str, image: bytes, rate: float, seconds: float) -> dict:
    """Key B: open-loop requests at ``rate`` per second for ``seconds``; latencies and statuses."""
    times: list[float] = []
    statuses: Counter[int] = Counter()
    interval, count = 1.0 / rate, int(rate * seconds)
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as http:
        http.post("/v1/predict", files={"file": ("x.png", image)})  # connection warm-up
        start = time.perf_counter()
        for i in range(count):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            r = http.post("/v1/predict", files={"file": ("x.png", image)})
            times.append(time.perf_counter() - sent)
            statuses[r.status_code] += 1
    return {"requests": count, "statuses": dict(statuses), **latency_ms(times)}


def with_key_a(url: str, keys: list[str], image: bytes, a_rate: float, args: argparse.Namespace) -> dict:
    """Key B's latencies while key A sends from another process (``a_rate`` 0: at full speed)."""
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that has run torch
    out, started, stop = ctx.Queue(), ctx.Event(), ctx.Event()
    sender = ctx.Process(
        target=flood, args=(url, keys[0], image, args.flood_threads, a_rate, started, stop, out)
    )
    sender.start()
    if not started.wait(120):
        raise RuntimeError("key A's process did not start")
    time.sleep(args.lead)  # A is at full speed and its burst is spent before B starts
    b = paced(url, keys[1], image, args.rate, args.seconds)
    stop.set()
    a = out.get(timeout=120)
    sender.join(30)
    total, seconds = sum(a["statuses"].values()), a["seconds"]
    key_a = {
        "threads": args.flood_threads,
        "paced_rate": a_rate or None,
        "seconds": round(seconds, 1),
        "requests": total,
        "requests_per_s": round(total / seconds, 1),
        "statuses": a["statuses"],
        "share_429": round(a["statuses"].get(429, 0) / max(1, total), 4),
        "429_without_retry_after": a["429_without_retry_after"],
    }
    return {"key_a": key_a, "key_b": b}


def measure(url: str, keys: list[str], image: bytes, args: argparse.Namespace) -> dict:
    """The phases; returns A's 429 share and B's latencies with their ratios to B alone."""
    for key in keys:  # a key's first request proves it; afterwards it draws on its own bucket
        r = httpx.post(f"{url}/v1/predict", files={"file": ("x.png", image)}, headers={"X-API-Key": key})
        if r.status_code != 200:
            raise RuntimeError(f"warm-up prediction failed: {r.status_code} {r.text}")
    alone = paced(url, keys[1], image, args.rate, args.seconds)
    flooded = with_key_a(url, keys, image, 0.0, args)
    result = {"key_b_alone": alone, "key_a_flooding": flooded}
    if args.control_rate:
        # A at (just under) its limit: no 429, the same admitted work as under the flood; what B
        # loses here is the cost of A's admitted predictions, not of refusing its flood
        result["key_a_at_its_limit"] = with_key_a(url, keys, image, args.control_rate, args)
    ratio = flooded["key_b"]["p99_ms"] / alone["p99_ms"]
    result["key_b_p99_ratio_flooded"] = round(ratio, 2)
    if args.control_rate:
        control = result["key_a_at_its_limit"]["key_b"]["p99_ms"] / alone["p99_ms"]
        result["key_b_p99_ratio_a_at_its_limit"] = round(control, 2)
    result["target"] = {"key_b_p99_ratio_below": TARGET_P99_RATIO, "met": bool(ratio < TARGET_P99_RATIO)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ratelimit.json"))
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--rate", type=float, default=20.0, help="key B's requests per second (limit: 50)")
    parser.add_argument("--flood-threads", type=int, default=4, help="key A's concurrent clients")
    parser.add_argument("--lead", type=float, default=3.0, help="seconds of flood before B is measured")
    parser.add_argument(
        "--control-rate",
        type=float,
        default=48.0,
        help="a third phase with key A paced at this rate (just under its limit of 50/s); 0: none",
    )
    parser.add_argument("--note", default="", help="how loaded the machine was (it is part of the result)")
    args = parser.parse_args()
    load_start = list(os.getloadavg())
    image = png_bytes(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    with tempfile.TemporaryDirectory() as tmp:
        data, model_dir, keys = prepare(Path(tmp), ["key-a", "key-b"])
        port = free_port()
        proc = start_server(data, model_dir, port, threads=1, workers=2)
        try:
            result = measure(f"http://127.0.0.1:{port}", keys, image, args)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
    record = run_record(
        "benchmark",
        config={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        extra={
            "benchmark": "ratelimit",
            "server": "poisonlab serve (uvicorn, 1 process), default rate limits (50/s, burst 200 per key), "
            "2 inference threads x 1 torch thread, simple-cifar10 untrained, 32x32x3 PNG",
            **result,
            "machine": environment(),
            "note": args.note,
            "load_average_start": [round(v, 2) for v in load_start],
            "load_average_end": [round(v, 2) for v in os.getloadavg()],
        },
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
