"""The one training function: from scratch or fine-tuning, on CPU first.

The fast recipe (one-cycle SGD, label smoothing, batched crop+flip on uint8 tensors,
channels_last) is the default; see BENCHMARKS.md for what it reaches on CIFAR-10. A freshly
built model that exposes ``init_whitening(images)`` (the airbench network's patch whitening)
gets it called with the uint8 training images before the first step; its weights are then part
of the saved model like any other.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from poisonlab.data.dataset import Dataset
from poisonlab.device import autocast, resolve_device, use_bf16
from poisonlab.inference import forward_pass, to_input
from poisonlab.models.base import PoisonlabModel
from poisonlab.models.registry import build_model
from poisonlab.provenance import TRAINING_REVISION
from poisonlab.reprs import concise_repr
from poisonlab.threads import compute_threads, estimate_flops
from poisonlab.training.augment import alternating_flips, crop_flip_of, random_crop_flip
from poisonlab.training.batchnorm import recalibrate_batchnorm
from poisonlab.training.lookahead import Lookahead
from poisonlab.training.optim import make_optimizer, make_schedule, one_cycle_factor
from poisonlab.training.options import TrainConfig
from poisonlab.training.progress import TrainProgress

__all__ = ["TRAINING_REVISION", "EpochStats", "TrainResult", "one_cycle_factor", "train"]


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float | None
    lr: float
    seconds: float


@dataclass
class TrainResult:
    """The trained model (a new object; a fine-tuned model never aliases its parent) and history."""

    model: PoisonlabModel
    history: list[EpochStats] = field(default_factory=list)
    seconds: float = 0.0
    config: TrainConfig | None = None

    @property
    def final_val_accuracy(self) -> float | None:
        return self.history[-1].val_accuracy if self.history else None

    def __repr__(self) -> str:
        # the default prints every layer of the network and every epoch
        return concise_repr(
            self,
            model=getattr(self.model, "arch", type(self.model).__name__),
            epochs=len(self.history),
            seconds=round(self.seconds, 2),
            final_val_accuracy=self.final_val_accuracy,
        )


def _check_data(data: Dataset, model: PoisonlabModel) -> None:
    if len(data) < 2:
        raise ValueError(f"training needs at least 2 samples, got {len(data)}")
    if tuple(data.image_shape) != tuple(model.input_shape):
        raise ValueError(f"model expects images {tuple(model.input_shape)}, dataset has {data.image_shape}")
    if data.num_classes != model.num_classes:
        raise ValueError(f"model has {model.num_classes} classes, dataset has {data.num_classes}")


#: a last batch smaller than this is skipped (its samples come round again after the reshuffle)
MIN_TAIL_BATCH = 8


def _batches(n: int, batch_size: int, gen: torch.Generator, drop_last: bool = False) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=gen)
    chunks = list(order.split(batch_size))
    # airbench's recipe at batch 1,024 and lr 1.5 (mean loss): the 64-image tail of a 40,000-image
    # epoch made one full-size noisy step and 40% of the BatchNorm running statistics right before
    # every validation; on CIFAR-10 epoch 1's validation accuracy was 0.29 with it, 0.56 without.
    if drop_last and len(chunks) > 1 and len(chunks[-1]) < batch_size:
        chunks.pop()
    # BatchNorm cannot train on a batch of one, and the statistics of a handful of samples are
    # noise: the digits CNN (2x2 maps in its last block, then a BatchNorm1d over the batch alone)
    # trained on 1,283 images in batches of 64 had a last batch of 3, and its validation accuracy
    # fell to chance mid-training (3 seeds: 0.72-0.97 test accuracy; 0.99-1.00 with it skipped).
    if len(chunks) > 1 and len(chunks[-1]) < MIN_TAIL_BATCH:
        chunks.pop()
    return chunks


def train(
    data: Dataset,
    config: TrainConfig | None = None,
    *,
    model: PoisonlabModel | None = None,
    val_data: Dataset | None = None,
    device: str = "auto",
    progress: bool = True,
    on_epoch_end: Callable[[EpochStats, PoisonlabModel], None] | None = None,
) -> TrainResult:
    """Train a model on ``data``.

    Parameters
    ----------
    data : Dataset
        Training samples (uint8 images, labels in [0, K)).
    config : TrainConfig, optional
        Recipe; the benchmarked fast recipe by default.
    model : PoisonlabModel, optional
        Fine-tune mode: a copy of this model continues training on ``data`` only. When ``None``
        a new model is built from ``config.model`` (and whitened on ``data`` when it has
        ``init_whitening``).
    val_data : Dataset, optional
        Evaluated after each epoch (every ``config.validate_every`` epochs).
    device : {"auto", "cpu", "cuda"}
    progress : bool
        Show a progress bar with loss and accuracy.
    on_epoch_end : callable, optional
        Called with the epoch's statistics and the model to evaluate (in train mode; switch to
        eval mode yourself) after each epoch; its time is not counted in ``TrainResult.seconds``.

    Returns
    -------
    TrainResult
        The trained model (in eval mode) and per-epoch statistics; ``seconds`` counts the setup
        (model, whitening) and the epochs, not ``on_epoch_end``.
    """
    cfg = config or TrainConfig()
    start, callback_seconds = time.perf_counter(), 0.0  # the setup (whitening included) counts
    run = _Run.start(data, cfg, model, val_data, resolve_device(device))
    result = TrainResult(model=run.net, config=cfg)
    with (
        compute_threads(run.step_flops, run.dev),
        TrainProgress(cfg.epochs, run.steps_per_epoch, enabled=progress) as bar,
    ):
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            loss, accuracy = run.epoch(epoch, bar)
            last = epoch == cfg.epochs
            if last and run.recalibrate:  # before the final validation: it measures the saved model
                recalibrate_batchnorm(
                    run.eval_net,
                    run.images,
                    batch_size=cfg.batch_size,
                    device=run.dev,
                    channels_last=cfg.channels_last,
                    generator=run.gen,
                    augment=crop_flip_of(cfg.augment, run.gen),
                )
            val_acc = run.validate(val_data, epoch, last)
            lr = run.opt.param_groups[0]["lr"]
            stats = EpochStats(epoch, loss, accuracy, val_acc, lr, time.perf_counter() - t0)
            result.history.append(stats)
            bar.end_epoch(stats)
            if on_epoch_end is not None:
                t_cb = time.perf_counter()
                on_epoch_end(stats, run.eval_net)
                run.eval_net.train()
                callback_seconds += time.perf_counter() - t_cb
    run.release_whitening_bias()
    result.model = run.eval_net.eval()
    result.seconds = time.perf_counter() - start - callback_seconds
    return result


def _prepare_net(
    data: Dataset, cfg: TrainConfig, model: PoisonlabModel | None, val_data: Dataset | None, dev
) -> PoisonlabModel:
    """A new network from ``cfg.model`` (whitened on ``data`` when it can be) or a copy of ``model``."""
    net = (
        build_model(cfg.model.spec(data.image_shape, data.num_classes))
        if model is None
        else copy.deepcopy(model)
    )
    _check_data(data, net)
    if val_data is not None:
        _check_data(val_data, net)
    if model is None and callable(getattr(net, "init_whitening", None)):
        # patch whitening is estimated from the training images; a fine-tuned model keeps its own
        net.init_whitening(data.x)
    mf = torch.channels_last if cfg.channels_last else torch.contiguous_format
    return net.to(dev, memory_format=mf).train()


@dataclass
class _Run:
    """The state of one training run: model, optimiser, schedule, EMA, Lookahead, data as tensors,
    generator, alternating-flip mask."""

    cfg: TrainConfig
    dev: torch.device
    net: PoisonlabModel
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler | None
    ema: AveragedModel | None
    lookahead: Lookahead | None
    images: torch.Tensor  # uint8 NCHW view of the NHWC data
    labels: torch.Tensor
    gen: torch.Generator
    flip_base: torch.Tensor | None  # alternating flips: the odd epochs' mask, one entry per image
    steps_per_epoch: int
    step_flops: float
    recalibrate: bool
    steps_done: int = 0

    @classmethod
    def start(
        cls, data: Dataset, cfg: TrainConfig, model: PoisonlabModel | None, val_data: Dataset | None, dev
    ) -> _Run:
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        net = _prepare_net(data, cfg, model, val_data, dev)
        opt = make_optimizer(net, cfg)
        steps = len(_batches(len(data), cfg.batch_size, torch.Generator().manual_seed(0), cfg.drop_last))
        ema = None
        if cfg.ema_decay is not None:
            ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        lookahead = None
        if cfg.lookahead is not None:
            lookahead = Lookahead(cfg.lookahead, total_steps=cfg.epochs * steps, steps_per_epoch=steps)
        aug = cfg.augment
        alternate = aug is not None and aug.flip and aug.flip_mode == "alternating"
        return cls(
            cfg=cfg,
            dev=dev,
            net=net,
            opt=opt,
            sched=make_schedule(opt, cfg, cfg.epochs * steps),
            ema=ema,
            lookahead=lookahead,
            images=torch.from_numpy(np.ascontiguousarray(data.x)).permute(0, 3, 1, 2),
            labels=torch.from_numpy(data.y),
            gen=gen,
            flip_base=torch.rand(len(data), generator=gen) < 0.5 if alternate else None,
            steps_per_epoch=steps,
            step_flops=3.0 * estimate_flops(net, data.image_shape) * min(cfg.batch_size, len(data)),
            recalibrate=cfg.recalibrate_bn if cfg.recalibrate_bn is not None else model is None,
        )

    @property
    def eval_net(self) -> PoisonlabModel:
        return self.ema.module if self.ema is not None else self.net

    def epoch(self, epoch: int, bar: TrainProgress) -> tuple[float, float]:
        """One pass over the data in random batches; returns (mean loss, accuracy) on them."""
        cfg, dev, aug = self.cfg, self.dev, self.cfg.augment
        bf16 = use_bf16(cfg.precision, dev)
        self._freeze_whitening_bias(epoch)
        flips = None if self.flip_base is None else alternating_flips(self.flip_base, epoch)
        loss_sum, correct, seen = 0.0, 0, 0
        for idx in _batches(len(self.labels), cfg.batch_size, self.gen, cfg.drop_last):
            xb, yb = self.images[idx], self.labels[idx]
            if aug is not None:
                xb = random_crop_flip(
                    xb,
                    padding=aug.crop_padding,
                    flip=aug.flip,
                    generator=self.gen,
                    padding_mode=aug.padding_mode,
                    flip_mask=None if flips is None else flips[idx],
                )
            x, y = to_input(xb.permute(0, 2, 3, 1), dev, cfg.channels_last), yb.to(dev)
            with autocast(dev, bf16):
                logits = self.net(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            if not math.isfinite(loss.item()):
                raise ValueError(f"training diverged (loss {loss.item()}) at epoch {epoch}; lower the lr")
            self._step(loss)
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            bar.step(loss_sum / seen, correct / seen)
        if self.lookahead is not None:
            self.lookahead.end_epoch(self.net)
        return loss_sum / seen, correct / seen

    def _freeze_whitening_bias(self, epoch: int) -> None:
        """The whitening bias trains for the first ``whitening_bias_epochs`` epochs only (airbench)."""
        n = self.cfg.whitening_bias_epochs
        bias = getattr(self.net, "whitening_bias", None)
        if n is not None and isinstance(bias, nn.Parameter):
            bias.requires_grad_(epoch <= n)

    def release_whitening_bias(self) -> None:
        """Make the whitening bias trainable again after the run: freezing it is this recipe's
        schedule, not a property of the model (a later fine-tune or a crafting surrogate would
        otherwise treat a model trained here differently from the same model loaded from disk)."""
        bias = getattr(self.net, "whitening_bias", None)
        if self.cfg.whitening_bias_epochs is not None and isinstance(bias, nn.Parameter):
            bias.requires_grad_(True)

    def _step(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        self.steps_done += 1
        if self.lookahead is not None:
            self.lookahead.after_step(self.net, self.steps_done)
        if self.ema is not None:
            self.ema.update_parameters(self.net)

    def validate(self, val_data: Dataset | None, epoch: int, last: bool) -> float | None:
        """Validation accuracy when this epoch validates (every ``validate_every``, and the last)."""
        cfg = self.cfg
        if val_data is None or not ((cfg.validate_every and epoch % cfg.validate_every == 0) or last):
            return None
        n_val = len(val_data) if last or cfg.val_samples is None else cfg.val_samples
        pred = forward_pass(
            self.eval_net,
            val_data.x[:n_val],
            device=self.dev,
            precision=cfg.precision,
            batch_size=cfg.eval_batch_size,
        ).predictions
        return float((pred == val_data.y[:n_val]).mean())
