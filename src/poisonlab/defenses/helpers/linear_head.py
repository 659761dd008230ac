"""Linear softmax heads on frozen penultimate features: the one way poisonlab fits them.

Several defenses ask "what would the classifier do if it were trained on this subset?". Retraining
only the last layer is a convex problem: L2-regularised multinomial logistic regression on
standardised features. :func:`fit_heads` solves many such problems as one batched problem (a sum
of independent objectives, so the shared features meet all heads' weights in one GEMM) by
full-batch L-BFGS; RONI, the provenance defense and exclusionary reclassification all use it, and
:func:`fit_linear_head` wraps it for one head on NumPy features, with scikit-learn's ``C``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from poisonlab.defenses.base import ScanContext
from poisonlab.device import resolve_device
from poisonlab.threads import compute_threads

__all__ = [
    "METRICS",
    "HeadFit",
    "LinearHead",
    "class_metrics",
    "fit_heads",
    "fit_linear_head",
    "loss_change",
    "standardize",
    "trusted_problem",
]

# Upper bound on the (samples x heads x classes) logits held at once (~100 MB with autograd).
CHUNK_ELEMENTS = 4_000_000
#: How a head's trusted-set losses are summarised: class-balanced mean, or the most-hurt class.
METRICS = ("mean_loss", "max_class_loss")


@dataclass(frozen=True)
class HeadFit:
    """Weights of G linear heads: ``weight`` (G, D, K) and ``bias`` (G, K), detached."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __len__(self) -> int:
        return int(self.weight.shape[0])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every head on shared features ``x`` (n, D): shape (n, G, K)."""
        g, d, k = self.weight.shape
        z = x @ self.weight.permute(1, 0, 2).reshape(d, g * k)
        return z.view(x.shape[0], g, k) + self.bias


def _center_scale(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (float64) of ``reference`` (N, D); constant features get std 1."""
    ref = np.asarray(reference, dtype=np.float64)
    std = ref.std(axis=0)
    std[std < 1e-8] = 1.0
    return ref.mean(axis=0), std


def standardize(reference: np.ndarray, *arrays: np.ndarray, device: torch.device) -> list[torch.Tensor]:
    """``arrays`` centred and scaled by the per-feature mean and std of ``reference`` (N, D).

    Returns float32 tensors on ``device``, in order; constant features keep scale 1.
    """
    mean, std = _center_scale(reference)
    return [
        torch.as_tensor((np.asarray(a, dtype=np.float64) - mean) / std, dtype=torch.float32, device=device)
        for a in arrays
    ]


def trusted_problem(
    context: ScanContext, *, who: str, device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features and labels of the scanned and the trusted set, ready for heads on ``device``.

    Returns ``x`` (N, D), ``y`` (N,), ``x_trusted`` (M, D), ``y_trusted`` (M,); both feature
    matrices are standardised with the scanned set's mean and std. The trusted set is embedded
    once per :class:`~poisonlab.defenses.context.ScanContext`; ``who`` names the defense in the
    error raised without a model.
    """
    trusted_features = context.trusted_features(who)
    features = np.asarray(context.features(), np.float32)
    dev = resolve_device(device)
    x, xv = standardize(features, features, trusted_features, device=dev)
    assert context.trusted is not None  # trusted_features raised otherwise
    y = torch.as_tensor(context.dataset.y, device=dev)
    return x, y, xv, torch.as_tensor(context.trusted.y, device=dev)


def _objective(fit: HeadFit, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None, l2: float):
    """Sum over heads of (weighted mean cross-entropy + l2/2 * ||W||^2), differentiable."""
    n, (g, _, k) = x.shape[0], fit.weight.shape
    ce = F.cross_entropy(fit.logits(x).reshape(n * g, k), y.repeat_interleave(g), reduction="none")
    ce = ce.view(n, g)
    mean = ce.mean(0) if weights is None else (weights.T * ce).sum(0) / weights.sum(1).clamp_min(1e-12)
    return mean.sum() + 0.5 * l2 * fit.weight.square().sum()


def _lbfgs(
    x: torch.Tensor, y: torch.Tensor, init: HeadFit, weights: torch.Tensor | None, l2: float, max_iter: int
) -> HeadFit:
    weight = init.weight.clone().requires_grad_(True)
    bias = init.bias.clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [weight, bias], max_iter=max_iter, history_size=20, tolerance_grad=1e-6, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _objective(HeadFit(weight, bias), x, y, weights, l2)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return HeadFit(weight.detach(), bias.detach())


def fit_heads(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    *,
    weights: torch.Tensor | None = None,
    init: HeadFit | None = None,
    l2: float,
    max_iter: int = 300,
) -> HeadFit:
    """Fit L2-regularised softmax heads by full-batch L-BFGS, each head on its own sample weights.

    Parameters
    ----------
    x, y : torch.Tensor
        Standardised features (n, D) shared by every head, labels (n,) in [0, num_classes).
    weights : torch.Tensor, shape (G, n), optional
        Per-head sample weights >= 0 (0 leaves a sample out); default one head, all ones.
    init : HeadFit, optional
        Warm start, one head (broadcast to G) or G heads; default zeros.
    l2, max_iter : float, int
        L2 strength on the weights (not the biases); L-BFGS iterations per chunk of heads.

    Returns
    -------
    HeadFit
        G heads, each minimising its weighted mean cross-entropy plus ``l2 / 2 * ||W||^2``.
    """
    g, d = (1 if weights is None else weights.shape[0]), x.shape[1]
    if init is None:
        init = HeadFit(x.new_zeros(1, d, num_classes), x.new_zeros(1, num_classes))
    init = HeadFit(init.weight.expand(g, d, num_classes), init.bias.expand(g, num_classes))
    step = max(1, CHUNK_ELEMENTS // max(1, x.shape[0] * num_classes))
    parts = []
    # one L-BFGS evaluation: the logits GEMM of every head in the chunk, forward and backward
    flops = 6.0 * x.shape[0] * d * num_classes * min(step, g)
    with compute_threads(flops, x.device):  # torch's one-thread-per-core default stalls on a busy machine
        for lo in range(0, g, step):
            part = HeadFit(init.weight[lo : lo + step], init.bias[lo : lo + step])
            w = None if weights is None else weights[lo : lo + step]
            parts.append(_lbfgs(x, y, part, w, l2, max_iter))
    return HeadFit(torch.cat([p.weight for p in parts]), torch.cat([p.bias for p in parts]))


@dataclass(frozen=True)
class LinearHead:
    """One softmax head over raw features: ``logits = features @ weight.T + bias``.

    ``weight`` (K, D) and ``bias`` (K,) are float64; a class absent from the training labels
    has weight 0 and bias -inf, so it is never predicted.
    """

    weight: np.ndarray
    bias: np.ndarray

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Logits (n, K) of ``features`` (n, D)."""
        return np.asarray(features, np.float64) @ self.weight.T + self.bias

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Most probable class (n,) int64 of ``features`` (n, D)."""
        return self.logits(features).argmax(axis=1)


def fit_linear_head(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    C: float = 1.0,
    max_iter: int = 300,
    scale: bool = True,
) -> LinearHead:
    """Fit one L2-regularised softmax head of ``labels`` on ``features`` (multinomial logistic regression).

    Parameters
    ----------
    features : np.ndarray, shape (n, D)
        Frozen features, e.g. a model's penultimate activations.
    labels : np.ndarray, shape (n,)
        Integer labels in [0, num_classes); at least two distinct classes.
    num_classes : int
        Rows of the returned head; only the classes present in ``labels`` are fitted, as
        scikit-learn's ``LogisticRegression`` does.
    C : float
        Inverse L2 strength with scikit-learn's convention: the objective is
        ``0.5 * ||W||^2 + C * sum of cross-entropies`` (biases unpenalised), i.e.
        :func:`fit_heads` with ``l2 = 1 / (C n)``.
    max_iter : int
        L-BFGS iterations (float64, on the CPU).
    scale : bool
        Centre and scale every feature first (constant ones keep scale 1); the scaling is folded
        back into the weights, so the head always reads raw ``features``.

    Returns
    -------
    LinearHead
    """
    x = np.asarray(features, dtype=np.float64)
    present, y = np.unique(np.asarray(labels), return_inverse=True)
    if present.size < 2:
        raise ValueError(f"a linear head needs labels of at least two classes, got {present.tolist()}")
    mean, std = _center_scale(x) if scale else (np.zeros(x.shape[1]), np.ones(x.shape[1]))
    xt = torch.as_tensor((x - mean) / std, dtype=torch.float64)
    fit = fit_heads(xt, torch.as_tensor(y), present.size, l2=1.0 / (C * len(y)), max_iter=max_iter)
    w = fit.weight[0].numpy() / std[:, None]  # (D, K'): the standardisation folded back
    weight = np.zeros((num_classes, x.shape[1]))
    bias = np.full(num_classes, -np.inf)
    weight[present] = w.T
    bias[present] = fit.bias[0].numpy() - mean @ w
    return LinearHead(weight=weight, bias=bias)


@torch.no_grad()
def class_metrics(
    fit: HeadFit, x: torch.Tensor, y: torch.Tensor, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class mean cross-entropy and accuracy of every head on labelled features.

    ``x`` (n, D) standardised features and ``y`` (n,) labels, e.g. the trusted set. Returns
    ``loss`` and ``accuracy``, both float64 (G, K), NaN for classes absent from ``y``.
    """
    onehot = F.one_hot(y, num_classes).to(x.dtype)  # (n, K)
    counts = onehot.sum(0)
    losses, hits = [], []
    step = max(1, CHUNK_ELEMENTS // max(1, x.shape[0] * num_classes))
    for lo in range(0, len(fit), step):
        part = HeadFit(fit.weight[lo : lo + step], fit.bias[lo : lo + step])
        z = part.logits(x)  # (n, g, K)
        ce = -z.log_softmax(-1).gather(-1, y.view(-1, 1, 1).expand(-1, z.shape[1], 1)).squeeze(-1)
        losses.append(ce.T @ onehot)
        hits.append((z.argmax(-1) == y[:, None]).to(x.dtype).T @ onehot)
    present = (counts > 0).cpu().numpy()
    denom = counts.clamp_min(1).double().cpu().numpy()
    loss = torch.cat(losses).double().cpu().numpy() / denom
    acc = torch.cat(hits).double().cpu().numpy() / denom
    loss[:, ~present] = np.nan
    acc[:, ~present] = np.nan
    return loss, acc


def loss_change(loss: np.ndarray, reference: np.ndarray, metric: str) -> np.ndarray:
    """Change of trusted-set loss of G heads against a reference head, one number per head.

    ``loss`` (G, K) and ``reference`` (K,) or (G, K) are per-class mean trusted losses (NaN for
    absent classes); ``metric`` "mean_loss" averages the per-class changes (class-balanced),
    "max_class_loss" takes the largest (the class hurt most, for targeted poison). Returns (G,);
    positive = worse than the reference.
    """
    delta = loss - reference
    return np.nanmean(delta, axis=1) if metric == "mean_loss" else np.nanmax(delta, axis=1)
