"""Numerical building blocks shared by the taggers, training and evaluation.

Each of these exists once, here, and the modules above import it:

* numpy/torch conversion: :func:`to_numpy`, :func:`from_numpy`, :func:`like_input`;
* seeded splits: :func:`split_indices` (numpy, sorted indices, for training and
  evaluation splits) and :func:`permutation_split` (torch, from a generator that the
  caller keeps drawing from), with :func:`holdout_size`;
* the preconditioned L-BFGS fit of (weighted, L2-penalised) logistic regression:
  :func:`fit_logistic`, with its pieces :func:`weighted_log_loss`, :func:`logits`,
  :func:`second_moment`, :func:`preconditioner`, :func:`logistic_warm_start`;
* shrunk covariances: :func:`ledoit_wolf_shrinkage`, :func:`shrunk_covariance`.

This module imports only :mod:`jetace.errors`, numpy and torch, so that every layer
may use it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from jetace.errors import InputError

__all__ = [
    "to_numpy",
    "from_numpy",
    "like_input",
    "split_indices",
    "holdout_size",
    "permutation_split",
    "weighted_log_loss",
    "logits",
    "second_moment",
    "preconditioner",
    "logistic_warm_start",
    "fit_logistic",
    "ledoit_wolf_shrinkage",
    "shrunk_covariance",
]


# ------------------------------------------------------------------ numpy <-> torch
def to_numpy(x: Any) -> np.ndarray:
    """A torch tensor (on any device, detached) or array-like as a numpy array."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def from_numpy(x: np.ndarray) -> torch.Tensor:
    """A CPU tensor sharing the memory of a numpy array (made C-contiguous; copied when
    read-only, which torch cannot share). Shape and dtype are kept."""
    x = np.ascontiguousarray(x)
    return torch.from_numpy(x if x.flags.writeable else x.copy())


def like_input(values: torch.Tensor, x: Any) -> torch.Tensor | np.ndarray:
    """``values`` as they are if ``x`` is a torch tensor, else as a numpy array: results
    follow the type of the input (numpy in, numpy out)."""
    if isinstance(x, torch.Tensor):
        return values
    return values.detach().cpu().numpy()


# ------------------------------------------------------------------ seeded splits
def split_indices(n: int, val_fraction: float, seed: int, min_val: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random (train, validation) index arrays of ``range(n)``, each sorted.

    The validation part holds ``round(val_fraction * n)`` indices (at least ``min_val``)
    drawn with ``np.random.default_rng(seed).permutation(n)``; it may be empty.
    Raises InputError unless ``0 <= val_fraction < 1``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"validation fraction must lie in [0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(int(min_val), int(round(val_fraction * n)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def holdout_size(n: int, fraction: float) -> int:
    """Number of jets ``max(1, round(fraction * n))`` held out for validation."""
    return max(1, int(round(fraction * n)))


def permutation_split(n: int, n_val: int, generator: torch.Generator,
                      device: torch.device | str | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) indices (long, on ``device``) of ``range(n)``: the last
    ``n - n_val`` and the first ``n_val`` entries of ``torch.randperm(n, generator)``, in
    permutation order. ``generator`` advances, so the caller's later draws (weights,
    batch order) continue its stream."""
    perm = torch.randperm(n, generator=generator).to(device)
    return perm[n_val:], perm[:n_val]


# ------------------------------------------------------------------ logistic regression
def weighted_log_loss(out: torch.Tensor, y: torch.Tensor,
                      sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean log-loss of logits ``out`` ((n,) binary logit of class 1, or (n, K)) against
    class indices ``y`` (n,); with ``sample_weight`` (n,), ``sum(w l) / sum(w)``."""
    F = torch.nn.functional
    if out.ndim == 1:
        loss = F.binary_cross_entropy_with_logits(out, y.to(out.dtype), reduction="none")
    else:
        loss = F.cross_entropy(out, y, reduction="none")
    if sample_weight is None:
        return loss.mean()
    w = sample_weight.to(loss.dtype)
    return (loss * w).sum() / w.sum()


def logits(Z: torch.Tensor, w: torch.Tensor, k: int) -> torch.Tensor:
    """Logits (n, K) of weights ``w`` (rows, F + 1; bias last) on features ``Z`` (n, F):
    for ``k == 2`` classes the single row gives class 1, class 0 has logit 0."""
    out = Z @ w[:, :-1].T + w[:, -1]
    return torch.cat([torch.zeros_like(out), out], dim=1) if k == 2 else out


def second_moment(Z: torch.Tensor, sample_weight: torch.Tensor | None = None,
                  max_rows: int = 20000) -> torch.Tensor:
    """The second-moment matrix Z^T Z / n (F, F) in float64 of Z (n, F) (for centred
    Z the feature covariance; weighted by ``sample_weight`` (n,)), estimated on every
    s-th row so that at most about ``max_rows`` rows enter: it only preconditions the
    optimiser and seeds the warm start, so a subsample (half the cost at 40k jets) is
    enough. Accumulated in blocks of Z's dtype."""
    step = max(1, -(-Z.shape[0] // max_rows))
    Z = Z[::step]
    w = None if sample_weight is None else sample_weight[::step].to(Z.dtype)
    gram = torch.zeros(Z.shape[1], Z.shape[1], dtype=torch.float64, device=Z.device)
    for i in range(0, Z.shape[0], 16384):
        z = Z[i:i + 16384]
        wz = z if w is None else z * w[i:i + 16384, None]
        gram += (wz.T @ z).to(torch.float64)
    total = Z.shape[0] if w is None else float(w.sum())
    return gram / max(total, 1e-300)


def preconditioner(gram: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cholesky factor L (F, F) of ``gram / 4 + lam I`` (gram / 4 approximates the
    Hessian of the log-loss, ``lam`` the L2 strength) and its inverse L^-1, both lower
    triangular in gram's dtype. In coordinates v with w = v L^-1 an L2-penalised
    logistic loss is nearly isotropic."""
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    L = torch.linalg.cholesky(gram / 4 + lam * eye)
    return L, torch.linalg.solve_triangular(L, eye, upper=False)


def logistic_warm_start(Z: torch.Tensor, y: torch.Tensor, L: torch.Tensor,
                        sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary warm start (1, F + 1) on Z (n, F), labels y (n,) in {0, 1}: the ridge
    least-squares direction (an LDA-like closed form, from the preconditioner's
    Cholesky factor ``L``, see :func:`preconditioner`), with its scale and the intercept
    fitted by a few Newton steps of the 2-parameter logistic loss (both weighted by
    ``sample_weight``)."""
    yf = y.to(torch.float64)
    w = torch.ones_like(yf) if sample_weight is None else sample_weight.to(yf)
    target = w * (yf - (w * yf).sum() / w.sum())
    b = (Z.T @ target.to(Z.dtype)).to(torch.float64) / w.sum()
    d = torch.cholesky_solve(b[:, None], L)[:, 0].to(Z.dtype)
    s = (Z @ d).to(torch.float64)
    ab = torch.zeros(2, dtype=torch.float64, device=Z.device)
    design = torch.stack([s, torch.ones_like(s)], dim=1)
    for _ in range(8):
        p = torch.sigmoid(design @ ab)
        grad = design.T @ (w * (p - yf))
        hess = (design * (w * p * (1 - p))[:, None]).T @ design
        hess = hess + 1e-9 * torch.eye(2, dtype=hess.dtype, device=hess.device)
        ab = ab - torch.linalg.solve(hess, grad)
    return torch.cat([ab[0].to(Z.dtype) * d, ab[1:].to(Z.dtype)])[None]


def fit_logistic(Z: torch.Tensor, y: torch.Tensor, k: int, C: float,
                 w0: torch.Tensor | None = None, gram: torch.Tensor | None = None,
                 sample_weight: torch.Tensor | None = None, max_iter: int = 500,
                 tol: float = 1e-4) -> tuple[torch.Tensor, int]:
    """Logistic regression of class indices ``y`` (n,) of ``k`` classes on features
    ``Z`` (n, F) by preconditioned L-BFGS; returns the weights (rows, F + 1), bias
    last (rows = 1 for two classes, else k; see :func:`logits`), and the iterations.

    Minimises mean log-loss + |w|^2 / (2 C n) (weighted: ``sum(s_i loss_i) / S +
    |w|^2 / (2 C S)``, S the sum of the weights s_i of ``sample_weight`` (n,), so that
    a weight of 2 is the same as the jet given twice, as in scikit-learn); the bias is
    not penalised.

    The search runs in preconditioned coordinates v, w = v L^-1 with
    L L^T = gram / 4 + lam (:func:`preconditioner`; ``gram`` (F, F) float64 defaults
    to :func:`second_moment` of Z; the Cholesky factor is computed once per call),
    which makes the problem nearly isotropic: collinear ACE products then converge in
    tens of iterations instead of thousands. Binary fits start from a closed-form
    least-squares direction (:func:`logistic_warm_start`) unless ``w0`` is given.
    The minimiser (and so the model) is the same as without preconditioning.
    ``max_iter`` and ``tol`` (gradient tolerance, in the preconditioned coordinates)
    are those of ``torch.optim.LBFGS``; it runs in Z's dtype on Z's device.
    """
    n, f = Z.shape
    rows = 1 if k == 2 else k
    sw = None if sample_weight is None else sample_weight.to(Z.dtype)
    lam = 1.0 / (C * (n if sw is None else float(sw.sum())))
    gram = second_moment(Z, sw) if gram is None else gram
    L, L_inv = preconditioner(gram, lam)
    if w0 is None and k == 2:
        w0 = logistic_warm_start(Z, y, L, sw)
    P, P_inv = L_inv.to(Z.dtype), L.to(Z.dtype)  # w = v @ L^-1, v = w @ L
    v = torch.zeros(rows, f + 1, dtype=Z.dtype, device=Z.device)
    if w0 is not None:
        v[:, :-1] = w0[:, :-1] @ P_inv
        v[:, -1] = w0[:, -1] / 2
    v.requires_grad_(True)
    opt = torch.optim.LBFGS([v], lr=1, max_iter=max_iter, tolerance_grad=tol,
                            tolerance_change=1e-12, history_size=20,
                            line_search_fn="strong_wolfe")

    def weights(v):
        return torch.cat([v[:, :-1] @ P, 2 * v[:, -1:]], dim=1)

    def closure():
        opt.zero_grad()
        w = weights(v)
        out = Z @ w[0, :-1] + w[0, -1] if k == 2 else logits(Z, w, k)
        loss = weighted_log_loss(out, y, sw) + 0.5 * lam * (w[:, :-1] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    n_iter = int(opt.state[opt._params[0]].get("n_iter", 0))
    return weights(v).detach(), n_iter


# ------------------------------------------------------------------ shrunk covariance
def ledoit_wolf_shrinkage(Xc: torch.Tensor) -> float:
    """Ledoit-Wolf optimal shrinkage of the covariance of centred data Xc (n, F) to a
    multiple of the identity; returns a coefficient in [0, 1]."""
    n, f = Xc.shape
    X = Xc.to(torch.float64)
    X2 = X * X
    trace = X2.sum(0) / n
    mu = trace.sum() / f
    beta_ = (X2.T @ X2).sum()
    delta_ = ((X.T @ X) ** 2).sum() / n**2
    beta = (beta_ / n - delta_) / (f * n)
    delta = (delta_ - 2 * mu * trace.sum() + f * mu**2) / f
    beta = torch.minimum(beta, delta)
    return 0.0 if float(delta) == 0 else float(beta / delta)


def shrunk_covariance(Xc: torch.Tensor, shrinkage: float, n: float | None = None,
                      ridge: float = 0.0) -> torch.Tensor:
    """``(1 - a) C + (a + ridge) mu I`` (F, F) in Xc's dtype: the covariance
    ``C = Xc^T Xc / n`` of centred data Xc (n, F) (``n`` defaults to its rows; a
    weighted sample passes its effective count, with rows scaled by sqrt(weight))
    shrunk by ``a = shrinkage`` in [0, 1] towards ``mu = tr C / F`` (1 where that is 0)
    times the identity. A small relative ``ridge`` keeps an unshrunk covariance of
    collinear or constant features solvable."""
    f = Xc.shape[1]
    cov = Xc.T @ Xc / (Xc.shape[0] if n is None else n)
    mu = torch.trace(cov) / f
    eye = torch.eye(f, dtype=cov.dtype, device=cov.device)
    return (1 - shrinkage) * cov + (shrinkage + ridge) * (mu if mu > 0 else 1.0) * eye
