"""forward_pass / predict / check_images, test-time augmentation, the device and precision choices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from poisonlab.device import autocast, resolve_device, use_bf16
from poisonlab.inference import (
    CPU_BATCH_SIZE,
    GPU_BATCH_SIZE,
    ForwardResult,
    TestTimeAugmentation,
    check_images,
    default_batch_size,
    forward_pass,
    predict,
    to_input,
)
from poisonlab.models import AirbenchNet, PreActResNet18, SimpleCifarCNN
from poisonlab.models.base import PoisonlabModel


def _images(n: int, shape=(8, 8, 3), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _reference_logits(model, images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        return model.eval()(x)


def test_logits_features_and_probabilities(tiny_model):
    x = _images(7)
    out = forward_pass(tiny_model, x, features=True, device="cpu", precision="fp32")
    assert isinstance(out, ForwardResult)
    assert out.logits.shape == (7, 3) and out.logits.dtype == np.float32
    assert out.features.shape == (7, 128) and out.features.dtype == np.float32
    np.testing.assert_allclose(out.logits, _reference_logits(tiny_model, x).numpy(), rtol=1e-5, atol=1e-5)
    probs = out.probabilities
    assert probs.shape == (7, 3)
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(probs.argmax(1), out.predictions)
    np.testing.assert_array_equal(out.predictions, out.logits.argmax(1))
    with torch.no_grad():
        head = tiny_model.head(torch.from_numpy(out.features)).numpy()
    np.testing.assert_allclose(head, out.logits, rtol=1e-5, atol=1e-5)


def test_features_off_by_default(tiny_model):
    assert forward_pass(tiny_model, _images(2), device="cpu").features is None


def test_probabilities_are_stable_for_large_logits():
    out = ForwardResult(logits=np.array([[1000.0, 0.0, -1000.0], [5.0, 5.0, 5.0]], np.float32), features=None)
    probs = out.probabilities
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs[0], [1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(probs[1], [1 / 3] * 3, rtol=1e-6)


def test_preact_features_dimension():
    torch.manual_seed(0)
    model = PreActResNet18(input_shape=(8, 8, 1), num_classes=4, width=4)
    out = forward_pass(model, _images(3, (8, 8, 1)), features=True, device="cpu")
    assert out.logits.shape == (3, 4) and out.features.shape == (3, 32)


@pytest.mark.parametrize("batch_size", [1, 3, 4, 10, 1000])
def test_batch_size_not_dividing_n(tiny_model, batch_size):
    x = _images(10)
    full = forward_pass(tiny_model, x, features=True, device="cpu", batch_size=1000, precision="fp32")
    out = forward_pass(tiny_model, x, features=True, device="cpu", batch_size=batch_size, precision="fp32")
    assert out.logits.shape == (10, 3) and out.features.shape == (10, 128)
    np.testing.assert_allclose(out.logits, full.logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.features, full.features, rtol=1e-5, atol=1e-5)


def test_empty_input(tiny_model):
    out = forward_pass(tiny_model, _images(0), device="cpu")
    assert out.logits.shape == (0, 3)
    assert predict(tiny_model, _images(0), device="cpu").shape == (0,)


@pytest.mark.parametrize("was_training", [True, False])
def test_training_flag_is_restored(tiny_model, was_training):
    tiny_model.train(was_training)
    forward_pass(tiny_model, _images(4), device="cpu")
    assert tiny_model.training is was_training
    assert all(m.training is was_training for m in tiny_model.modules())


def test_eval_mode_is_used_even_for_a_training_model(tiny_model):
    x = _images(4)
    expected = _reference_logits(tiny_model, x).numpy()  # eval mode: no dropout, running BN stats
    tiny_model.train()
    a = forward_pass(tiny_model, x, device="cpu", precision="fp32").logits
    b = forward_pass(tiny_model, x, device="cpu", precision="fp32").logits
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, expected, rtol=1e-5, atol=1e-5)


def test_training_flag_restored_after_an_error(tiny_model, monkeypatch):
    tiny_model.train()

    def boom(x):
        raise RuntimeError("boom")

    monkeypatch.setattr(tiny_model, "features", boom)
    with pytest.raises(RuntimeError):
        forward_pass(tiny_model, _images(2), device="cpu")
    assert tiny_model.training


def test_predict(tiny_model):
    x = _images(5)
    pred = predict(tiny_model, x, device="cpu")
    assert pred.dtype == np.int64 and pred.shape == (5,)
    np.testing.assert_array_equal(pred, _reference_logits(tiny_model, x).argmax(1).numpy())


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (np.zeros((2, 8, 8, 3), np.float32), "uint8"),
        (np.zeros((8, 8, 3), np.uint8), "uint8 array"),
        ([[1, 2]], "uint8 array"),
        (torch.zeros(2, 8, 8, 3, dtype=torch.uint8), "uint8 array"),
        (np.zeros((2, 3, 8, 8), np.uint8), r"\(8, 8, 3\)"),  # NCHW
        (np.zeros((2, 8, 8, 1), np.uint8), r"\(8, 8, 3\)"),
        (np.zeros((2, 16, 16, 3), np.uint8), r"\(8, 8, 3\)"),
    ],
    ids=["float32", "3-d", "list", "tensor", "nchw", "grey", "bigger"],
)
def test_bad_images_are_value_errors_naming_the_expected_shape(tiny_model, images, match):
    with pytest.raises(ValueError, match=match):
        check_images(tiny_model, images)
    with pytest.raises(ValueError, match=match):
        forward_pass(tiny_model, images, device="cpu")


def test_negative_stride_views_are_accepted(tiny_model):
    x = _images(4)
    flipped = x[:, :, ::-1]
    np.testing.assert_array_equal(
        forward_pass(tiny_model, flipped, device="cpu").logits,
        forward_pass(tiny_model, flipped.copy(), device="cpu").logits,
    )


def test_non_contiguous_views_are_accepted(tiny_model):
    x = _images(8)
    view = x[::2]
    np.testing.assert_allclose(
        forward_pass(tiny_model, view, device="cpu").logits,
        forward_pass(tiny_model, view.copy(), device="cpu").logits,
        rtol=1e-6,
    )


def test_to_input():
    x = _images(2)
    t = to_input(x, torch.device("cpu"))
    assert t.shape == (2, 3, 8, 8) and t.dtype == torch.float32
    assert t.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(t[1, 2], torch.from_numpy(x[1, :, :, 2]).float() / 255.0)
    assert float(t.max()) <= 1.0 and float(t.min()) >= 0.0
    assert to_input(x, torch.device("cpu"), channels_last=False).is_contiguous()


def test_bf16_inference_is_close_to_fp32():
    torch.manual_seed(0)
    model = SimpleCifarCNN(input_shape=(8, 8, 3), num_classes=3, bn_momentum=1.0)
    # put BN running statistics in a sensible range so logits are O(1)
    model.train()
    with torch.no_grad():
        model(torch.rand(64, 3, 8, 8))
    x = _images(6)
    fp32 = forward_pass(model, x, device="cpu", precision="fp32").logits
    bf16 = forward_pass(model, x, device="cpu", precision="bf16").logits
    assert bf16.dtype == np.float32
    np.testing.assert_allclose(bf16, fp32, atol=0.1 * (1 + np.abs(fp32).max()))


# ------------------------------------------------------------------------------------- device
def test_resolve_device_auto_and_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device().type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_gpu_is_a_value_error(name):
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device(name)


@pytest.mark.parametrize("name", ["tpu", "mps", "", "gpu"])
def test_unknown_device_is_a_value_error(name):
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device(name)


def test_use_bf16():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_bf16("fp32", cpu) is False and use_bf16("fp32", cuda) is False
    assert use_bf16("bf16", cpu) is True and use_bf16("bf16", cuda) is True
    assert use_bf16("auto", cuda) is True


def test_use_bf16_auto_on_cpu_follows_amx(monkeypatch):
    import poisonlab.device as device

    monkeypatch.setattr(device, "cpu_has_amx", lambda: False)
    assert device.use_bf16("auto", torch.device("cpu")) is False
    monkeypatch.setattr(device, "cpu_has_amx", lambda: True)
    assert device.use_bf16("auto", torch.device("cpu")) is True


def test_autocast_context():
    cpu = torch.device("cpu")
    a = torch.ones(2, 2)
    with autocast(cpu, False):
        assert (a @ a).dtype == torch.float32
    with autocast(cpu, True):
        assert (a @ a).dtype == torch.bfloat16


# ---------------------------------------------------------------- test-time augmentation, speed paths
class PixelLinear(PoisonlabModel):
    """Logits are fixed position-dependent weighted sums of the pixels: every shift and mirror of
    an image gives other logits, so the TTA average can be checked view by view."""

    arch = "pixel-linear"

    def __init__(self) -> None:
        super().__init__(input_shape=(8, 8, 3), num_classes=4)
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("w", torch.randn(4, 3, 8, 8, generator=gen))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nchw,kchw->nk", x, self.w)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return features


def _views_by_hand(x: torch.Tensor, t: int) -> list[tuple[float, torch.Tensor]]:
    """(weight, view) pairs of airbench's flip + translate TTA, built one by one."""
    pad = torch.nn.functional.pad(x, (t, t, t, t), mode="reflect")
    down_right, up_left = pad[..., :8, :8], pad[..., 2 * t :, 2 * t :]
    views = [(1 / 4, x), (1 / 4, x.flip(-1))]
    views += [(1 / 8, v) for s in (down_right, up_left) for v in (s, s.flip(-1))]
    return views


@pytest.mark.parametrize("t", [1, 2])
def test_tta_is_the_weighted_mean_of_the_mirrored_and_shifted_views(t):
    model, x = PixelLinear().eval(), _images(5)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        expected = sum(w * model(v) for w, v in _views_by_hand(xt, t))
    # the down-right view really moves the content: its centre equals the image's top-left
    assert torch.equal(_views_by_hand(xt, t)[2][1][..., t:, t:], xt[..., :-t, :-t])
    out = forward_pass(model, x, device="cpu", tta=TestTimeAugmentation(flip=True, translate=t))
    np.testing.assert_allclose(out.logits, expected.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out.plain_logits, forward_pass(model, x, device="cpu").logits, rtol=1e-6)
    assert out.features is None
    np.testing.assert_array_equal(out.predictions, out.logits.argmax(1))


def test_tta_without_translation_or_without_flips():
    model, x = PixelLinear().eval(), _images(3)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        mirror = 0.5 * (model(xt) + model(xt.flip(-1)))
        pad = torch.nn.functional.pad(xt, (1, 1, 1, 1), mode="reflect")
        shifts = 0.5 * model(xt) + 0.25 * (model(pad[..., :8, :8]) + model(pad[..., 2:, 2:]))
    flip_only = forward_pass(model, x, device="cpu", tta=TestTimeAugmentation(translate=0)).logits
    shift_only = forward_pass(model, x, device="cpu", tta=TestTimeAugmentation(flip=False)).logits
    np.testing.assert_allclose(flip_only, mirror.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(shift_only, shifts.numpy(), rtol=1e-5, atol=1e-4)
    assert TestTimeAugmentation().views == 6 and TestTimeAugmentation(translate=0).views == 2


@pytest.mark.parametrize("kwargs", [{"flip": False, "translate": 0}, {"translate": -1}, {"translate": 1.5}])
def test_tta_settings_are_validated(kwargs):
    with pytest.raises(ValueError):
        TestTimeAugmentation(**kwargs)


def test_tta_with_features_is_a_value_error(tiny_model):
    with pytest.raises(ValueError, match="features"):
        forward_pass(tiny_model, _images(2), features=True, tta=TestTimeAugmentation(), device="cpu")


def test_empty_input_with_tta(tiny_model):
    out = forward_pass(tiny_model, _images(0), device="cpu", tta=TestTimeAugmentation())
    assert out.logits.shape == (0, 3) and out.plain_logits.shape == (0, 3)


def _naive(model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One image at a time, NCHW, eval mode: the slowest honest reference."""
    model.eval()
    logits, feats = [], []
    with torch.no_grad():
        for img in images:
            x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
            f = model.features(x)
            feats.append(f[0].numpy())
            logits.append(model.head(f)[0].numpy())
    return np.stack(logits), np.stack(feats)


@pytest.mark.parametrize("arch", ["simple", "preact", "airbench"])
@pytest.mark.parametrize("batch_size", [None, 7, 64])
def test_forward_pass_matches_a_naive_loop(arch, batch_size):
    torch.manual_seed(0)
    shape = (16, 16, 3)
    model = {
        "simple": lambda: SimpleCifarCNN(input_shape=shape, num_classes=5),
        "preact": lambda: PreActResNet18(input_shape=shape, num_classes=5, width=4),
        "airbench": lambda: AirbenchNet(input_shape=shape, num_classes=5, widths=(8, 8, 8)),
    }[arch]()
    model.train()
    with torch.no_grad():  # BatchNorm statistics of real activations, so outputs are O(1)
        model(torch.rand(32, 3, 16, 16))
    x = _images(20, shape)
    logits, feats = _naive(model, x)
    out = forward_pass(model, x, features=True, device="cpu", batch_size=batch_size)
    np.testing.assert_allclose(out.logits, logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.features, feats, rtol=1e-4, atol=1e-4)


def test_parameters_can_still_train_after_a_forward_pass(tiny_model):
    # the pass runs under inference_mode: the weights must not become inference tensors
    forward_pass(tiny_model, _images(3), device="cpu")
    tiny_model.train()
    tiny_model(torch.rand(4, 3, 8, 8)).sum().backward()
    assert all(p.grad is not None for p in tiny_model.parameters())


def test_default_batch_size_per_device():
    assert default_batch_size(torch.device("cpu")) == CPU_BATCH_SIZE
    assert default_batch_size(torch.device("cuda")) == GPU_BATCH_SIZE
    with pytest.raises(ValueError, match="batch_size"):
        forward_pass(SimpleCifarCNN(input_shape=(8, 8, 3), num_classes=3), _images(2), batch_size=0)


def test_compile_path_pads_the_last_batch_to_one_shape(tiny_model, monkeypatch):
    # torch.compile itself takes tens of seconds on a CPU; the padding around it is what is tested
    shapes = []

    def fake_compile(module, **kwargs):
        assert kwargs == {"dynamic": False}

        def run(x):
            shapes.append(tuple(x.shape))
            return module(x)

        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    x = _images(10)
    out = forward_pass(tiny_model, x, features=True, device="cpu", batch_size=4, compile=True)
    assert shapes == [(4, 3, 8, 8)] * 3  # 4 + 4 + 2 padded to 4
    ref = forward_pass(tiny_model, x, features=True, device="cpu", batch_size=4)
    np.testing.assert_allclose(out.logits, ref.logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.features, ref.features, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("tta", [None, TestTimeAugmentation()])
def test_batches_shared_among_workers_give_the_same_outputs(tiny_model, monkeypatch, tta):
    """Two workers, each on one torch thread, return exactly what one thread returns, in order."""
    from poisonlab import threads

    x = _images(50, seed=3)
    monkeypatch.setattr(threads, "_explicit", 1)
    one = forward_pass(tiny_model, x, device="cpu", batch_size=4, tta=tta)
    monkeypatch.setattr(threads, "_explicit", 2)
    seen: set[int] = set()
    real = tiny_model.features

    def spy(v):
        seen.add(torch.get_num_threads())
        return real(v)

    monkeypatch.setattr(tiny_model, "features", spy)
    two = forward_pass(tiny_model, x, device="cpu", batch_size=4, tta=tta)
    np.testing.assert_array_equal(one.logits, two.logits)
    assert seen == {1}  # no OpenMP team inside a worker
    assert torch.get_num_threads() >= 1


def test_a_worker_error_reaches_the_caller_and_restores_threads(tiny_model, monkeypatch):
    from poisonlab import threads

    monkeypatch.setattr(threads, "_explicit", 2)
    before = torch.get_num_threads()
    calls = {"n": 0}
    real = tiny_model.features

    def fail_later(v):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("batch 5 failed")
        return real(v)

    monkeypatch.setattr(tiny_model, "features", fail_later)
    with pytest.raises(RuntimeError, match="batch 5 failed"):
        forward_pass(tiny_model, _images(40), device="cpu", batch_size=4)
    assert torch.get_num_threads() == before
