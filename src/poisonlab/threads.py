"""How many CPU threads a piece of work gets: chosen from the work and from the free cores.

Why a policy at all: PyTorch starts one OpenMP thread per core. On a small model every parallel
region is a few microseconds long, and its threads meet at a barrier after each one. When another
process holds one of the cores, the thread that waits for it stalls every barrier: a digits
training measured 518 s with two threads on a busy 2-core machine and 20 s with one (issue 12).
Large work (CIFAR-scale convolutions) does gain from more threads, but only from cores that are
free. So:

1. an explicit choice wins: :func:`set_threads` (the CLI's ``--threads``) or the environment
   variable ``POISONLAB_THREADS``;
2. otherwise work below :data:`SMALL_WORK_FLOPS` per step runs on one thread;
3. otherwise it gets the cores this process may use, less those other processes keep busy
   (the 1-minute load average, minus this process's own recent CPU use), at least one.

:func:`compute_threads` applies the choice to torch for the duration of a call and restores the
previous setting; :func:`train` and :func:`~poisonlab.inference.forward_pass` use it, so library
users get the policy too. BLAS threads (numpy, scikit-learn) are left alone: the detectors that
call into BLAS on small matrices already cap themselves with threadpoolctl.
"""

from __future__ import annotations

import contextlib
import os
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator

import torch

__all__ = [
    "ENV_VAR",
    "SMALL_WORK_FLOPS",
    "available_cores",
    "choose_threads",
    "compute_threads",
    "estimate_flops",
    "requested_threads",
    "set_threads",
]

ENV_VAR = "POISONLAB_THREADS"

#: Floating-point operations per step below which one thread is used. A digits training step
#: (8x8 inputs, batch 64) is ~0.9 GFLOP and measured slower on two threads as soon as another
#: process runs; a CIFAR-10 step of the chapter CNN (batch 256) is ~60 GFLOP and gains from every
#: free core. BENCHMARKS.md ("Threads") has the measurements.
SMALL_WORK_FLOPS = 2e9

_explicit: int | None = None
_flops_cache: weakref.WeakKeyDictionary[torch.nn.Module, float] = weakref.WeakKeyDictionary()
_own_cpu_sample: tuple[float, float] | None = None


def _check_count(value: object, origin: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{origin} must be a whole number of threads >= 1, got {value!r}")
    return value


def set_threads(n: int | None) -> None:
    """Fix the thread count for every later call (``None`` returns to the automatic policy)."""
    global _explicit
    _explicit = None if n is None else _check_count(n, "threads")


def requested_threads() -> int | None:
    """The explicit choice: :func:`set_threads`, else ``POISONLAB_THREADS``, else ``None``.

    Raises ValueError when ``POISONLAB_THREADS`` is set to something other than a positive integer.
    """
    if _explicit is not None:
        return _explicit
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = raw  # reported below with the offending text
    return _check_count(value, ENV_VAR)


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _own_recent_load() -> float:
    """This process's CPU use (in cores) since the previous call; 0 on the first call."""
    global _own_cpu_sample
    t = os.times()
    now_cpu, now_wall = t.user + t.system, time.monotonic()
    previous, _own_cpu_sample = _own_cpu_sample, (now_cpu, now_wall)
    if previous is None or now_wall - previous[1] < 1.0:
        return 0.0
    return max(0.0, (now_cpu - previous[0]) / (now_wall - previous[1]))


def available_cores() -> int:
    """Cores this process may use minus those other processes keep busy, at least 1."""
    cores = _usable_cores()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return cores
    others = max(0.0, load - _own_recent_load())
    return max(1, min(cores, int(round(cores - others))))


def estimate_flops(model: torch.nn.Module, input_shape: tuple[int, int, int]) -> float:
    """Forward floating-point operations for one (H, W, C) image (2 x multiply-adds of every
    convolution and linear layer), from one traced sample; cached per model."""
    cached = _flops_cache.get(model)
    if cached is not None:
        return cached
    total = 0.0

    def count(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            per_out = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += 2.0 * output.numel() * per_out
        elif isinstance(module, torch.nn.Linear):
            total += 2.0 * output.numel() * module.in_features

    # The user's own hooks must not see this traced sample: park them for the duration.
    modules = list(model.modules())
    parked = [(m._forward_hooks, m._forward_pre_hooks) for m in modules]
    for m in modules:
        m._forward_hooks, m._forward_pre_hooks = OrderedDict(), OrderedDict()
    hooks = [
        m.register_forward_hook(count) for m in modules if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    ]
    h, w, c = input_shape
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, c, h, w, device=device))
    except Exception:  # noqa: BLE001 - the caller's own forward pass reports the model's error
        return 0.0
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
        for m, (forward_hooks, pre_hooks) in zip(modules, parked, strict=True):
            m._forward_hooks, m._forward_pre_hooks = forward_hooks, pre_hooks
    _flops_cache[model] = total
    return total


def choose_threads(flops_per_step: float) -> int:
    """Threads for work of ``flops_per_step`` floating-point operations between synchronisations."""
    requested = requested_threads()
    if requested is not None:
        return requested
    if flops_per_step < SMALL_WORK_FLOPS:
        return 1
    return available_cores()


@contextlib.contextmanager
def compute_threads(flops_per_step: float, device: torch.device | None = None) -> Iterator[int]:
    """Run the block with :func:`choose_threads` torch threads (CPU only); restores the setting.

    On a CUDA device the CPU thread count is left as it is and 0 is yielded.
    """
    if device is not None and device.type != "cpu":
        yield 0
        return
    n = choose_threads(flops_per_step)
    previous = torch.get_num_threads()
    if n != previous:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
