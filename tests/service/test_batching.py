"""Dynamic batching: concurrent requests share passes, results go back to the right caller."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from poisonlab.service.batching import InferenceQueue


def test_results_return_to_their_callers_and_requests_are_coalesced():
    sizes: list[int] = []
    gate = threading.Event()

    def run(model, images):
        gate.wait(5)  # hold the first pass so that the others pile up in the queue
        sizes.append(len(images))
        return np.stack([images.reshape(len(images), -1).sum(axis=1) * model, np.zeros(len(images))], axis=1)

    queue = InferenceQueue(run, workers=1, max_batch=64)
    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            futures = [pool.submit(queue.predict, 2, np.full((1, 2, 2, 1), i, np.uint8)) for i in range(20)]
            threading.Timer(0.3, gate.set).start()
            results = [f.result(10) for f in futures]
        assert [r[0, 0] for r in results] == [2 * 4 * i for i in range(20)]
        assert sum(sizes) == 20 and len(sizes) < 20  # fewer passes than requests
    finally:
        queue.close()


def test_large_batches_are_split_and_errors_reach_every_caller():
    queue = InferenceQueue(lambda _m, x: x.reshape(len(x), -1)[:, :2].astype(float), workers=2, max_batch=8)
    try:
        out = queue.predict("m", np.arange(50 * 4, dtype=np.uint8).reshape(50, 2, 2, 1))
        assert out.shape == (50, 2) and out[49, 0] == 196
    finally:
        queue.close()

    def broken(_model, _images):
        raise RuntimeError("out of memory")

    failing = InferenceQueue(broken, workers=1)
    try:
        with pytest.raises(RuntimeError, match="out of memory"):
            failing.predict("m", np.zeros((3, 2, 2, 1), np.uint8))
    finally:
        failing.close()
    with pytest.raises(ValueError, match=">= 1"):
        InferenceQueue(broken, workers=0)
