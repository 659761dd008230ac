"""STRIP: flag inputs whose prediction survives being superimposed with other images.

Gao, Xu, Wang, Chen, Ranasinghe and Nepal, "STRIP: A Defence Against Trojan Attacks on Deep
Neural Networks", ACSAC 2019, arXiv:1902.06531.

A backdoor trigger dominates the model's decision: blend a triggered image with random clean
images and the prediction stays on the attacker's target, so the softmax stays peaked and its
Shannon entropy low. A clean image blended with other clean images turns ambiguous and the
entropy rises. The blend is the paper's saturating sum by default (``blend="add"``) or an alpha
blend. STRIP averages the entropy over ``n_overlays`` random overlays per input and
rejects inputs below a threshold calibrated on trusted clean data at a chosen false-rejection
rate (FRR): either the empirical ``frr`` quantile of the clean entropies or, as in the paper,
the ``frr`` quantile of a normal distribution fitted to them.

The same fitted detector scans a training set (:meth:`STRIP.fit`, a :class:`Defense`) and
screens inference batches (:meth:`STRIP.detect`, :meth:`STRIP.entropy`).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.base import (
    Defense,
    ScanContext,
    check_calibration_inputs,
    check_choice,
    check_device,
    check_fraction,
    check_positive_int,
    per_class_summary,
)
from poisonlab.inference import check_images, forward_pass
from poisonlab.models.base import PoisonlabModel

__all__ = ["STRIP"]

_METHODS = ("quantile", "normal")
_BLENDS = ("add", "alpha")
# Inputs per chunk: bounds memory at chunk * n_overlays blended images (CIFAR-10, 16 overlays:
# 100 MB of uint8 blends, 400 MB of float32 while mixing).
_CHUNK = 2048
# Stream ids of the seeded generators: calibration and screening draw independent overlays.
_CALIBRATION, _SCREENING = 0, 1


class STRIP(Defense):
    """Entropy of predictions on superimposed inputs; low entropy = likely triggered.

    Parameters
    ----------
    n_overlays : int, default 16
        Clean images blended with each input (the paper uses 10-100); >= 1.
    blend : {"add", "alpha"}, default "add"
        ``"add"``: ``clip(x + overlay, 0, 255)``, the saturating superimposition of the paper's
        reference code; a full-intensity patch trigger stays at full intensity. ``"alpha"``:
        ``x * alpha + overlay * (1 - alpha)``, which halves the trigger at ``alpha = 0.5``. On the
        8x8 digits with a 2x2 pattern backdoor, "add" separated triggered test inputs with AUROC
        0.93 and "alpha" did not at all (AUROC 0.26 at 0.5, 0.23 at 0.8: the halved trigger no
        longer fires, and where it does the blended clean digits stay confident too).
    alpha : float, default 0.5
        Weight of the input for ``blend="alpha"``, in (0, 1).
    frr : float, default 0.01
        Target false-rejection rate on clean inputs, in (0, 0.5).
    threshold_method : {"quantile", "normal"}, default "quantile"
        ``"quantile"``: the empirical ``frr`` quantile of the clean entropies (the calibration
        value at or below which that share lies, so the calibration FRR is <= ``frr``); ``"normal"``:
        the ``frr`` quantile of a normal distribution fitted to them (the paper's choice).
    batch_size : int, default 2048
        Blended images per forward batch.
    seed : int, default 0
        Seed of the overlay draws (calibration and screening use independent streams).
    device : {"auto", "cpu", "cuda"}, default "auto"

    Attributes
    ----------
    threshold_ : float
        Entropy (bits) below which an input is flagged.
    clean_entropy_ : np.ndarray, shape (M,)
        Mean overlay entropy of every trusted calibration sample (bits, in [0, log2 K]).
    entropy_ : np.ndarray, shape (N,)
        Mean overlay entropy of every sample of the scanned dataset.
    scores_ : np.ndarray, shape (N,)
        ``-entropy_`` (higher = more suspicious).
    flagged_ : np.ndarray, shape (N,)
        ``entropy_ < threshold_``.
    model_ : PoisonlabModel
        The model the detector was fitted with (used by :meth:`detect`).
    """

    name = "strip"
    space = "pixels"
    needs_model = True
    needs_trusted = True
    paper = (
        "Gao et al., STRIP: A Defence Against Trojan Attacks on Deep Neural Networks, "
        "ACSAC 2019, arXiv:1902.06531"
    )

    def __init__(
        self,
        *,
        n_overlays: int = 16,
        blend: str = "add",
        alpha: float = 0.5,
        frr: float = 0.01,
        threshold_method: str = "quantile",
        batch_size: int = 2048,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        self.n_overlays = check_positive_int(n_overlays, "n_overlays")
        self.blend = check_choice(blend, "blend", _BLENDS)
        self.alpha = check_fraction(alpha, "alpha")
        if self.alpha >= 1.0:
            raise ValueError(f"alpha must be in (0, 1) so that the overlay counts, got {alpha!r}")
        self.frr = check_fraction(frr, "frr", high=0.5)
        if self.frr >= 0.5:
            raise ValueError(f"frr must be in (0, 0.5), got {frr!r}")
        self.threshold_method = check_choice(threshold_method, "threshold_method", _METHODS)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.seed = check_positive_int(seed, "seed", minimum=0)
        self.device = check_device(device)

    # ------------------------------------------------------------------ Defense
    def _fit(self, context: ScanContext) -> None:
        dataset = context.dataset
        self.calibrate(context.model, context.trusted)  # type: ignore[arg-type]  # fit() checked trusted
        rng = np.random.default_rng([self.seed, _SCREENING])
        entropy = self._mean_entropy(dataset.x, rng, exclude_self=False)
        self.entropy_ = entropy
        self.scores_ = -entropy
        self.flagged_ = entropy < self.threshold_
        self.details_ = self._details(dataset, entropy)

    # ------------------------------------------------------------------ calibration / screening
    def calibrate(self, model: PoisonlabModel | None, trusted: Dataset) -> STRIP:
        """Fit the threshold on ``trusted`` clean data only (no dataset scan); returns ``self``.

        Every trusted sample is blended with ``n_overlays`` other trusted samples (never with
        itself); the entropies give ``clean_entropy_`` and ``threshold_``.

        Raises
        ------
        ValueError
            Without a model, when the model does not fit the images or classes, or when
            ``trusted`` holds fewer than 10 samples.
        """
        check_calibration_inputs(model, trusted, who="STRIP", why="predicts on blended images")
        self.model_ = model
        self.overlays_ = trusted.x
        rng = np.random.default_rng([self.seed, _CALIBRATION])
        clean = self._mean_entropy(trusted.x, rng, exclude_self=True)
        self.clean_entropy_ = clean
        if self.threshold_method == "quantile":
            # "lower": the threshold is a calibration value, so at most frr of them lie below it.
            self.threshold_ = float(np.quantile(clean, self.frr, method="lower"))
        else:
            self.threshold_ = float(norm.ppf(self.frr, loc=clean.mean(), scale=max(clean.std(), 1e-12)))
        return self

    def entropy(self, images: np.ndarray) -> np.ndarray:
        """Mean overlay entropy (bits) of every image of a uint8 (N, H, W, C) batch, shape (N,).

        Deterministic: the same batch gives the same values on every call.
        """
        self._check_calibrated()
        check_images(self.model_, images)
        return self._mean_entropy(images, np.random.default_rng([self.seed, _SCREENING]), exclude_self=False)

    def detect(self, images: np.ndarray) -> np.ndarray:
        """True for the images of a uint8 (N, H, W, C) batch that STRIP rejects, shape (N,) bool."""
        return self.entropy(images) < self.threshold_

    # ------------------------------------------------------------------ internals
    def _check_calibrated(self) -> None:
        if not hasattr(self, "threshold_"):
            raise ValueError("STRIP is not calibrated: call fit(...) or calibrate(model, trusted) first")

    def _mean_entropy(
        self, images: np.ndarray, rng: np.random.Generator, *, exclude_self: bool
    ) -> np.ndarray:
        """Entropy averaged over overlays, shape (N,); ``exclude_self`` when ``images`` are the overlays."""
        n, pool = len(images), len(self.overlays_)
        if exclude_self:
            # Draw from the other pool - 1 images: indices at or above the own index move up by one.
            idx = rng.integers(0, pool - 1, size=(n, self.n_overlays))
            idx += idx >= np.arange(n)[:, None]
        else:
            idx = rng.integers(0, pool, size=(n, self.n_overlays))
        out = np.empty(n, dtype=np.float64)
        for start in range(0, n, _CHUNK):
            stop = min(start + _CHUNK, n)
            blended = self._blend(images[start:stop], self.overlays_[idx[start:stop]])
            fwd = forward_pass(self.model_, blended, batch_size=self.batch_size, device=self.device)
            probs = fwd.probabilities
            ent = -np.sum(probs * np.log2(np.clip(probs, 1e-12, 1.0)), axis=1)
            out[start:stop] = ent.reshape(stop - start, self.n_overlays).mean(axis=1)
        return out

    def _blend(self, x: np.ndarray, overlays: np.ndarray) -> np.ndarray:
        """(n, H, W, C) inputs and (n, V, H, W, C) overlays -> (n * V, H, W, C) uint8 blends."""
        base = x[:, None].astype(np.float32)
        if self.blend == "add":
            mixed = base + overlays.astype(np.float32)
        else:
            mixed = base * self.alpha + overlays.astype(np.float32) * (1.0 - self.alpha)
        return np.rint(mixed).clip(0, 255).astype(np.uint8).reshape(-1, *x.shape[1:])

    def _details(self, dataset: Dataset, entropy: np.ndarray) -> dict:
        per_class = per_class_summary(dataset, self.flagged_, entropy, "entropy")
        clean = self.clean_entropy_
        return {
            "threshold": float(self.threshold_),
            "threshold_method": self.threshold_method,
            "frr_target": float(self.frr),
            "calibration_samples": int(clean.size),
            "clean_entropy_mean": float(clean.mean()),
            "clean_entropy_std": float(clean.std()),
            "entropy_mean": float(entropy.mean()),
            "n_flagged": int(self.flagged_.sum()),
            "per_class": per_class,
        }
