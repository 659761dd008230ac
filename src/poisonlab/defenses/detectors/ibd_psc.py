"""IBD-PSC: flag inputs whose prediction survives amplifying the model's BatchNorm parameters.

Hou, Feng, Hua, Luo, Zhang and Li, "IBD-PSC: Input-level Backdoor Detection via
Parameter-oriented Scaling Consistency", ICML 2024, arXiv:2405.09786.

Multiply the weight and bias of the last BatchNorm layers by a factor ``scale`` > 1 and a
backdoored model keeps predicting the target on triggered inputs, with high confidence, while its
predictions on benign inputs fall apart: the paper's *parameter-oriented scaling consistency*,
which it traces to the backdoor's few, large activations that amplification only reinforces.
The detector builds ``n_models`` amplified versions of the model, the k-th amplifying the last
``k_start + k`` BatchNorm layers (k = 0 .. n_models - 1; a model with fewer layers than that
amplifies all of them by higher powers of ``scale`` instead,
:func:`~poisonlab.defenses.helpers.batchnorm_scaling.amplification_schedule`),
and scores an input by

    PSC(x) = mean over the amplified models of softmax(f_amplified(x))[y_hat],

with ``y_hat`` the original model's prediction: in [0, 1], high for triggered inputs.

*Adaptive layer selection* (the paper's): ``k_start`` is the smallest number of trailing
BatchNorm layers whose amplification makes the model err on more than ``error_rate`` of the
trusted (labelled, clean) samples, so that amplification surely disturbs benign inputs; when no
number reaches it, every layer is amplified. The paper thresholds PSC at a fixed T = 0.9
(``threshold_method="fixed"``); by default the threshold is calibrated on the trusted set at a
target false-rejection rate instead, as for STRIP.

Amplification never touches the caller's model: the detector keeps a deep copy in eval mode
and evaluates it with :func:`torch.func.functional_call`, substituting only the scaled BatchNorm
parameters (tensors computed once per calibration). Inference is batched in fp32, with one
device-to-host copy per batch.

The same fitted detector scans a training set (:meth:`IBDPSC.fit`, a :class:`Defense`) and
screens inference batches (:meth:`IBDPSC.score`, :meth:`IBDPSC.detect`).

Where it does not help: the chapter CNN (ReLU before BatchNorm) does not scatter benign inputs
under amplification, it sends them to a few classes (the digits models: "1", "2", "4", "5"
took every prediction). Benign images *of* those classes keep their prediction at a confidence
that amplification only sharpens, a PSC of 1.0 that no trigger exceeds; the calibrated threshold
then sits at 1.0 and flags (almost) nothing. A backdoor trained into such a model collapsed
with the rest (PSC near 0 on its triggered digits).

Cost: ``1 + n_models`` forward passes per scored image (6 with the defaults: 264k image passes
for 44k CIFAR-10 training images), plus up to ``L + 1 + n_models`` passes per trusted image at
calibration (L BatchNorm layers; the search stops at ``k_start``).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch.func import functional_call

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.base import (
    Defense,
    ScanContext,
    check_calibration_inputs,
    check_choice,
    check_device,
    check_fraction,
    check_positive_float,
    check_positive_int,
    per_class_summary,
)
from poisonlab.defenses.helpers.batchnorm_scaling import (
    amplification_schedule,
    amplified_parameters,
    batchnorm_layers,
)
from poisonlab.device import resolve_device
from poisonlab.inference import check_images, to_input
from poisonlab.models.base import PoisonlabModel
from poisonlab.threads import compute_threads, estimate_flops

__all__ = ["IBDPSC"]

_METHODS = ("quantile", "fixed")
_MIN_TRUSTED = 10


class IBDPSC(Defense):
    """Parameter-oriented scaling consistency; high PSC = likely triggered.

    Parameters
    ----------
    scale : float, default 1.5
        Factor applied to the weight and bias of the amplified BatchNorm layers (the paper's
        omega), > 1.
    n_models : int, default 5
        Amplified models averaged in the PSC (the paper's n), >= 1.
    error_rate : float, default 0.6
        Trusted-set error rate that the first amplified model must exceed (the paper's xi),
        in (0, 1).
    threshold_method : {"quantile", "fixed"}, default "quantile"
        ``"quantile"``: the (1 - ``frr``) quantile of the trusted samples' PSC; ``"fixed"``:
        ``threshold`` (the paper's T).
    frr : float, default 0.01
        ``"quantile"``: target false-rejection rate on clean inputs, in (0, 0.5).
    threshold : float, default 0.9
        ``"fixed"``: PSC above which an input is flagged, in (0, 1).
    batch_size : int, default 1024
        Images per forward batch.
    device : {"auto", "cpu", "cuda"}, default "auto"

    Attributes
    ----------
    threshold_ : float
        PSC above which an input is flagged.
    start_layers_ : int
        ``k_start``: trailing BatchNorm layers amplified in the first model.
    amplifications_ : list of (int, float)
        Trailing layers and factor of every amplified model.
    error_rates_ : list of float
        Trusted error rate with the last 1, 2, ... ``start_layers_`` layers amplified.
    clean_psc_ : np.ndarray, shape (M,)
        PSC of every trusted calibration sample, in [0, 1].
    psc_ : np.ndarray, shape (N,)
        PSC of every sample of the scanned dataset; also ``scores_``.
    flagged_ : np.ndarray, shape (N,)
        ``psc_ > threshold_``.
    """

    name = "ibd_psc"
    space = "features"
    needs_model = True
    needs_trusted = True
    paper = (
        "Hou et al., IBD-PSC: Input-level Backdoor Detection via Parameter-oriented Scaling "
        "Consistency, ICML 2024, arXiv:2405.09786"
    )

    def __init__(
        self,
        *,
        scale: float = 1.5,
        n_models: int = 5,
        error_rate: float = 0.6,
        threshold_method: str = "quantile",
        frr: float = 0.01,
        threshold: float = 0.9,
        batch_size: int = 1024,
        device: str = "auto",
    ) -> None:
        self.scale = check_positive_float(scale, "scale")
        if self.scale <= 1.0:
            raise ValueError(f"scale must be > 1 (an amplification), got {scale!r}")
        self.n_models = check_positive_int(n_models, "n_models")
        self.error_rate = check_fraction(error_rate, "error_rate")
        if self.error_rate >= 1.0:
            raise ValueError(f"error_rate must be in (0, 1), got {error_rate!r}")
        self.threshold_method = check_choice(threshold_method, "threshold_method", _METHODS)
        self.frr = check_fraction(frr, "frr", high=0.5)
        if self.frr >= 0.5:
            raise ValueError(f"frr must be in (0, 0.5), got {frr!r}")
        self.threshold = check_fraction(threshold, "threshold")
        if self.threshold >= 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.device = check_device(device)

    # ------------------------------------------------------------------ Defense
    def _fit(self, context: ScanContext) -> None:
        self.calibrate(context.model, context.trusted)  # type: ignore[arg-type]  # fit() checked trusted
        psc = self.psc(context.dataset.x)
        self.psc_ = psc
        self.scores_ = psc
        self.flagged_ = psc > self.threshold_
        self.details_ = self._details(context.dataset, psc)

    # ------------------------------------------------------------------ calibration / screening
    def calibrate(self, model: PoisonlabModel | None, trusted: Dataset) -> IBDPSC:
        """Choose the amplified layers and the threshold on ``trusted`` clean data; returns ``self``.

        Raises
        ------
        ValueError
            Without a model, for a model without affine BatchNorm layers, when the model does
            not fit the images or classes, or when ``trusted`` holds fewer than 10 samples.
        """
        self._check_inputs(model, trusted)
        dev = resolve_device(self.device)
        # A private copy: amplification, eval mode and device moves never reach the caller's model.
        self.model_ = copy.deepcopy(model).to(dev).eval()
        self._device = dev
        layers = batchnorm_layers(self.model_)
        self.bn_layers_ = [name for name, _ in layers]
        self.error_rates_ = []
        start = len(layers)
        for k in range(1, len(layers) + 1):
            wrong = (
                self._amplified_predictions(trusted.x, amplified_parameters(layers[-k:], self.scale))
                != trusted.y
            )
            self.error_rates_.append(float(wrong.mean()))
            if self.error_rates_[-1] > self.error_rate:
                start = k
                break
        self.start_layers_ = start
        self.error_target_reached_ = self.error_rates_[-1] > self.error_rate
        self.amplifications_ = amplification_schedule(start, len(layers), self.n_models, self.scale)
        self._params = [amplified_parameters(layers[-k:], factor) for k, factor in self.amplifications_]
        self.clean_psc_ = self._psc(trusted.x)
        if self.threshold_method == "quantile":
            # "higher": a calibration value, so at most frr of them lie strictly above it.
            self.threshold_ = float(np.quantile(self.clean_psc_, 1.0 - self.frr, method="higher"))
        else:
            self.threshold_ = self.threshold
        return self

    def psc(self, images: np.ndarray) -> np.ndarray:
        """PSC of every image of a uint8 (N, H, W, C) batch, shape (N,) float64 in [0, 1]."""
        self._check_calibrated()
        check_images(self.model_, images)
        return self._psc(images)

    def score(self, images: np.ndarray) -> np.ndarray:
        """Suspicion of every image of a uint8 batch, shape (N,): the PSC (higher = more suspicious)."""
        return self.psc(images)

    def detect(self, images: np.ndarray) -> np.ndarray:
        """True for the images of a uint8 (N, H, W, C) batch that IBD-PSC rejects, shape (N,) bool."""
        return self.psc(images) > self.threshold_

    # ------------------------------------------------------------------ internals
    def _check_inputs(self, model: object, trusted: object) -> None:
        check_calibration_inputs(
            model, trusted, who="IBD-PSC", why="amplifies the model's parameters", minimum=_MIN_TRUSTED
        )
        if not batchnorm_layers(model):
            raise ValueError(
                "IBD-PSC amplifies BatchNorm layers, and the model has no affine BatchNorm layer"
            )

    def _check_calibrated(self) -> None:
        if not hasattr(self, "threshold_"):
            raise ValueError("IBD-PSC is not calibrated: call fit(...) or calibrate(model, trusted) first")

    def _batches(self, images: np.ndarray, n_passes: int):
        """Yield every batch of ``images`` as a float (B, C, H, W) tensor on the device."""
        model, dev = self.model_, self._device
        flops = estimate_flops(model, model.input_shape) * min(self.batch_size, max(len(images), 1))
        with compute_threads(flops * n_passes, dev):
            for start in range(0, len(images), self.batch_size):
                yield to_input(images[start : start + self.batch_size], dev)

    @torch.no_grad()
    def _amplified_predictions(self, images: np.ndarray, params: dict[str, torch.Tensor]) -> np.ndarray:
        """Predicted classes of the model with ``params`` substituted, shape (N,) int64."""
        preds = [
            functional_call(self.model_, params, (x,)).argmax(dim=1).cpu() for x in self._batches(images, 1)
        ]
        return torch.cat(preds).numpy() if preds else np.zeros(0, np.int64)

    @torch.no_grad()
    def _psc(self, images: np.ndarray) -> np.ndarray:
        """Mean probability of the original prediction over the amplified models, (N,) float64."""
        out = []
        for x in self._batches(images, 1 + len(self._params)):
            pred = self.model_(x).argmax(dim=1, keepdim=True)
            total = torch.zeros(len(x), device=x.device)
            for params in self._params:
                probs = torch.softmax(functional_call(self.model_, params, (x,)).float(), dim=1)
                total += probs.gather(1, pred)[:, 0]
            out.append((total / len(self._params)).cpu())  # one device -> host copy per batch
        return torch.cat(out).double().numpy() if out else np.zeros(0)

    def _details(self, dataset: Dataset, psc: np.ndarray) -> dict:
        per_class = per_class_summary(dataset, self.flagged_, psc, "psc")
        clean = self.clean_psc_
        return {
            "threshold": float(self.threshold_),
            "threshold_method": self.threshold_method,
            "frr_target": float(self.frr) if self.threshold_method == "quantile" else None,
            "scale": float(self.scale),
            "batchnorm_layers": len(self.bn_layers_),
            "start_layers": int(self.start_layers_),
            "error_rates": [float(e) for e in self.error_rates_],
            "error_target_reached": bool(self.error_target_reached_),
            "amplifications": [{"layers": int(k), "factor": float(f)} for k, f in self.amplifications_],
            "calibration_samples": int(clean.size),
            "clean_psc_mean": float(clean.mean()),
            "clean_psc_std": float(clean.std()),
            "psc_mean": float(psc.mean()),
            "n_flagged": int(self.flagged_.sum()),
            "per_class": per_class,
        }
