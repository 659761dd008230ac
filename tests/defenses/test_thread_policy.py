"""Detectors that train their own small torch models run under the project's thread choice.

torch starts one thread per core; on a small model each parallel region is microseconds long and
its threads meet at a barrier, so beside another process two threads ran many times slower than
one (the autoencoder took 118 s on the digits matrix beside a second run). Every such loop runs
inside :func:`poisonlab.threads.compute_threads`: here the explicit choice (1) must be what the
work sees although torch's own setting is another, and the caller's setting must come back.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.detectors import autoencoder as ae_module
from poisonlab.defenses.detectors.autoencoder import AutoencoderDetector
from poisonlab.defenses.helpers import head_refit, linear_head
from poisonlab.threads import set_threads


@pytest.fixture
def explicit_one_thread():
    """torch set to 2 threads, the project's explicit choice 1; both restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    set_threads(1)
    try:
        yield
        assert torch.get_num_threads() == 2  # the caller's setting came back
    finally:
        set_threads(None)
        torch.set_num_threads(before)


def _recording(monkeypatch, owner, name: str) -> list[int]:
    """Wrap ``owner.name`` so every call records torch's thread count, then delegates."""
    seen: list[int] = []
    original = getattr(owner, name)

    def wrapped(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapped)
    return seen


def _images(n: int = 40) -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)
    return Dataset(x=x, y=np.arange(n, dtype=np.int64) % 2, class_names=["a", "b"])


@pytest.mark.usefixtures("explicit_one_thread")
def test_the_autoencoder_trains_and_scores_under_the_choice(monkeypatch) -> None:
    steps = _recording(monkeypatch, ae_module.nn.functional, "mse_loss")
    scoring = _recording(monkeypatch, AutoencoderDetector, "_errors")
    AutoencoderDetector(device="cpu", epochs=1, min_steps=2).fit(_images())
    assert steps and set(steps) == {1}
    assert scoring == [1]


@pytest.mark.usefixtures("explicit_one_thread")
def test_linear_heads_and_their_newton_refits_run_under_the_choice(monkeypatch) -> None:
    lbfgs = _recording(monkeypatch, linear_head, "_lbfgs")
    newton = _recording(monkeypatch, head_refit, "_newton")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 4, generator=gen, dtype=torch.float64)
    y = torch.arange(30) % 3
    head_refit.fit_base(x, y, 3, l2=0.1, max_iter=20)
    assert lbfgs == [1] and newton == [1]


def test_an_explicit_cli_choice_becomes_torchs_default(monkeypatch) -> None:
    from poisonlab.cli.options import use_threads

    before = torch.get_num_threads()
    monkeypatch.delenv("POISONLAB_THREADS", raising=False)
    try:
        torch.set_num_threads(2)
        use_threads(1)
        assert torch.get_num_threads() == 1  # work outside compute_threads obeys --threads
        torch.set_num_threads(2)
        use_threads(None)  # the automatic policy leaves torch's own setting alone
        assert torch.get_num_threads() == 2
    finally:
        set_threads(None)
        torch.set_num_threads(before)
