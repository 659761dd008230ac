"""Cheap retraining of a linear softmax head on frozen penultimate features (RONI, provenance).

Both defenses ask many times "how would the classifier do on the trusted set, trained on this
subset?". Retraining only the last layer is a convex problem (L2-regularised multinomial logistic
regression on standardised features). Many heads are fitted as one batched problem (a sum of
independent objectives), so the shared features meet all heads' weights in one GEMM.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.base import representations
from poisonlab.inference import ForwardResult
from poisonlab.models.base import PoisonlabModel

# Upper bound on the (samples x heads x classes) logits held at once (~100 MB with autograd).
_CHUNK_ELEMENTS = 4_000_000
#: How a head's trusted-set losses are summarised: class-balanced mean, or the most-hurt class.
METRICS = ("mean_loss", "max_class_loss")
# Step halvings tried by the line search of newton_refit before a head counts as converged.
_HALVINGS = 8


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


def standardize(reference: np.ndarray, *arrays: np.ndarray, device: torch.device) -> list[torch.Tensor]:
    """``arrays`` centred and scaled by the per-feature mean and std of ``reference`` (N, D).

    Returns float32 tensors on ``device``, in order; constant features keep scale 1.
    """
    ref = np.asarray(reference, dtype=np.float64)
    mean = ref.mean(axis=0)
    std = ref.std(axis=0)
    std[std < 1e-8] = 1.0
    return [
        torch.as_tensor((np.asarray(a, dtype=np.float64) - mean) / std, dtype=torch.float32, device=device)
        for a in arrays
    ]


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
    step = max(1, _CHUNK_ELEMENTS // max(1, x.shape[0] * num_classes))
    parts = []
    for lo in range(0, g, step):
        part = HeadFit(init.weight[lo : lo + step], init.bias[lo : lo + step])
        w = None if weights is None else weights[lo : lo + step]
        parts.append(_lbfgs(x, y, part, w, l2, max_iter))
    return HeadFit(torch.cat([p.weight for p in parts]), torch.cat([p.bias for p in parts]))


def _augment(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, x.new_ones(*x.shape[:-1], 1)], dim=-1)


def _stack(fit: HeadFit) -> torch.Tensor:
    """Weights and biases as one (G, D + 1, K) tensor (bias = last row)."""
    return torch.cat([fit.weight, fit.bias[:, None, :]], dim=1)


@torch.no_grad()
def _hessian(fit: HeadFit, x: torch.Tensor, l2: float) -> torch.Tensor:
    """Hessian (P, P), float64, of one head's objective at ``fit``; P = (D + 1) K, bias last row.

    Adding a constant to every logit leaves the loss unchanged, so a tiny ridge keeps the matrix
    positive definite without moving the optimum. Built in float32: it only preconditions.
    """
    xa = _augment(x)
    n, da = xa.shape
    p = fit.logits(x)[:, 0].softmax(-1)  # (n, K)
    k = p.shape[1]
    diag = torch.einsum("nk,nd,ne->kde", p, xa, xa) / n  # the delta_kl p_k term, per class k
    m = (xa[:, :, None] * p[:, None, :]).reshape(n, da * k)
    h = -(m.T @ m) / n
    h.view(da, k, da, k)[:, torch.arange(k), :, torch.arange(k)] += diag
    h = h.double()
    ridge = torch.full((da, k), l2, dtype=h.dtype, device=x.device)
    ridge[-1] = 0.0
    h.diagonal().add_(ridge.flatten() + 1e-6)
    return h


def _loss_grad(
    theta: torch.Tensor,
    xa: torch.Tensor,
    class_sums: torch.Tensor,
    bags: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    l2: float,
    with_grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Objective (G,) and gradient (G, D+1, K) of G heads ``theta``, each on the base plus its bag.

    ``class_sums`` (K, D+1) holds the sum of the base's augmented features per class: the base's
    true-class logits sum to ``<class_sums, theta>``, so only the log-partition needs the full
    (n, G, K) logits, computed as one GEMM and exponentiated in place.
    """
    exa, eonehot, ew = bags
    g, da, k = theta.shape
    n = xa.shape[0]
    step = max(1, _CHUNK_ELEMENTS // max(1, n * k))
    losses, grads = [], []
    for lo in range(0, g, step):
        th = theta[lo : lo + step]
        z = (xa @ th.permute(1, 0, 2).reshape(da, -1)).view(n, -1, k)
        top = z.amax(-1, keepdim=True)
        total = z.sub_(top).exp_().sum(-1, keepdim=True)
        lse = (top + total.log()).squeeze(-1).sum(0)
        losses.append(lse - torch.einsum("kd,gdk->g", class_sums, th))
        if with_grad:
            soft = z.div_(total).view(n, -1)
            grads.append((xa.T @ soft).view(da, -1, k).permute(1, 0, 2) - class_sums.T)
    ez = torch.einsum("gsd,gdk->gsk", exa, theta).log_softmax(-1)
    count = n + ew.sum(1)
    w = theta[:, :-1]
    loss = (torch.cat(losses) - (ew[..., None] * ez * eonehot).sum((1, 2))) / count
    loss = loss + 0.5 * l2 * w.square().sum((1, 2))
    if not with_grad:
        return loss, None
    grad = torch.cat(grads) + torch.einsum("gsd,gsk->gdk", exa * ew[..., None], ez.exp() - eonehot)
    grad = grad / count[:, None, None]
    grad[:, :-1] += l2 * w
    return loss, grad


def _backtrack(
    theta: torch.Tensor,
    active: torch.Tensor,
    delta: torch.Tensor,
    loss: torch.Tensor,
    decrement: torch.Tensor,
    xa: torch.Tensor,
    class_sums: torch.Tensor,
    bags: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    l2: float,
) -> torch.Tensor:
    """Armijo backtracking for every active head at once; updates ``theta`` in place.

    Returns the mask of active heads that found a step (halving at most ``_HALVINGS`` times).
    """
    alpha = torch.ones_like(loss)
    todo = torch.ones_like(loss, dtype=torch.bool)
    for _ in range(_HALVINGS):
        if not todo.any():
            break
        idx = todo.nonzero().squeeze(1)
        trial = theta[active[idx]] - alpha[idx, None, None] * delta[idx]
        new, _ = _loss_grad(trial, xa, class_sums, tuple(b[idx] for b in bags), l2, with_grad=False)
        ok = new <= loss[idx] - 0.25 * alpha[idx] * decrement[idx]
        theta[active[idx[ok]]] = trial[ok]
        alpha[idx[~ok]] *= 0.5
        todo[idx[ok]] = False
    return ~todo


@torch.no_grad()
def newton_refit(
    base: HeadFit,
    x: torch.Tensor,
    y: torch.Tensor,
    extra: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    l2: float,
    max_steps: int = 8,
    tol: float = 1e-8,
) -> HeadFit:
    """Retrain the converged head ``base`` once per bag of extra samples, by damped Newton steps.

    Head g minimises the mean cross-entropy over ``x`` plus its bag (plus the L2 penalty). Its
    Hessian differs from the base problem's by O(s / n) for a bag of s samples, so the base Hessian
    (factored once) serves as every head's Newton matrix: ``theta <- theta - a H_base^-1 grad_g``.
    A per-head Armijo line search on ``a`` keeps steps safe when a sample is confidently
    misclassified (its loss is nearly linear in theta: the quadratic model overshoots). Cost: one
    Hessian and its Cholesky factor, O(n P^2 + P^3) with P = (D + 1) K, then O(n D K + P^2) per
    step and head; 3-6 steps typically converge.

    Parameters
    ----------
    base : HeadFit
        One head, fitted (converged) on ``x``, ``y``.
    x, y : torch.Tensor
        Base features (n, D) and labels (n,).
    extra : (torch.Tensor, torch.Tensor, torch.Tensor)
        Bags: features (G, s, D), labels (G, s), weights (G, s) in {0, 1} (0 pads a short bag).
    max_steps : int
        Newton steps at most; a head stops when its Newton decrement is below ``tol``.

    Returns
    -------
    HeadFit
        G retrained heads.
    """
    ex, ey, ew = extra
    g, k = ex.shape[0], base.bias.shape[1]
    chol = torch.linalg.cholesky(_hessian(base, x, l2))
    xa = _augment(x)
    class_sums = F.one_hot(y, k).to(x.dtype).T @ xa
    bags = (_augment(ex), F.one_hot(ey, k).to(x.dtype), ew)
    theta = _stack(base).expand(g, -1, -1).clone()  # (G, D+1, K)
    active = torch.arange(g, device=x.device)
    for _ in range(max_steps):
        if len(active) == 0:
            break
        sub = tuple(b[active] for b in bags)
        loss, grad = _loss_grad(theta[active], xa, class_sums, sub, l2)
        delta = torch.cholesky_solve(grad.reshape(len(active), -1).T.double(), chol).T
        delta = delta.to(theta.dtype).view_as(grad)
        decrement = (grad * delta).sum((1, 2))  # half of it estimates the gap to the optimum
        keep = decrement > tol
        active, loss, delta, decrement = active[keep], loss[keep], delta[keep], decrement[keep]
        sub = tuple(b[keep] for b in sub)
        moved = _backtrack(theta, active, delta, loss, decrement, xa, class_sums, sub, l2)
        active = active[moved]  # a failed search means float32 round-off: the head has converged
    return HeadFit(theta[:, :-1].contiguous(), theta[:, -1].contiguous())


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
    step = max(1, _CHUNK_ELEMENTS // max(1, x.shape[0] * num_classes))
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


def fit_base(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, *, l2: float, max_iter: int = 500
) -> HeadFit:
    """One head fitted by L-BFGS, then polished by Newton steps (retrained heads are compared to
    it, so its own optimisation gap must not show up as an impact)."""
    head = fit_heads(x, y, num_classes, l2=l2, max_iter=max_iter)
    empty = (x.new_zeros(1, 1, x.shape[1]), y.new_zeros(1, 1), x.new_zeros(1, 1))
    return newton_refit(head, x, y, empty, l2=l2, max_steps=4)


def loss_change(loss: np.ndarray, reference: np.ndarray, metric: str) -> np.ndarray:
    """Change of trusted-set loss of G heads against a reference head, one number per head.

    ``loss`` (G, K) and ``reference`` (K,) or (G, K) are per-class mean trusted losses (NaN for
    absent classes); ``metric`` "mean_loss" averages the per-class changes (class-balanced),
    "max_class_loss" takes the largest (the class hurt most, for targeted poison). Returns (G,);
    positive = worse than the reference.
    """
    delta = loss - reference
    return np.nanmean(delta, axis=1) if metric == "mean_loss" else np.nanmax(delta, axis=1)


def embed(
    dataset: Dataset,
    model: PoisonlabModel | None,
    forward: ForwardResult | None,
    trusted: Dataset,
    *,
    device: str,
    who: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features of ``dataset`` (N, D) and ``trusted`` (M, D), float32; needs ``model``."""
    if model is None:
        raise ValueError(f"{who} needs the model itself (not only a forward pass) to embed the trusted set")
    if model.num_classes != dataset.num_classes:
        raise ValueError(f"model has {model.num_classes} classes, dataset has {dataset.num_classes}")
    features = representations(dataset, model, forward, device=device).features
    trusted_features = representations(trusted, model, None, device=device).features
    return np.asarray(features, np.float32), np.asarray(trusted_features, np.float32)
