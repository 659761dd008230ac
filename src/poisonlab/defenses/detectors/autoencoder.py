"""Reconstruction error of a small convolutional autoencoder trained on the data itself.

An autoencoder squeezed through a narrow code learns to reconstruct what is common in its training
data; images unlike the rest (out-of-distribution inserts, noise, strong triggers) reconstruct
worse (Japkowicz, Myers and Gluck, "A novelty detection approach to classification", IJCAI 1995;
Sakurada and Yairi, "Anomaly detection using autoencoders with nonlinear dimensionality
reduction", MLSDA 2014). Used as a poison filter by e.g. Liu, Xie and Srivastava ("Neural
Trojans", ICCD 2017, arXiv:1710.00942), who put one in front of the classifier.

The network (ours): two stride-2 3x3 convolutions (16 and 32 channels), a linear code of
``latent_dim`` values, and the mirror image with 4x4 transposed convolutions and a sigmoid, so it
works for 8x8x1 digits and 32x32x3 CIFAR-10 alike (images are zero-padded to a multiple of 4 and
cropped back). It is trained with Adam on the mean squared error of the scanned dataset itself,
or of ``trusted`` when one is given (then poison never shapes the code). The score is each
image's mean squared reconstruction error on the robust log scale of its labelled class (or of
the whole dataset); images more than ``threshold`` robust standard deviations above the median
are flagged, or the top ``contamination`` share of each group.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.base import (
    Defense,
    ScanContext,
    check_bool,
    check_device,
    check_fraction,
    check_positive_float,
    check_positive_int,
    class_groups,
    flag_top_fraction,
)
from poisonlab.defenses.helpers.robust_stats import log_robust_z
from poisonlab.device import resolve_device
from poisonlab.inference import to_input
from poisonlab.threads import compute_threads, estimate_flops

__all__ = ["AutoencoderDetector", "ConvAutoencoder"]


class ConvAutoencoder(nn.Module):
    """Conv encoder -> linear code -> transposed-conv decoder for (C, H, W) images in [0, 1].

    Parameters
    ----------
    image_shape : tuple of int
        (H, W, C) of the images, C in {1, 3}.
    latent_dim : int
        Size of the code.
    """

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int) -> None:
        super().__init__()
        h, w, c = image_shape
        self.shape = (h, w)
        self.padded = (4 * math.ceil(h / 4), 4 * math.ceil(w / 4))
        inner = (32, self.padded[0] // 4, self.padded[1] // 4)
        self.encoder = nn.Sequential(
            nn.Conv2d(c, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(math.prod(inner), latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, math.prod(inner)),
            nn.ReLU(),
            nn.Unflatten(1, inner),
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(16, c, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> reconstruction of the same shape in [0, 1]."""
        h, w = self.shape
        pad = (0, self.padded[1] - w, 0, self.padded[0] - h)
        out = self.decoder(self.encoder(nn.functional.pad(x, pad)))
        return out[:, :, :h, :w]


class AutoencoderDetector(Defense):
    """Flag images that an autoencoder trained on the data reconstructs badly.

    Parameters
    ----------
    latent_dim : int or None
        Size of the autoencoder's code, >= 1; None: one eighth of the pixel values per image,
        between 4 and 64 (8 for 8x8 digits, 64 for CIFAR-10). A narrow code is what keeps the
        network from reconstructing unusual images as well as common ones.
    epochs : int
        Training epochs over the training images, >= 1 (raised to reach ``min_steps``).
    min_steps : int
        Minimum number of optimisation steps, >= 1: a 1,200-image digits set gives only 10
        steps per epoch, so small datasets get more epochs.
    max_train_images : int or None
        Train on a seeded random subset of at most this many images (every image is scored);
        10,000 keeps a 44k-image CIFAR-10 scan near a minute on two CPU cores. None: all.
    batch_size : int
        Training and scoring batch size, >= 1.
    learning_rate : float
        Adam learning rate, > 0.
    per_class : bool
        Standardise the reconstruction errors within each labelled class or (default) over the
        whole dataset. The network never sees labels and a trigger is hard to reconstruct
        whatever the label; a backdoor can also make up half of its target class (the digits
        fixture), which moves that class's median onto the poison.
    threshold : float
        Flag errors more than ``threshold`` robust standard deviations above the group's median
        on a log scale (median + k * MAD), > 0. Used when ``contamination`` is None; 3.0 flagged
        0-1 of 1,167 clean digits.
    contamination : float or None
        Instead of the threshold, flag this share of each group (highest errors), in (0, 0.5].
    seed : int
        Seed of the initial weights and of the batch order; training on CPU is deterministic.
    device : {"auto", "cpu", "cuda"}
        Where the autoencoder trains.

    Attributes
    ----------
    errors_ : ndarray (N,)
        Mean squared reconstruction error per image (pixels in [0, 1]).
    details_ : dict
        Final training loss, what it was trained on, per-group median errors.
    """

    name = "autoencoder"
    space = "pixels"
    paper = (
        "Sakurada & Yairi, Anomaly detection using autoencoders with nonlinear dimensionality "
        "reduction, MLSDA 2014; Liu, Xie & Srivastava, Neural Trojans, ICCD 2017, arXiv:1710.00942"
    )

    def __init__(
        self,
        *,
        latent_dim: int | None = None,
        epochs: int = 5,
        min_steps: int = 500,
        max_train_images: int | None = 10_000,
        batch_size: int = 128,
        learning_rate: float = 2e-3,
        per_class: bool = False,
        threshold: float = 3.0,
        contamination: float | None = None,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        if latent_dim is not None:
            latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.latent_dim = latent_dim
        self.epochs = check_positive_int(epochs, "epochs")
        self.min_steps = check_positive_int(min_steps, "min_steps")
        if max_train_images is not None:
            max_train_images = check_positive_int(max_train_images, "max_train_images")
        self.max_train_images = max_train_images
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.learning_rate = check_positive_float(learning_rate, "learning_rate")
        self.per_class = check_bool(per_class, "per_class")
        self.threshold = check_positive_float(threshold, "threshold")
        if contamination is not None:
            contamination = check_fraction(contamination, "contamination", high=0.5)
        self.contamination = contamination
        self.seed = check_positive_int(seed, "seed", minimum=0)
        self.device = check_device(device)

    def _fit(self, context: ScanContext) -> None:
        dataset, trusted = context.dataset, context.trusted
        h, w, _ = dataset.image_shape
        if h < 2 or w < 2:
            raise ValueError(f"autoencoder needs images of at least 2x2 pixels, got {h}x{w}")
        device = resolve_device(self.device)
        train_x = (trusted if trusted is not None else dataset).x
        if self.max_train_images is not None and len(train_x) > self.max_train_images:
            pick = np.random.default_rng(self.seed).choice(len(train_x), self.max_train_images, replace=False)
            train_x = train_x[np.sort(pick)]
        net, loss, epochs = self._train(train_x, dataset.image_shape, device)
        batch = min(len(dataset), max(self.batch_size, 512))  # the batch _errors runs
        with compute_threads(estimate_flops(net, dataset.image_shape) * batch, device):
            errors = self._errors(net, dataset.x, device)
        self.errors_ = errors
        self._flag(dataset, errors)
        self.details_.update(
            {
                "trained_on": "trusted" if trusted is not None else "dataset",
                "training_images": len(train_x),
                "final_loss": loss,
                "epochs": epochs,
                "median_error": float(np.median(errors)),
            }
        )

    def _train(
        self, images: np.ndarray, shape: tuple[int, int, int], device: torch.device
    ) -> tuple[ConvAutoencoder, float, int]:
        """Train a fresh autoencoder on uint8 ``images``; returns it (eval), last loss, epochs."""
        with torch.random.fork_rng(devices=[]):  # seed the weights without touching the global RNG
            torch.manual_seed(self.seed)
            latent = self.latent_dim or int(np.clip(math.prod(shape) // 8, 4, 64))
            net = ConvAutoencoder(shape, latent).to(device)
        order_rng = torch.Generator().manual_seed(self.seed)
        data = torch.as_tensor(np.ascontiguousarray(images)).to(device)
        optimiser = torch.optim.Adam(net.parameters(), lr=self.learning_rate)
        net.train()
        epoch_loss = float("nan")
        steps_per_epoch = math.ceil(len(data) / self.batch_size)
        epochs = max(self.epochs, math.ceil(self.min_steps / steps_per_epoch))
        # a small net: torch's one thread per core would stall at every barrier on a busy machine
        step_flops = 3.0 * estimate_flops(net, shape) * min(self.batch_size, len(data))
        with compute_threads(step_flops, device):
            for _ in range(epochs):
                total = torch.zeros((), device=device)  # summed on the device: no sync per step on CUDA
                for batch in torch.randperm(len(data), generator=order_rng).split(self.batch_size):
                    x = to_input(data[batch.to(device)], device, channels_last=False)
                    loss = nn.functional.mse_loss(net(x), x)
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                    total += loss.detach() * len(batch)
                epoch_loss = float(total) / len(data)
        return net.eval(), epoch_loss, epochs

    @torch.no_grad()
    def _errors(self, net: ConvAutoencoder, images: np.ndarray, device: torch.device) -> np.ndarray:
        """Mean squared reconstruction error per image, shape (N,), float64."""
        out, step = [], max(self.batch_size, 512)  # no gradients: larger batches are cheap
        for start in range(0, len(images), step):
            x = to_input(images[start : start + step], device, channels_last=False)
            out.append(torch.mean((net(x) - x) ** 2, dim=(1, 2, 3)).double().cpu())
        return torch.cat(out).numpy()

    def _flag(self, dataset: Dataset, errors: np.ndarray) -> None:
        """Robust per-group scores and flags from the reconstruction errors."""
        if self.per_class:
            groups = [g for g in class_groups(dataset.y, dataset.num_classes) if len(g)]
        else:
            groups = [np.arange(len(dataset))]
        scores = np.zeros(len(dataset))
        flagged = np.zeros(len(dataset), dtype=bool)
        report: list[dict[str, Any]] = []
        for idx in groups:
            scores[idx] = log_robust_z(errors[idx])
            if self.contamination is None:
                flagged[idx] = scores[idx] > self.threshold
            else:
                flagged[idx] = flag_top_fraction(errors[idx], self.contamination)
            label = dataset.class_names[dataset.y[idx[0]]] if self.per_class else "all"
            report.append(
                {
                    "group": label,
                    "n": len(idx),
                    "flagged": int(flagged[idx].sum()),
                    "median_error": float(np.median(errors[idx])),
                }
            )
        self.scores_, self.flagged_ = scores, flagged
        self.details_["groups"] = report
