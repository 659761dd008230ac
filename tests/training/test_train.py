"""train(): determinism, learning, fine-tuning, validation of inputs, schedules and optimizers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from poisonlab.data.dataset import Dataset
from poisonlab.inference import forward_pass
from poisonlab.models import PreActResNet18, SimpleCifarCNN
from poisonlab.training import EpochStats, TrainConfig, train
from poisonlab.training.loop import _batches, one_cycle_factor

# Small, quick recipes. simple-cifar10 keeps BatchNorm momentum 0.01 (Keras' 0.99), so its
# running statistics need ~100 steps before eval-mode predictions mean anything.
QUICK = dict(epochs=2, batch_size=8, lr=0.05, augment={"crop_padding": 1, "flip": True})
LEARN = dict(
    epochs=20,
    batch_size=6,
    optimizer="adam",
    lr=1e-2,
    augment=None,
    model={"dropout": (0, 0, 0, 0)},
    validate_every=0,
)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _run(data: Dataset, **cfg) -> object:
    return train(data, TrainConfig(**cfg), device="cpu", progress=False)


def test_same_seed_gives_bitwise_identical_weights(colour_data):
    # crop+flip augmentation and the chapter's dropout both draw random numbers
    a = _run(colour_data, **QUICK, seed=5)
    b = _run(colour_data, **QUICK, seed=5)
    assert a.model is not b.model
    assert _same_state(_state(a.model), _state(b.model))
    assert [h.train_loss for h in a.history] == [h.train_loss for h in b.history]


def test_different_seeds_give_different_weights(colour_data):
    a = _run(colour_data, **QUICK, seed=0)
    b = _run(colour_data, **QUICK, seed=1)
    assert not _same_state(_state(a.model), _state(b.model))


def test_learns_the_colour_task(make_colour_dataset):
    train_data, val_data = make_colour_dataset(), make_colour_dataset(per_class=10, seed=1)
    result = train(train_data, TrainConfig(**LEARN), val_data=val_data, device="cpu", progress=False)
    assert result.final_val_accuracy is not None and result.final_val_accuracy >= 0.8  # chance is 1/3
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert not result.model.training  # returned in eval mode
    pred = forward_pass(result.model, val_data.x, device="cpu").predictions
    assert float((pred == val_data.y).mean()) == result.final_val_accuracy


def test_preact_resnet_learns_the_colour_task(make_colour_dataset):
    train_data, val_data = make_colour_dataset(), make_colour_dataset(per_class=10, seed=1)
    cfg = TrainConfig(
        epochs=6, batch_size=12, lr=0.05, augment=None, model={"arch": "preact-resnet18", "width": 4}
    )
    result = train(train_data, cfg, val_data=val_data, device="cpu", progress=False)
    assert isinstance(result.model, PreActResNet18) and result.model.width == 4
    assert result.final_val_accuracy >= 0.8


def test_history_and_result_fields(colour_data):
    cfg = TrainConfig(**QUICK)
    seen = []
    result = train(
        colour_data,
        cfg,
        device="cpu",
        progress=False,
        on_epoch_end=lambda stats, model: seen.append((stats, model.training)),
    )
    assert len(result.history) == cfg.epochs
    assert [h.epoch for h in result.history] == [1, 2]
    assert all(isinstance(h, EpochStats) and h.val_accuracy is None for h in result.history)
    assert all(0.0 <= h.train_accuracy <= 1.0 and math.isfinite(h.train_loss) for h in result.history)
    assert result.final_val_accuracy is None  # no validation data
    assert result.config == cfg
    assert result.seconds > 0
    assert [s for s, _ in seen] == result.history  # the callback saw every epoch
    assert isinstance(result.model, SimpleCifarCNN) and result.model.input_shape == (8, 8, 3)


def test_validate_every_and_val_samples(make_colour_dataset):
    data, val = make_colour_dataset(per_class=4), make_colour_dataset(per_class=4, seed=1)
    expected = {}

    def check(stats, model):  # what the epoch's validation should have measured
        pred = forward_pass(model, val.x, device="cpu", precision="fp32").predictions
        n = len(val) if stats.epoch == 5 else 5
        expected[stats.epoch] = float((pred[:n] == val.y[:n]).mean())

    cfg = TrainConfig(epochs=5, batch_size=6, augment=None, validate_every=2, val_samples=5)
    result = train(data, cfg, val_data=val, device="cpu", progress=False, on_epoch_end=check)
    validated = [h.epoch for h in result.history if h.val_accuracy is not None]
    assert validated == [2, 4, 5]  # every 2 epochs, and always at the end
    # between epochs on the first 5 validation samples, at the end on all 12
    assert {h.epoch: h.val_accuracy for h in result.history if h.epoch in (2, 4, 5)} == {
        e: expected[e] for e in (2, 4, 5)
    }
    pred = forward_pass(result.model, val.x, device="cpu").predictions
    assert result.final_val_accuracy == float((pred == val.y).mean())


def test_fine_tune_returns_a_new_model_and_leaves_the_given_one_unchanged(colour_data, tiny_model):
    tiny_model.train()
    before = _state(tiny_model)
    # config.model asks for another architecture: fine-tuning keeps the given model's
    cfg = TrainConfig(**{**QUICK, "model": {"arch": "preact-resnet18", "width": 4}})
    result = train(colour_data, cfg, model=tiny_model, device="cpu", progress=False)
    assert result.model is not tiny_model
    assert isinstance(result.model, SimpleCifarCNN)
    assert _same_state(_state(tiny_model), before)
    assert tiny_model.training  # its mode is left alone too
    assert not _same_state(_state(result.model), before)  # the copy did train
    assert all(
        p.data_ptr() != q.data_ptr()
        for p, q in zip(result.model.parameters(), tiny_model.parameters(), strict=True)
    )


def test_fine_tune_starts_from_the_given_weights(colour_data, tiny_model):
    # lr tiny and one step: the fine-tuned weights stay close to the given ones, far from a fresh init
    cfg = TrainConfig(epochs=1, batch_size=36, lr=1e-6, augment=None, optimizer="sgd", seed=123)
    result = train(colour_data, cfg, model=tiny_model, device="cpu", progress=False)
    diff = (result.model.classifier.weight - tiny_model.classifier.weight).abs().max().item()
    assert diff < 1e-4


def test_shape_mismatch_is_a_value_error(colour_data, make_colour_dataset):
    grey = make_colour_dataset(channels=1)
    model = SimpleCifarCNN(input_shape=(8, 8, 1), num_classes=3)
    with pytest.raises(ValueError, match="expects images"):
        train(colour_data, TrainConfig(**QUICK), model=model, device="cpu", progress=False)
    with pytest.raises(ValueError, match="expects images"):
        train(grey, TrainConfig(**QUICK), model=model, val_data=colour_data, device="cpu", progress=False)
    bigger = make_colour_dataset(size=12)
    with pytest.raises(ValueError, match="expects images"):
        train(colour_data, TrainConfig(**QUICK), val_data=bigger, device="cpu", progress=False)


def test_class_count_mismatch_is_a_value_error(colour_data):
    model = SimpleCifarCNN(input_shape=(8, 8, 3), num_classes=4)
    with pytest.raises(ValueError, match="classes"):
        train(colour_data, TrainConfig(**QUICK), model=model, device="cpu", progress=False)
    two_class_val = Dataset(x=colour_data.x[:4], y=np.array([0, 1, 0, 1]), class_names=("a", "b"))
    with pytest.raises(ValueError, match="classes"):
        train(colour_data, TrainConfig(**QUICK), val_data=two_class_val, device="cpu", progress=False)


@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_samples_is_a_value_error(colour_data, n):
    with pytest.raises(ValueError, match="at least 2 samples"):
        train(colour_data.subset(np.arange(n)), TrainConfig(**QUICK), device="cpu", progress=False)


@pytest.mark.parametrize(("n", "batch_size"), [(2, 8), (5, 4), (9, 4)])
def test_small_datasets_and_a_trailing_batch_of_one(colour_data, n, batch_size):
    # 5 = 4 + 1 and 9 = 4 + 4 + 1: the trailing single sample is dropped (BatchNorm needs >= 2)
    result = train(
        colour_data.subset(np.arange(n)),
        TrainConfig(epochs=1, batch_size=batch_size, augment=None),
        device="cpu",
        progress=False,
    )
    assert len(result.history) == 1 and math.isfinite(result.history[0].train_loss)


@pytest.mark.parametrize(
    ("n", "batch_size", "sizes"), [(1283, 64, [64] * 20), (1167, 64, [64] * 18 + [15]), (5, 8, [5])]
)
def test_a_last_batch_of_a_few_samples_is_skipped(n, batch_size, sizes):
    # a last batch of 3 derailed the digits CNN's BatchNorm; 15 trains; one batch is always kept
    chunks = _batches(n, batch_size, torch.Generator().manual_seed(0))
    assert [len(c) for c in chunks] == sizes
    assert len(torch.cat(chunks).unique()) == sum(sizes)


@pytest.mark.parametrize(
    ("n", "batch_size", "sizes"), [(100, 32, [32] * 3), (96, 32, [32] * 3), (20, 32, [20])]
)
def test_drop_last_skips_the_partial_batch_but_never_the_only_one(n, batch_size, sizes):
    chunks = _batches(n, batch_size, torch.Generator().manual_seed(0), drop_last=True)
    assert [len(c) for c in chunks] == sizes


def test_drop_last_counts_the_steps_of_the_schedule(colour_data):
    """The lr schedule's length follows the batches actually taken (one-cycle ends at its end)."""
    n = len(colour_data)
    cfg = TrainConfig(epochs=2, batch_size=14, augment=None, drop_last=True, lr_end_factor=0.5)
    assert n % 14 >= 8  # a tail the default would keep
    result = train(colour_data, cfg, device="cpu", progress=False)
    assert result.history[-1].lr == pytest.approx(cfg.lr * 0.5)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("schedule", ["onecycle", "constant", "cosine"])
def test_every_optimizer_and_schedule_runs(colour_data, optimizer, schedule):
    lr = 0.05 if optimizer == "sgd" else 1e-3
    cfg = TrainConfig(epochs=2, batch_size=12, optimizer=optimizer, schedule=schedule, lr=lr, augment=None)
    result = train(colour_data, cfg, device="cpu", progress=False)
    assert len(result.history) == 2
    assert all(math.isfinite(h.train_loss) for h in result.history)
    final_lr = result.history[-1].lr
    if schedule == "constant":
        assert all(h.lr == pytest.approx(lr) for h in result.history)
    elif schedule == "onecycle":
        assert final_lr == pytest.approx(0.01 * lr)
    else:
        assert final_lr == pytest.approx(0.0, abs=1e-12)


def test_ema_decay_path(colour_data):
    plain = _run(colour_data, **QUICK, seed=0)
    ema = _run(colour_data, **QUICK, seed=0, ema_decay=0.5)
    assert isinstance(ema.model, SimpleCifarCNN)
    assert not ema.model.training
    assert [h.train_loss for h in ema.history] == [h.train_loss for h in plain.history]  # same raw training
    assert not _same_state(_state(ema.model), _state(plain.model))  # but the averaged weights are returned
    logits = forward_pass(ema.model, colour_data.x, device="cpu").logits
    assert np.isfinite(logits).all()


def test_ema_model_is_validated(make_colour_dataset):
    data, val = make_colour_dataset(per_class=4), make_colour_dataset(per_class=4, seed=1)
    result = train(
        data,
        TrainConfig(epochs=2, batch_size=6, augment=None, ema_decay=0.9),
        val_data=val,
        device="cpu",
        progress=False,
    )
    pred = forward_pass(result.model, val.x, device="cpu").predictions
    assert result.final_val_accuracy == float((pred == val.y).mean())


def test_bf16_and_contiguous_memory_paths_run(colour_data):
    a = _run(colour_data, epochs=1, batch_size=12, augment=None, precision="bf16")
    b = _run(colour_data, epochs=1, batch_size=12, augment=None, channels_last=False)
    assert math.isfinite(a.history[0].train_loss) and math.isfinite(b.history[0].train_loss)


def test_cuda_without_gpu_is_a_value_error(colour_data):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(ValueError, match="CUDA"):
        train(colour_data, TrainConfig(**QUICK), device="cuda", progress=False)


def test_progress_bar_runs(colour_data, capsys):
    result = train(
        colour_data, TrainConfig(epochs=2, batch_size=12, augment=None), device="cpu", progress=True
    )
    assert len(result.history) == 2
    assert "epoch 2/2" in capsys.readouterr().err


def test_one_cycle_factor_shape():
    total, warm_fraction = 100, 0.2
    f = [one_cycle_factor(s, total, warm_fraction) for s in range(total)]
    assert f[0] == pytest.approx(0.1)
    assert max(f) == pytest.approx(1.0)
    peak = f.index(max(f))
    assert peak == 20
    assert f[-1] == pytest.approx(0.01)
    rise, fall = f[: peak + 1], f[peak:]
    assert all(a < b for a, b in zip(rise, rise[1:], strict=False))
    assert all(a > b for a, b in zip(fall, fall[1:], strict=False))
    assert all(0.01 <= v <= 1.0 for v in f)
    # linear pieces
    assert f[10] == pytest.approx(0.1 + 0.9 * 10 / 20)
    assert f[20 + 79 // 2] == pytest.approx(1.0 - 0.99 * (79 // 2) / 79)


@pytest.mark.parametrize(("total", "warm_fraction"), [(10, 0.3), (37, 0.1), (1000, 0.25)])
def test_one_cycle_factor_endpoints(total, warm_fraction):
    assert one_cycle_factor(0, total, warm_fraction) == pytest.approx(0.1)
    assert one_cycle_factor(total - 1, total, warm_fraction) == pytest.approx(0.01)
    assert one_cycle_factor(round(total * warm_fraction), total, warm_fraction) == pytest.approx(1.0)


def test_progress_bar_single_epoch(colour_data, capsys):
    result = train(
        colour_data, TrainConfig(epochs=1, batch_size=12, augment=None), device="cpu", progress=True
    )
    assert len(result.history) == 1
    assert "epoch 1/1: loss" in capsys.readouterr().err
