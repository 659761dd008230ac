"""Benchmark: ImRecS latency and throughput against a real uvicorn process on loopback.

Serves the chapter's CNN (simple-cifar10, 32x32x3, 10 classes) with **untrained, seeded weights**:
latency and throughput do not depend on what the weights have learned. Measures

* single-image ``POST /v1/predict`` latency (p50 / p99) with 1 client and with 16 concurrent
  clients (closed loop, each client waits for its answer before sending the next), on a 32x32 PNG;
  the 16-client run is repeated ``--rounds`` times and the medians reported;
* batch throughput of ``POST /v1/predict/batch``: multipart PNG files and the chapter's JSON
  ``{"instances": ...}`` pixel arrays, images per second.

Clients and server share the machine's cores (the clients are Python threads with httpx), so the
figures include the load generator's own CPU cost.

    python benchmarks/service.py --out benchmarks/results/service.json
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from poisonlab.models import SimpleCifarCNN
from poisonlab.models.checkpoint import save_model
from poisonlab.service.audit import Actor
from poisonlab.service.auth import create_key
from poisonlab.service.db import Database
from poisonlab.service.settings import sqlite_url

CIFAR = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(tmp: Path, key_names: list[str]) -> tuple[Path, Path, list[str]]:
    """The untrained seeded model (``tmp/model``), a data folder (``tmp/data``) and one viewer key
    per name in its database: ``(data, model, keys)``."""
    torch.manual_seed(0)
    model = SimpleCifarCNN(input_shape=(32, 32, 3), num_classes=10).eval()
    save_model(model, tmp / "model", class_names=CIFAR, notes="untrained: speed benchmark only")
    data = tmp / "data"
    data.mkdir()
    db = Database(sqlite_url(data))
    with db.write() as session:
        keys = [create_key(session, name=n, role="viewer", actor=Actor("benchmark"))[0] for n in key_names]
    db.dispose()
    return data, tmp / "model", keys


def start_server(data: Path, model: Path, port: int, threads: int, workers: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-c",
        "from poisonlab.cli.main import main; main()",
        "serve",
        "--port",
        str(port),
        "--data",
        str(data),
        "--model",
        str(model),
        "--threads",
        str(threads),
        "--log-level",
        "warning",
        "--max-body-mb",
        "64",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).json()["status"] == "ok":
                return proc
        except (httpx.HTTPError, ValueError):
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def latency(url: str, key: str, image: bytes, clients: int, per_client: int) -> dict:
    """Closed-loop single-image predictions; returns p50/p99 in ms and requests/s."""
    times: list[float] = []
    lock = threading.Lock()

    def run() -> None:
        local = []
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as http:
            http.post("/v1/predict", files={"file": ("x.png", image)})  # connection warm-up
            for _ in range(per_client):
                start = time.perf_counter()
                r = http.post("/v1/predict", files={"file": ("x.png", image)})
                local.append(time.perf_counter() - start)
                assert r.status_code == 200, r.text
        with lock:
            times.extend(local)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {
        "clients": clients,
        "requests": len(times),
        **latency_ms(times),
        "requests_per_s": round(len(times) / wall, 1),
    }


def latency_ms(seconds: list[float]) -> dict:
    """p50, p99, mean and max of request latencies given in seconds, in milliseconds."""
    ms = np.array(seconds) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "mean_ms": round(float(ms.mean()), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def batch_throughput(url: str, key: str, images: np.ndarray, repeats: int) -> dict:
    pngs = [png_bytes(x) for x in images]
    files = [("files", (f"{i}.png", b, "image/png")) for i, b in enumerate(pngs)]
    body = json.dumps({"instances": images.tolist()}).encode()
    out = {}
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=120) as http:
        for name, send in (
            ("multipart_png", lambda: http.post("/v1/predict/batch", files=files)),
            (
                "json_instances",
                lambda: http.post(
                    "/v1/predict/batch", content=body, headers={"Content-Type": "application/json"}
                ),
            ),
        ):
            assert send().status_code == 200  # warm-up
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                r = send()
                best = min(best, time.perf_counter() - start)
                assert r.status_code == 200 and len(r.json()["predictions"]) == len(images)
            out[name] = {
                "batch": len(images),
                "best_seconds": round(best, 3),
                "images_per_s": round(len(images) / best),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/service.json"))
    parser.add_argument("--requests", type=int, default=400, help="single-image requests per configuration")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5, help="batch requests timed (best is kept)")
    parser.add_argument("--rounds", type=int, default=3, help="16-client runs (the machine is shared: noisy)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads of the server")
    parser.add_argument("--workers", type=int, default=2, help="inference threads of the server")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        data, model_dir, (key,) = prepare(Path(tmp), ["bench"])
        port = free_port()
        proc = start_server(data, model_dir, port, args.threads, args.workers)
        url = f"http://127.0.0.1:{port}"
        gc.collect()
        gc.freeze()  # the load generator's own garbage-collection pauses are not the server's latency
        try:
            image = png_bytes(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
            single = latency(url, key, image, 1, args.requests)
            rounds = [
                latency(url, key, image, 16, max(1, args.requests // 16) * 2) for _ in range(args.rounds)
            ]
            concurrent = {
                "rounds": rounds,
                "median_p50_ms": float(np.median([r["p50_ms"] for r in rounds])),
                "median_p99_ms": float(np.median([r["p99_ms"] for r in rounds])),
            }
            batch = batch_throughput(
                url, key, rng.integers(0, 256, (args.batch, 32, 32, 3), dtype=np.uint8), args.repeats
            )
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
    result = {
        "model": "simple-cifar10 (chapter CNN), 32x32x3, untrained seeded weights",
        "server": f"poisonlab serve (uvicorn, 1 process), {args.workers} inference threads x {args.threads} "
        "torch thread(s), device cpu",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        },
        "latency_1_client": single,
        "latency_16_clients": concurrent,
        "batch": batch,
        "targets": {"p99_ms_16_clients": 50, "batch_images_per_s": 1000},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
