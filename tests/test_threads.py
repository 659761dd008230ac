"""The thread policy (poisonlab.threads): explicit choices win, small work runs on one thread."""

from __future__ import annotations

import pytest
import torch

from poisonlab import threads
from poisonlab.models import SimpleCifarCNN


@pytest.fixture(autouse=True)
def _no_explicit_choice(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    threads.set_threads(None)
    yield
    threads.set_threads(None)


def test_small_work_gets_one_thread_large_work_the_free_cores(monkeypatch) -> None:
    assert threads.choose_threads(threads.SMALL_WORK_FLOPS / 10) == 1
    monkeypatch.setattr(threads, "available_cores", lambda: 7)
    assert threads.choose_threads(threads.SMALL_WORK_FLOPS * 10) == 7


def test_explicit_choice_then_environment(monkeypatch) -> None:
    monkeypatch.setenv(threads.ENV_VAR, "3")
    assert threads.choose_threads(1.0) == 3
    threads.set_threads(2)
    assert threads.choose_threads(1.0) == 2  # set_threads (the CLI's --threads) beats the variable
    monkeypatch.setenv(threads.ENV_VAR, "many")
    threads.set_threads(None)
    with pytest.raises(
        ValueError, match="POISONLAB_THREADS must be a whole number of threads >= 1, got 'many'"
    ):
        threads.choose_threads(1.0)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads must be"):
            threads.set_threads(bad)


def test_available_cores_discounts_other_processes(monkeypatch) -> None:
    monkeypatch.setattr(threads, "_usable_cores", lambda: 4)
    monkeypatch.setattr(threads, "_own_recent_load", lambda: 0.0)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (2.2, 0.0, 0.0))
    assert threads.available_cores() == 2
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (9.0, 0.0, 0.0))
    assert threads.available_cores() == 1  # never fewer than one


def test_compute_threads_sets_and_restores() -> None:
    before = torch.get_num_threads()
    threads.set_threads(before + 1)
    with threads.compute_threads(1.0) as n:
        assert n == before + 1 == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with threads.compute_threads(1.0, torch.device("meta")) as n:  # not a CPU: left alone
        assert n == 0 and torch.get_num_threads() == before


def test_flops_of_a_model_ignore_its_hooks_and_errors() -> None:
    torch.manual_seed(0)
    model = SimpleCifarCNN(input_shape=(8, 8, 3), num_classes=3)
    seen = []
    model.register_forward_hook(lambda *args: seen.append(1))
    flops = threads.estimate_flops(model, (8, 8, 3))
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert flops >= 2 * 8 * 8 * first_conv.out_channels * 3 * 9  # at least the first convolution
    assert seen == [] and model.training  # the user's hook never saw the traced sample
    assert threads.estimate_flops(model, (8, 8, 3)) == flops  # cached

    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    assert threads.estimate_flops(Broken(), (8, 8, 3)) == 0.0
