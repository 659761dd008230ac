"""Batched inference on uint8 images: logits, probabilities, penultimate features and TTA.

All defenses that work in feature space share :func:`forward_pass`, which returns logits and
features from one pass over the data. Test-time augmentation (:class:`TestTimeAugmentation`)
averages the logits of mirrored and translated views, as airbench evaluates (Jordan 2024,
"94% on CIFAR-10 in 3.29 seconds on a single GPU", arXiv:2404.00498, section 3.7).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from poisonlab.device import autocast, resolve_device, use_bf16
from poisonlab.models.base import PoisonlabModel
from poisonlab.reprs import concise_repr
from poisonlab.threads import compute_threads, estimate_flops


def check_images(model: PoisonlabModel, images: np.ndarray) -> None:
    """Raise ValueError unless ``images`` is uint8 (N, H, W, C) of the model's input shape."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        got = f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}"
        raise ValueError(f"images must be a uint8 array (N, H, W, C), got {got}")
    if tuple(images.shape[1:]) != tuple(model.input_shape):
        raise ValueError(
            f"model expects images of shape {tuple(model.input_shape)} (H, W, C), "
            f"got {tuple(images.shape[1:])}"
        )


def to_input(
    batch: np.ndarray | torch.Tensor, device: torch.device, channels_last: bool = True
) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [0, 1] on ``device``.

    The permuted NHWC buffer already has channels_last strides, so no copy is made for them.
    """
    if isinstance(batch, np.ndarray):
        batch = np.ascontiguousarray(batch)  # torch refuses negative strides (flipped views)
    t = torch.as_tensor(batch).to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    return t.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


#: Images per batch when none is given. On a CPU the activations of a batch should stay in the
#: caches: the chapter CNN's first block holds 128 KiB per image in float32, and one thread
#: measured ~1,000 images/s at 64-128 per batch against ~530 at 1,024 (benchmarks/inference.py
#: sweeps it). A GPU wants large batches.
CPU_BATCH_SIZE = 128
GPU_BATCH_SIZE = 1024


def default_batch_size(device: torch.device) -> int:
    """:data:`CPU_BATCH_SIZE` on a CPU, :data:`GPU_BATCH_SIZE` elsewhere."""
    return CPU_BATCH_SIZE if device.type == "cpu" else GPU_BATCH_SIZE


@dataclass(frozen=True)
class TestTimeAugmentation:
    """Which views :func:`tta_logits` averages.

    Parameters
    ----------
    flip : bool
        Average each view with its horizontal mirror.
    translate : int
        Also average the images shifted by ``translate`` pixels down-right and up-left (borders
        reflected), >= 0; 0 turns translation off.
    """

    __test__ = False  # not a pytest test class despite its name

    flip: bool = True
    translate: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.translate, bool) or not isinstance(self.translate, int) or self.translate < 0:
            raise ValueError(f"translate must be a whole number of pixels >= 0, got {self.translate!r}")
        if not self.flip and self.translate == 0:
            raise ValueError("test-time augmentation needs flip or translate > 0 (else pass tta=None)")

    @property
    def views(self) -> int:
        """Forward passes per image: 1 or 3 positions, times 2 with mirrors."""
        return (3 if self.translate else 1) * (2 if self.flip else 1)


def tta_logits(
    logits_of: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tta: TestTimeAugmentation
) -> tuple[torch.Tensor, torch.Tensor]:
    """Test-time-augmented logits of a batch, airbench's weighting.

    With flips every position's logits are the mean of the image's and its mirror's. With
    translation the result is ``0.5 * centre + 0.5 * mean(down-right, up-left)``, the two
    shifted copies cut from the image padded by ``translate`` reflected pixels; so at
    ``translate=1`` with flips the six views weigh 1/4, 1/4, 1/8, 1/8, 1/8, 1/8.

    Parameters
    ----------
    logits_of : callable
        Float images (N, C, H, W) -> logits (N, K).
    x : torch.Tensor
        Float images (N, C, H, W), H and W > ``translate``.
    tta : TestTimeAugmentation

    Returns
    -------
    tuple of torch.Tensor
        The averaged logits and the plain logits of ``x``, both (N, K).
    """
    plain = logits_of(x)

    def mirrored(v: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        z = logits_of(v) if z is None else z
        return 0.5 * (z + logits_of(v.flip(-1))) if tta.flip else z

    out = mirrored(x, plain)
    t = tta.translate
    if t:
        h, w = x.shape[-2:]
        padded = F.pad(x, (t, t, t, t), mode="reflect")
        shifted = 0.5 * (mirrored(padded[..., :h, :w]) + mirrored(padded[..., 2 * t :, 2 * t :]))
        out = 0.5 * out + 0.5 * shifted
    return out, plain


@dataclass(frozen=True)
class ForwardResult:
    """Outputs of one pass: ``logits`` (N, K) float32 and ``features`` (N, D) float32 or None.

    With test-time augmentation ``logits`` are the augmented average and ``plain_logits`` the
    logits of the images as given (both from the same pass); otherwise ``plain_logits`` is None.
    """

    logits: np.ndarray
    features: np.ndarray | None
    plain_logits: np.ndarray | None = None

    @property
    def probabilities(self) -> np.ndarray:
        z = self.logits - self.logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    def __repr__(self) -> str:
        return concise_repr(self, logits=self.logits, features=self.features)


class _Outputs(torch.nn.Module):
    """``x -> (logits, features or the plain logits or None)`` for one pass (compilable)."""

    def __init__(self, model: PoisonlabModel, features: bool, tta: TestTimeAugmentation | None) -> None:
        super().__init__()
        self.model, self.want_features, self.tta = model, features, tta

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.tta is not None:
            return tta_logits(lambda v: self.model.head(self.model.features(v)), x, self.tta)
        f = self.model.features(x)
        return self.model.head(f), (f if self.want_features else None)


def forward_pass(
    model: PoisonlabModel,
    images: np.ndarray,
    *,
    features: bool = False,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    tta: TestTimeAugmentation | None = None,
    compile: bool = False,
) -> ForwardResult:
    """Run ``model`` in eval mode over ``images`` (uint8, (N, H, W, C)) in batches.

    Each batch is converted from uint8 to float on the fly (no float copy of the whole set),
    the model runs in channels_last under :func:`torch.inference_mode`, and the outputs stay on
    the device until one copy to the host at the end (no synchronisation per batch).

    Parameters
    ----------
    features : bool
        Also return the penultimate activations, shape (N, D).
    batch_size : int, optional
        Images per batch (>= 1); default :func:`default_batch_size` of the device.
    precision : {"fp32", "bf16", "auto"}
        fp32 by default, so that scores do not depend on the host; ``bf16`` autocasts to
        bfloat16; ``auto`` uses bf16 only where it is fast (CUDA, AMX CPUs). Both are opt-in.
    tta : TestTimeAugmentation, optional
        Average the logits over mirrored and translated views (:func:`tta_logits`); the plain
        logits come back too. Not with ``features``.
    compile : bool
        Run the pass through :func:`torch.compile` (the last batch is padded to the batch size
        so one graph serves all). The first call for a model, batch size and set of outputs
        compiles (about 20 s for the chapter CNN on a CPU); later ones reuse torch's cache.

    Returns
    -------
    ForwardResult
    """
    check_images(model, images)
    if tta is not None and features:
        raise ValueError("test-time augmentation averages logits; ask for features without tta")
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    bs = default_batch_size(dev) if batch_size is None else int(batch_size)
    if bs < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    _place(model, dev)
    views = 1 if tta is None else tta.views
    batch_flops = estimate_flops(model, model.input_shape) * min(bs, max(len(images), 1)) * views
    step = _Outputs(model, features, tta)
    if compile:
        step = torch.compile(step, dynamic=False)
    model.eval()
    try:
        with compute_threads(batch_flops, dev) as threads:
            workers = threads if dev.type == "cpu" and not compile else 1
            outs = _run(step, images, bs, dev, use_bf16(precision, dev), pad=compile, workers=workers)
    finally:
        model.train(was_training)
    if outs is None:
        k = model.num_classes
        empty = np.zeros((0, k), np.float32)
        return ForwardResult(
            empty, np.zeros((0, 0), np.float32) if features else None, None if tta is None else empty
        )
    logits, second = (None if o is None else o.cpu().numpy() for o in outs)
    if tta is not None:
        return ForwardResult(logits=logits, features=None, plain_logits=second)
    return ForwardResult(logits=logits, features=second)


def _place(model: PoisonlabModel, dev: torch.device) -> None:
    """Move ``model`` to ``dev`` with channels_last weights, unless it is there already (the
    check is cheaper than ``Module.to``, which a single-image request would pay every time).

    Runs outside inference_mode: parameters converted inside could never train again.
    """
    tensors = [*model.parameters(), *model.buffers()]
    if any(
        t.device != dev or (t.ndim == 4 and not t.is_contiguous(memory_format=torch.channels_last))
        for t in tensors
    ):
        model.to(dev, memory_format=torch.channels_last)


def _run(step, images: np.ndarray, bs: int, dev: torch.device, bf16: bool, pad: bool, workers: int = 1):
    """The batches of :func:`forward_pass`; outputs gathered on ``dev`` (None for no images).

    With ``workers`` > 1 (CPU only) the batches are shared among that many threads that each run
    torch on one thread: a small model's convolutions split over OpenMP threads meet at a barrier
    after every layer, which costs more than the layer on a 2-core machine (BENCHMARKS.md,
    "Inference"), while whole batches in parallel never wait for each other. In that mode every
    batch runs on one torch thread whichever worker takes it, so the outputs equal those of
    ``workers=1`` (inputs of fewer than 3 batches keep torch's own threads instead).
    """
    starts = list(range(0, len(images), bs))
    if not starts:
        return None
    if workers <= 1 or len(starts) < 3:
        outs = None
        for start in starts:
            outs = _run_batch(step, images, start, bs, dev, bf16, pad, outs)
        return outs
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        outs = _run_batch(step, images, starts[0], bs, dev, bf16, pad, None)  # allocates the outputs
        with ThreadPoolExecutor(
            max_workers=workers, initializer=torch.set_num_threads, initargs=(1,)
        ) as pool:
            done = [pool.submit(_run_batch, step, images, s, bs, dev, bf16, pad, outs) for s in starts[1:]]
            for future in done:
                future.result()  # re-raises a worker's error here
    finally:
        torch.set_num_threads(previous)
    return outs


def _run_batch(step, images, start: int, bs: int, dev, bf16: bool, pad: bool, outs):
    """One batch into ``outs`` (allocated from this batch when None); returns ``outs``.

    inference_mode and autocast are per thread, so every batch enters them itself.
    """
    n = len(images)
    with torch.inference_mode():
        x = to_input(images[start : start + bs], dev)
        m = len(x)
        if pad and m < bs and n > bs:  # one input shape for the compiled graph
            x = torch.cat([x, x.new_zeros((bs - m, *x.shape[1:]))])
        with autocast(dev, bf16):
            res = step(x)
        if outs is None:
            outs = [None if r is None else torch.empty((n, *r.shape[1:]), device=dev) for r in res]
        for out, r in zip(outs, res, strict=True):
            if out is not None:
                out[start : start + m] = r[:m]  # float32 whatever the autocast dtype
    return outs


def predict(model: PoisonlabModel, images: np.ndarray, **kwargs) -> np.ndarray:
    """Predicted class indices, shape (N,) int64."""
    return forward_pass(model, images, **kwargs).predictions.astype(np.int64)
