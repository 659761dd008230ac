"""Retraining a converged softmax head once per bag of extra samples, by damped Newton steps.

RONI asks, for every bag of candidate samples, how the trusted-set loss of a head trained on a
base set changes once the bag is added. The base problem is solved once (:func:`fit_base`);
every bag's head then starts from it and takes a few Newton steps that reuse the base Hessian,
factored once (:func:`newton_refit`). All bags are solved as one batched problem, so the base
features meet every head's weights in one GEMM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from poisonlab.defenses.helpers.linear_head import CHUNK_ELEMENTS, HeadFit, fit_heads
from poisonlab.threads import compute_threads

__all__ = ["fit_base", "newton_refit"]

# Step halvings tried by the line search of newton_refit before a head counts as converged.
_HALVINGS = 8


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
    step = max(1, CHUNK_ELEMENTS // max(1, n * k))
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
    p = (x.shape[1] + 1) * k
    # the larger of the one Hessian (n P^2) and one step of every head (n D K G) sets the threads
    with compute_threads(2.0 * x.shape[0] * max(p * p, x.shape[1] * k * g), x.device):
        return _newton(base, x, y, extra, l2=l2, max_steps=max_steps, tol=tol)


def _newton(
    base: HeadFit,
    x: torch.Tensor,
    y: torch.Tensor,
    extra: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    l2: float,
    max_steps: int,
    tol: float,
) -> HeadFit:
    """The body of :func:`newton_refit` (under its thread choice)."""
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


def fit_base(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, *, l2: float, max_iter: int = 500
) -> HeadFit:
    """One head fitted by L-BFGS, then polished by Newton steps (retrained heads are compared to
    it, so its own optimisation gap must not show up as an impact)."""
    head = fit_heads(x, y, num_classes, l2=l2, max_iter=max_iter)
    empty = (x.new_zeros(1, 1, x.shape[1]), y.new_zeros(1, 1), x.new_zeros(1, 1))
    return newton_refit(head, x, y, empty, l2=l2, max_steps=4)
