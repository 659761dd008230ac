"""The process-wide decode budget: concurrent decodes together hold at most its bytes of pixel
buffers, a request waits a bounded time for room (else 503 ``decode_busy`` with Retry-After), in
arrival order, and every reservation comes back, failed decodes included."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from poisonlab.data.image_limits import ImageLimits, decode_cost
from poisonlab.service import decode
from poisonlab.service.decode_budget import DecodeBudget, MiB
from poisonlab.service.errors import Rejected

SIDE = 160  # decode_cost(160, 160) = 512,000 bytes: two fit in the smallest budget (1 MiB)


def _png(side: int = SIDE, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _truncated_png() -> bytes:
    """A readable header (so the cost is known and reserved), pixels cut off (the decode fails)."""
    data = _png(seed=1)
    return data[: len(data) // 2]


class Watch:
    """Wraps the decode of one image: records the budget's bytes in use while decoding."""

    def __init__(self, budget: DecodeBudget, pause: float = 0.02) -> None:
        self.budget, self.pause = budget, pause
        self.peak, self.active, self.most_active = 0, 0, 0
        self._lock = threading.Lock()

    def wrap(self, original):
        def decode_one(*args, **kwargs):
            with self._lock:
                self.active += 1
                self.most_active = max(self.most_active, self.active)
                self.peak = max(self.peak, self.budget.used)
            try:
                time.sleep(self.pause)  # hold the reservation long enough for others to pile up
                return original(*args, **kwargs)
            finally:
                with self._lock:
                    self.active -= 1

        return decode_one


def test_cost_is_an_upper_bound_known_from_the_header():
    assert decode_cost(SIDE, SIDE) == 20 * SIDE * SIDE
    assert decode_cost(100, 4000) == 4 * 4000 * 4000 + 16 * 100 * 4000  # the padded square counts


def test_budget_validates_its_arguments():
    with pytest.raises(ValueError, match="capacity"):
        DecodeBudget(0, max_wait_s=1)
    with pytest.raises(ValueError, match="max_wait_s"):
        DecodeBudget(10, max_wait_s=-1)
    with pytest.raises(ValueError, match="cost"), DecodeBudget(10, max_wait_s=0).reserve(-1):
        pass


def test_budget_is_respected_by_concurrent_threads_and_released_on_errors():
    budget = DecodeBudget(100, max_wait_s=10)
    peak, lock = [0], threading.Lock()

    def work(i: int) -> None:
        with budget.reserve(10 + 7 * (i % 5)):
            with lock:
                peak[0] = max(peak[0], budget.used)
            time.sleep(0.002)
            if i % 3 == 0:
                raise OSError("a decode that fails")

    with ThreadPoolExecutor(max_workers=12) as pool:
        futures = [pool.submit(work, i) for i in range(60)]
        errors = [f.exception() for f in futures]
    assert sum(isinstance(e, OSError) for e in errors) == 20 and errors.count(None) == 40
    assert 0 < peak[0] <= 100
    assert budget.used == 0 and budget.waiting == 0


def test_no_room_in_time_is_a_503_with_retry_after_and_holds_nothing():
    budget = DecodeBudget(100, max_wait_s=0.05)
    with budget.reserve(80):
        start = time.monotonic()
        with pytest.raises(Rejected) as refused, budget.reserve(30):
            pass
        assert time.monotonic() - start >= 0.04  # it waited, bounded
        assert budget.used == 80 and budget.waiting == 0
    assert refused.value.status == 503 and refused.value.code == "decode_busy"
    assert refused.value.headers == {"Retry-After": "1"}
    assert budget.used == 0


def test_a_decode_larger_than_the_budget_runs_alone_and_is_not_starved():
    budget = DecodeBudget(100, max_wait_s=5)
    order: list[str] = []
    small_held = threading.Event()
    release_small = threading.Event()

    def hold_small() -> None:
        with budget.reserve(30):
            small_held.set()
            release_small.wait(5)

    def take(name: str, cost: int) -> None:
        with budget.reserve(cost) as held:
            order.append(f"{name}:{held}:{budget.used}")

    holder = threading.Thread(target=hold_small)
    holder.start()
    small_held.wait(5)
    big = threading.Thread(target=take, args=("big", 10_000))  # clamped to the whole budget
    big.start()
    while budget.waiting < 1:
        time.sleep(0.001)
    late = threading.Thread(target=take, args=("late", 10))  # fits, but arrived after big
    late.start()
    while budget.waiting < 2:
        time.sleep(0.001)
    assert order == []  # first come, first served: the small late one waits behind the big one
    release_small.set()
    for t in (holder, big, late):
        t.join(5)
    assert order == ["big:100:100", "late:10:10"]
    assert budget.used == 0


def test_decode_files_reserves_the_largest_file_once_and_releases_on_a_bad_file(monkeypatch):
    budget = DecodeBudget(10 * MiB, max_wait_s=1)
    asked: list[int] = []
    reserve = budget.reserve

    def spy(cost: int, **kwargs):
        asked.append(cost)
        return reserve(cost, **kwargs)

    monkeypatch.setattr(budget, "reserve", spy)
    files = [(_png(8), "a.png"), (_png(SIDE), "b.png"), (_png(32), "c.png")]
    limits = ImageLimits(max_pixels=10**6, max_side=1000, max_bytes=10**6)
    out = decode.decode_files(files, (8, 8, 1), limits=limits, max_total_pixels=10**6, budget=budget)
    assert out.shape == (3, 8, 8, 1) and asked == [decode_cost(SIDE, SIDE)]
    with pytest.raises(decode.ImageRejected, match="bad.png"):
        decode.decode_files(
            [*files, (_truncated_png(), "bad.png")],
            (8, 8, 1),
            limits=limits,
            max_total_pixels=10**6,
            budget=budget,
        )
    assert budget.used == 0


def test_json_instances_reserve_their_arrays():
    budget = DecodeBudget(MiB, max_wait_s=0)
    instances = np.zeros((4, 8, 8, 1), dtype=int).tolist()
    # no room: refused before the conversion
    with budget.reserve(MiB), pytest.raises(Rejected, match="memory budget"):
        decode.decode_instances(instances, (8, 8, 1), max_batch=10, budget=budget)
    assert decode.decode_instances(instances, (8, 8, 1), max_batch=10, budget=budget).shape == (4, 8, 8, 1)
    assert budget.used == 0


def _post(svc, path: str, data: bytes):
    field = "file" if path == "/v1/predict" else "files"
    return svc.client.post(path, files={field: ("x.png", data)}, headers=svc.headers("viewer"))


def test_concurrent_uploads_stay_within_the_budget(make_service, monkeypatch):
    svc = make_service(decode_budget_bytes=MiB, decode_wait_s=30, rate_limit_per_key=0)
    budget = svc.state.decode_budget
    watch = Watch(budget)
    monkeypatch.setattr(decode, "_decode_one", watch.wrap(decode._decode_one))
    good = [_png(seed=i) for i in range(12)]
    bad = _truncated_png()
    paths = ["/v1/predict", "/v1/predict/batch"]

    def send(i: int) -> int:
        return _post(svc, paths[i % 2], bad if i % 4 == 3 else good[i]).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(send, range(12)))
    assert codes == [422 if i % 4 == 3 else 200 for i in range(12)]
    assert 1 <= watch.most_active <= 2  # two 512,000-byte decodes fit in 1 MiB, never three
    assert watch.peak <= MiB
    assert budget.used == 0 and budget.waiting == 0


def test_a_request_without_room_gets_503_then_succeeds(make_service, png, digits):
    svc = make_service(decode_budget_bytes=MiB, decode_wait_s=0.05)
    image = png(digits.test.x[0])
    with svc.state.decode_budget.reserve(MiB):
        busy = _post(svc, "/v1/predict", image)
        contribution = svc.client.post(
            "/v1/contributions",
            files={"file": ("d.png", image)},
            data={"label": "1"},
            headers=svc.headers("contributor"),
        )
    for response in (busy, contribution):
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "decode_busy"
        assert response.headers["retry-after"] == "1"
        assert response.headers["x-content-type-options"] == "nosniff"
    assert list(svc.state.store) == []  # the refused contribution stored nothing
    assert _post(svc, "/v1/predict", image).status_code == 200
