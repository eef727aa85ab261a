"""Anomaly detection trained on background jets only.

Each detector learns what ordinary (background, e.g. QCD) jets look like in feature
space and scores new jets by how far they fall from that; no signal jets are needed.

* :class:`GaussianAnomaly` (kind ``"gaussian"``): one Gaussian density with shrunk
  covariance, in a standardised and optionally PCA-reduced space; the score is the
  Mahalanobis distance.
* :class:`GMMAnomaly` (kind ``"gmm"``): a Gaussian mixture density in whitened PCA
  space; the score is the negative log likelihood per jet.
* :class:`AutoencoderAnomaly` (kind ``"autoencoder"``): a small torch autoencoder on
  the standardised features; the score is the mean squared reconstruction error.
* :class:`EnsembleAnomaly` (kind ``"ensemble"``): several of the above (by default
  three autoencoders with different seeds and an 8-component GMM), each score turned
  into the background tail probability ``-log(1 - F(s))`` with F the score distribution
  of the training jets, averaged. Reconstruction error and density make different
  mistakes, and the seed average removes most of the autoencoder's seed-to-seed scatter
  (see :class:`EnsembleAnomaly` for the measured figures).

All are scikit-learn outlier detectors (``OutlierMixin``) and follow the
:class:`jetace.taggers.base.Tagger` protocol: ``fit(X)`` on background features returns
``self``. Signs as in scikit-learn's IsolationForest and OneClassSVM:
``score_samples(X)`` is larger for more normal (background-like) jets,
``decision_function(X) = score_samples(X) - offset_`` is negative for outliers, and
``predict(X)`` is -1 for outliers and +1 for inliers (``offset_``: the
``contamination`` quantile of the training jets). The anomaly score that evaluation,
model files and ONNX exports use is ``signal_score(X) = -score_samples(X)``, larger for
more anomalous (signal-like) jets. The density and reconstruction fits take no
``sample_weight`` yet (``jetace train --unsupervised`` refuses a weight branch).
``X`` is a numpy array or torch tensor of shape
(n_jets, n_features); results are numpy arrays for numpy input and torch tensors on
``X``'s device for torch input. Everything is deterministic given ``seed``.

The shared preprocessing (:class:`FeatureTransform`: scaling, PCA, whitening),
:func:`kmeans`, Gaussian-mixture fitting (:func:`fit_gaussian_mixture`) and the base
class of the module-scored taggers (:class:`ModuleTagger`) are public so that the
clustering tagger reuses them. Every fitted detector has ``as_module()``: a
``torch.nn.Module`` from raw features (B, F) to the anomaly score (B,).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import OutlierMixin

from jetace.errors import InputError
from jetace.numerics import (
    holdout_size,
    ledoit_wolf_shrinkage,
    like_input,
    permutation_split,
    shrunk_covariance,
    to_numpy,
)
from jetace.taggers.base import Tagger, register, renamed_params
from jetace.taggers.preprocess import (
    FeatureScaler,
    as_features,
    check_fit_input,
    check_predict_input,
)

__all__ = [
    "FeatureTransform",
    "kmeans",
    "fit_gaussian_mixture",
    "mixture_log_prob",
    "ModuleTagger",
    "GaussianAnomaly",
    "GMMAnomaly",
    "AutoencoderAnomaly",
    "EnsembleAnomaly",
]


# ------------------------------------------------------------------------ plumbing
def _features64(X: Any, name: str = "X") -> torch.Tensor:
    """Checked feature matrix (see :func:`as_features`) as float64 on its device."""
    return as_features(X, name).to(torch.float64)


def _cpu(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().cpu()


class FeatureTransform(torch.nn.Module):
    """Raw features (B, F) -> standardised, optionally PCA-reduced features (B, k).

    The first step is :class:`~jetace.taggers.preprocess.FeatureScaler` (transform
    ``"standard"``, or ``"signed_log"``: ``asinh(x / s)`` with ``s`` the median |x|, which
    tames the heavy tails of high body-order products). With ``n_components`` set, the
    result is projected on that many leading principal components of the training
    sample (a float in (0, 1): as many as explain that fraction of the variance);
    ``whiten=True`` divides each component by its standard deviation.

    Build it with :meth:`fit`. Buffers are float64; forward accepts any float input.
    """

    def __init__(self, scaler: FeatureScaler, components: torch.Tensor | None = None,
                 scale: torch.Tensor | None = None):
        super().__init__()
        self.scaler = scaler
        self.register_buffer("components", components)
        self.register_buffer("scale", scale)

    @property
    def num_features(self) -> int:
        return int(self.scaler.mean.shape[0])

    @property
    def num_outputs(self) -> int:
        return self.num_features if self.components is None else int(self.components.shape[1])

    @classmethod
    def fit(cls, X: torch.Tensor, transform: str = "standard",
            n_components: int | float | None = None, whiten: bool = False) -> FeatureTransform:
        """Fit on training features X (n, F); raises InputError if all are constant."""
        x = X.to(torch.float64)
        scaler = FeatureScaler(x.shape[1], transform, dtype=torch.float64).to(x.device).fit(x)
        z = scaler(x)
        if not bool((z.std(dim=0, correction=0) > 1e-3).any()):
            raise InputError(f"all {x.shape[1]} features are constant over the {x.shape[0]} "
                             "training jets: there is nothing to learn from")
        if n_components is None:
            return cls(scaler)
        evals, evecs = torch.linalg.eigh(z.T @ z / z.shape[0])
        evals, evecs = evals.flip(0).clamp(min=0), evecs.flip(1)
        k = _n_components(n_components, evals)
        # sign convention (largest coefficient positive) for reproducible components
        top = evecs[evecs.abs().argmax(dim=0), torch.arange(evecs.shape[1], device=x.device)]
        evecs = evecs * torch.where(top < 0, -1.0, 1.0).to(evecs)
        scale = evals[:k].sqrt() if whiten else None
        return cls(scaler, evecs[:, :k].contiguous(), scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.scaler(x)
        if self.components is not None:
            z = z @ self.components
        if self.scale is not None:
            z = z / self.scale
        return z

    def get_state(self) -> dict[str, Any]:
        return {"scaler": self.scaler.get_state(), "components": _cpu(self.components),
                "scale": _cpu(self.scale)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FeatureTransform:
        opt = {k: None if state.get(k) is None else torch.as_tensor(state[k]).double()
               for k in ("components", "scale")}
        return cls(FeatureScaler.from_state(state["scaler"]), **opt)


def _n_components(n: int | float, evals: torch.Tensor) -> int:
    """Number of principal components to keep (at most the numerical rank)."""
    rank = max(int((evals > 1e-10 * evals[0]).sum()), 1)
    if isinstance(n, float) and 0 < n < 1:
        frac = torch.cumsum(evals, 0) / evals.sum()
        return min(int((frac < n).sum()) + 1, rank)
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise InputError(f"n_components must be a positive integer or a float in (0, 1), "
                         f"got {n!r}")
    return min(int(n), rank)


class ModuleTagger(Tagger):
    """Shared plumbing of the anomaly and clustering taggers: a fitted ``module_`` maps
    raw features (B, F) to the signal-like score (B,) (:meth:`signal_score`). Subclasses
    implement ``_check_params()`` and ``_fit(x)`` (x: checked float64 features (n, F) on
    their device; sets ``module_``)."""

    module_: torch.nn.Module
    min_jets: ClassVar[int] = 2

    def _check_params(self) -> None:
        pass

    def _fit(self, x: torch.Tensor) -> None:
        raise NotImplementedError

    def _fit_checked(self, X: Any) -> torch.Tensor:
        """Check parameters and X, then ``_fit``; returns the float64 features."""
        self._check_params()
        x = check_fit_input(self, X)[0].to(torch.float64)
        if x.shape[0] < self.min_jets:
            raise InputError(f"{type(self).__name__} needs at least {self.min_jets} jets, got "
                             f"n_samples = {x.shape[0]}")
        self._fit(x)
        return x

    def as_module(self) -> torch.nn.Module:
        """The fitted scorer as a module: raw features (B, F) -> :meth:`signal_score` (B,)."""
        self._check_fitted()
        return self.module_

    def _features(self, X: Any) -> torch.Tensor:
        """Checked float64 features of a fitted tagger (as many columns as in fit)."""
        self._check_fitted()
        x = check_predict_input(self, X).to(torch.float64)
        tr = getattr(self.module_, "transform", None)
        n_in = tr.num_features if tr is not None else self.module_.num_features
        if x.shape[1] != n_in:
            raise InputError(f"X has {x.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {n_in} features as input")
        return x

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        mod = self.module_.to(x.device).eval()
        with torch.no_grad():
            out = torch.cat([mod(x[i:i + 16384]) for i in range(0, x.shape[0], 16384)])
        return out.to(x.dtype)  # float64 (the autoencoder's float32 error included)

    def signal_score(self, X: Any):
        """The module's score per jet, shape (n,): larger = more signal-like (for an
        anomaly detector: more anomalous, less like the training sample)."""
        return like_input(self._score(self._features(X)), X)


class _ScoreTagger(OutlierMixin, ModuleTagger):
    """An anomaly detector, with scikit-learn's outlier convention.

    ``score_samples(X)``: larger = more normal (more like the training jets), the
    negated anomaly score; ``decision_function(X) = score_samples(X) - offset_``, with
    ``offset_`` the ``contamination`` quantile of the training jets' ``score_samples``,
    so that ``predict(X)`` (+1 inlier, -1 outlier: ``decision_function >= 0``) flags
    that fraction of the training jets; :meth:`signal_score` (what evaluation and model
    files use) is the anomaly score ``-score_samples(X)``.
    """

    def _check_params(self) -> None:
        c = getattr(self, "contamination", 0.1)
        if isinstance(c, bool) or not isinstance(c, int | float) or not 0.0 < c <= 0.5:
            raise InputError(f"contamination must lie in (0, 0.5], got {c!r}")

    def fit(self, X: Any, y: Any = None) -> _ScoreTagger:
        """Fit on background features X (n, F); ``y`` is ignored. Returns self."""
        x = self._fit_checked(X)
        self.offset_ = float(torch.quantile(-self._score(x), float(self.contamination)))
        return self

    def score_samples(self, X: Any):
        """Normality score per jet, shape (n,): larger = more background-like;
        ``-signal_score(X)``."""
        return -self.signal_score(X)

    def decision_function(self, X: Any):
        """``score_samples(X) - offset_``, shape (n,): negative for outliers."""
        self._check_fitted()
        offset = getattr(self, "offset_", None)
        if offset is None:
            raise InputError(f"this {type(self).__name__} was saved before jetace stored its "
                             "outlier offset: refit it, or use signal_score / score_samples")
        return self.score_samples(X) - offset

    def predict(self, X: Any) -> np.ndarray:
        """+1 for inliers (background-like), -1 for outliers, numpy int array (n,)."""
        d = to_numpy(self.decision_function(X))
        return np.where(d >= 0, 1, -1)

    def _restore_offset(self, state: dict[str, Any]) -> None:
        """``offset_`` from a model file (None for files saved before it was stored)."""
        off = state.get("offset")
        self.offset_ = None if off is None else float(off)


# ------------------------------------------------------------------ Gaussian densities
def _kmeans_pp(z: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: (k, d) initial centres drawn from the rows of ``z`` (n, d)."""
    n = z.shape[0]
    idx = [int(torch.randint(n, (1,), generator=gen))]
    d2 = ((z - z[idx[0]]) ** 2).sum(dim=1)
    for _ in range(1, k):
        total = float(d2.sum())
        p = (d2 / total).cpu() if total > 0 else torch.full((n,), 1.0 / n, dtype=d2.dtype)
        idx.append(int(torch.multinomial(p, 1, generator=gen)))
        d2 = torch.minimum(d2, ((z - z[idx[-1]]) ** 2).sum(dim=1))
    return z[idx].clone()


def kmeans(z: torch.Tensor, k: int, seed: int = 0, n_init: int = 1, max_iter: int = 100,
           return_n_iter: bool = False) -> tuple:
    """Lloyd's k-means from k-means++ seeds, best of ``n_init`` seeded restarts.

    ``z``: (n, d). Returns (centres (k, d), labels (n,), inertia = mean squared distance
    of a jet to its centre), and with ``return_n_iter`` the Lloyd iterations of the
    best restart as a fourth entry.
    """
    if z.shape[0] < k:
        raise InputError(f"{k} clusters need at least {k} jets, got {z.shape[0]}")
    gen = torch.Generator().manual_seed(seed)
    best: tuple[torch.Tensor, torch.Tensor, float, int] | None = None
    for _ in range(n_init):
        centres = _kmeans_pp(z, k, gen)
        labels = None
        sq = (z * z).sum(dim=1, keepdim=True)
        n_iter = 0
        for n_iter in range(1, max_iter + 1):  # noqa: B007 (the count is the result)
            new = (sq - 2 * z @ centres.T + (centres * centres).sum(dim=1)).argmin(dim=1)
            if labels is not None and bool((new == labels).all()):
                break
            labels = new
            onehot = torch.nn.functional.one_hot(labels, k).to(z.dtype)
            counts = onehot.sum(dim=0)
            sums = onehot.T @ z
            centres = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None],
                                  centres)
        inertia = float(((z - centres[labels]) ** 2).sum(dim=1).mean())
        if best is None or inertia < best[2]:
            best = (centres, labels, inertia, n_iter)
    assert best is not None
    return best if return_n_iter else best[:3]


def mixture_log_prob(z: torch.Tensor, log_weights: torch.Tensor, means: torch.Tensor,
                     prec_chol: torch.Tensor) -> torch.Tensor:
    """Per-component ``log w_c + log N(z; mu_c, Sigma_c)``, shape (n, n_mix).

    ``z`` (n, d); ``log_weights`` (n_mix,); ``means`` (n_mix, d); ``prec_chol``
    (n_mix, d, d) with ``Sigma_c^-1 = P_c P_c^T`` (so ``(z - mu_c) P_c`` is white).
    Uses only matrix products, so it exports to ONNX.
    """
    d = z.shape[1]
    y = torch.einsum("nd,cde->cne", z, prec_chol) - torch.einsum("cd,cde->ce", means,
                                                                  prec_chol).unsqueeze(1)
    half_logdet = torch.log(torch.diagonal(prec_chol, dim1=1, dim2=2)).sum(dim=1)
    logp = half_logdet.unsqueeze(1) - 0.5 * ((y * y).sum(dim=2) + d * math.log(2 * math.pi))
    return (logp + log_weights.unsqueeze(1)).T


def _precision_cholesky(cov: torch.Tensor) -> torch.Tensor:
    """``P`` with ``cov^-1 = P P^T`` (upper triangular) for covariances (..., d, d)."""
    chol = torch.linalg.cholesky(cov)
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device).expand_as(cov)
    return torch.linalg.solve_triangular(chol, eye, upper=False).transpose(-1, -2)


def fit_gaussian_mixture(z: torch.Tensor, n_mix: int, seed: int = 0, n_init: int = 2,
                         max_iter: int = 200, tol: float = 1e-3, reg_covar: float = 1e-3
                         ) -> dict[str, Any]:
    """Fit a full-covariance Gaussian mixture to ``z`` (n, d) by EM from k-means seeds.

    ``reg_covar`` is added to every covariance diagonal (``z`` should be of unit scale,
    e.g. whitened PCA scores). Of ``n_init`` seeded restarts the one with the highest
    mean log likelihood wins. Returns ``log_weights`` (n_mix,), ``means`` (n_mix, d),
    ``prec_chol`` (n_mix, d, d) as in :func:`mixture_log_prob`, ``log_likelihood`` (mean
    per jet) and ``n_iter``.
    """
    n, d = z.shape
    eye = torch.eye(d, dtype=z.dtype, device=z.device)
    best: dict[str, Any] | None = None
    for init in range(n_init):
        _, labels, _ = kmeans(z, n_mix, seed=seed * 7919 + init)
        resp = torch.nn.functional.one_hot(labels, n_mix).to(z.dtype)
        prev = -math.inf
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            nk = resp.sum(dim=0) + 10 * torch.finfo(z.dtype).eps
            means = resp.T @ z / nk.unsqueeze(1)
            cov = []
            for c in range(n_mix):
                dz = (z - means[c]) * resp[:, c].sqrt().unsqueeze(1)
                cov.append(dz.T @ dz / nk[c] + reg_covar * eye)
            prec_chol = _precision_cholesky(torch.stack(cov))
            log_w = torch.log(nk / n)
            logp = mixture_log_prob(z, log_w, means, prec_chol)
            norm = torch.logsumexp(logp, dim=1)
            ll = float(norm.mean())
            resp = torch.exp(logp - norm.unsqueeze(1))
            if abs(ll - prev) < tol:
                break
            prev = ll
        if best is None or ll > best["log_likelihood"]:
            best = {"log_weights": log_w, "means": means, "prec_chol": prec_chol,
                    "log_likelihood": ll, "n_iter": n_iter}
    assert best is not None
    return best


class _GaussianScore(torch.nn.Module):
    """features (B, F) -> Mahalanobis distance (B,) from one Gaussian."""

    def __init__(self, transform: FeatureTransform, mean: torch.Tensor, prec_chol: torch.Tensor):
        super().__init__()
        self.transform = transform
        self.register_buffer("mean", mean)
        self.register_buffer("prec_chol", prec_chol)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (self.transform(x) - self.mean) @ self.prec_chol
        return torch.sqrt((y * y).sum(dim=1))


class _MixtureScore(torch.nn.Module):
    """features (B, F) -> negative log density (B,) under a Gaussian mixture."""

    def __init__(self, transform: FeatureTransform, log_weights: torch.Tensor,
                 means: torch.Tensor, prec_chol: torch.Tensor):
        super().__init__()
        self.transform = transform
        self.register_buffer("log_weights", log_weights)
        self.register_buffer("means", means)
        self.register_buffer("prec_chol", prec_chol)

    def component_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return mixture_log_prob(self.transform(x), self.log_weights, self.means, self.prec_chol)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.logsumexp(self.component_log_prob(x), dim=1)


def _buffers(module: torch.nn.Module, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {k: _cpu(getattr(module, k)) for k in names}


@register("gaussian")
class GaussianAnomaly(_ScoreTagger):
    """Mahalanobis distance from one Gaussian fitted to background features.

    Parameters
    ----------
    n_components : principal components kept (int, or float fraction of the variance),
        None = all standardised features.
    scaling : ``"standard"`` or ``"signed_log"`` (see :class:`FeatureTransform`).
    shrinkage : ``"ledoit-wolf"`` (default) or a float ``a`` in [0, 1]: the covariance is
        ``(1 - a) C + a (tr C / d) I``, so that tiny-variance directions, poorly measured
        on the training sample, do not dominate the distance.
    seed : unused (the fit is deterministic); accepted for a uniform interface.

    contamination : fraction of the training jets that ``predict`` calls outliers
        (sets ``offset_``; the scores do not depend on it).

    ``signal_score(X)``: Mahalanobis distance, shape (n,), dimensionless
    (``score_samples`` is its negative). Fitted attributes: ``module_`` (raw features ->
    distance), ``shrinkage_``, ``offset_``, ``n_features_in_``.
    """

    def __init__(self, n_components: int | float | None = 50, scaling: str = "standard",
                 shrinkage: str | float = "ledoit-wolf", seed: int = 0,
                 contamination: float = 0.1):
        self.n_components = n_components
        self.scaling = scaling
        self.shrinkage = shrinkage
        self.seed = seed
        self.contamination = contamination

    def _fit(self, x: torch.Tensor) -> None:
        tr = FeatureTransform.fit(x, self.scaling, self.n_components)
        z = tr(x)
        mean = z.mean(dim=0)
        zc = z - mean
        if self.shrinkage == "ledoit-wolf":
            a = ledoit_wolf_shrinkage(zc)
        elif isinstance(self.shrinkage, int | float) and 0 <= self.shrinkage <= 1:
            a = float(self.shrinkage)
        else:
            raise InputError(f"shrinkage must be 'ledoit-wolf' or a number in [0, 1], "
                             f"got {self.shrinkage!r}")
        cov = shrunk_covariance(zc, a)
        evals, evecs = torch.linalg.eigh(cov)
        evals = evals.clamp(min=1e-12 * float(evals.max()))
        self.module_ = _GaussianScore(tr, mean, evecs / evals.sqrt())
        self.shrinkage_ = a

    def get_state(self) -> dict[str, Any]:
        self._check_fitted()
        return {"params": self.get_params(), "transform": self.module_.transform.get_state(),
                **_buffers(self.module_, ("mean", "prec_chol")), "shrinkage_used": self.shrinkage_,
                "offset": self.offset_}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> GaussianAnomaly:
        self = cls(**renamed_params(state["params"]))
        self.module_ = _GaussianScore(FeatureTransform.from_state(state["transform"]),
                                      torch.as_tensor(state["mean"]).double(),
                                      torch.as_tensor(state["prec_chol"]).double())
        self.shrinkage_ = float(state["shrinkage_used"])
        self._restore_offset(state)
        return self


@register("gmm")
class GMMAnomaly(_ScoreTagger):
    """Negative log likelihood under a Gaussian mixture fitted to background features.

    The features are standardised (``scaling``), projected on ``n_components``
    principal components and whitened; a mixture of ``n_mix`` full-covariance
    Gaussians is fitted by EM (k-means++ seeds, ``n_init`` restarts, ``reg_covar`` added
    to the diagonals). Background jets come in several populations (quark- and
    gluon-like, different multiplicities) that one Gaussian cannot follow but a few can.

    ``signal_score(X)``: ``-log p(z)`` per jet, shape (n,), in nats (up to the
    constant Jacobian of the preprocessing); ``score_samples`` is ``log p(z)``.
    ``predict_proba(X)``: posterior of each mixture component, (n, n_mix).
    ``contamination``: as in :class:`GaussianAnomaly`.
    Fitted attributes: ``module_``, ``log_likelihood_`` (mean per training jet),
    ``n_iter_``, ``offset_``, ``n_features_in_``.
    """

    def __init__(self, n_mix: int = 4, n_components: int | float | None = 20,
                 scaling: str = "standard", reg_covar: float = 1e-3, n_init: int = 2,
                 max_iter: int = 200, tol: float = 1e-3, seed: int = 0,
                 contamination: float = 0.1):
        self.n_mix = n_mix
        self.n_components = n_components
        self.scaling = scaling
        self.reg_covar = reg_covar
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed
        self.contamination = contamination

    def _fit(self, x: torch.Tensor) -> None:
        tr = FeatureTransform.fit(x, self.scaling, self.n_components, whiten=True)
        gm = fit_gaussian_mixture(tr(x), self.n_mix, seed=self.seed, n_init=self.n_init,
                                  max_iter=self.max_iter, tol=self.tol, reg_covar=self.reg_covar)
        self.module_ = _MixtureScore(tr, gm["log_weights"], gm["means"], gm["prec_chol"])
        self.log_likelihood_, self.n_iter_ = float(gm["log_likelihood"]), int(gm["n_iter"])

    def predict_proba(self, X: Any):
        """Posterior probability of each mixture component, shape (n, n_mix)."""
        x = self._features(X)
        with torch.no_grad():
            p = torch.softmax(self.module_.to(x.device).component_log_prob(x), dim=1)
        return like_input(p, X)

    def get_state(self) -> dict[str, Any]:
        self._check_fitted()
        return {"params": self.get_params(), "transform": self.module_.transform.get_state(),
                **_buffers(self.module_, ("log_weights", "means", "prec_chol")),
                "log_likelihood": self.log_likelihood_, "n_iter": self.n_iter_,
                "offset": self.offset_}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> GMMAnomaly:
        self = cls(**renamed_params(state["params"]))
        self.module_ = _MixtureScore(FeatureTransform.from_state(state["transform"]),
                                     *(torch.as_tensor(state[k]).double()
                                       for k in ("log_weights", "means", "prec_chol")))
        self.log_likelihood_, self.n_iter_ = float(state["log_likelihood"]), int(state["n_iter"])
        self._restore_offset(state)
        return self


# ------------------------------------------------------------------------ autoencoder
_ACTIVATIONS = {"gelu": torch.nn.GELU, "relu": torch.nn.ReLU, "tanh": torch.nn.Tanh,
                "silu": torch.nn.SiLU}


class _ReconstructionScore(torch.nn.Module):
    """features (B, F) -> mean squared reconstruction error (B,) of an autoencoder."""

    def __init__(self, transform: FeatureTransform, hidden: tuple[int, ...], latent: int,
                 activation: str):
        super().__init__()
        self.transform = transform
        sizes = [transform.num_outputs, *hidden, latent, *reversed(hidden),
                 transform.num_outputs]
        layers: list[torch.nn.Module] = []
        for i in range(len(sizes) - 1):
            layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(_ACTIVATIONS[activation]())
        self.net = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.transform(x).to(self.net[0].weight.dtype)
        return ((self.net(z) - z) ** 2).mean(dim=1)


@register("autoencoder")
class AutoencoderAnomaly(_ScoreTagger):
    """Reconstruction error of a small torch autoencoder trained on background features.

    Features are standardised (``scaling``, optionally PCA-reduced to
    ``n_components``); the network is ``d -> hidden... -> latent -> ...hidden -> d``
    with ``activation`` between layers. Training: Adam (``lr``, ``weight_decay``),
    mini-batches of ``batch_size``, mean squared error, a random ``val_fraction`` of the
    jets held out; stops when the validation loss has not improved for ``patience``
    epochs (or after ``max_epochs``) and keeps the best weights. Initial weights, the
    split and the batch order come from ``seed`` (no global random state is touched).
    Trains in float32 on ``X``'s device; ``progress=True`` shows a tqdm bar.

    ``signal_score(X)``: mean squared reconstruction error per jet in the
    standardised space, shape (n,). ``contamination``: as in :class:`GaussianAnomaly`.
    Fitted attributes: ``module_``, ``history_`` (per-epoch ``train``/``val`` losses),
    ``best_epoch_``, ``offset_``, ``n_features_in_``.
    """

    def __init__(self, hidden: tuple[int, ...] = (128,), latent: int = 8,
                 n_components: int | float | None = None, scaling: str = "standard",
                 activation: str = "gelu", lr: float = 1e-3, weight_decay: float = 0.0,
                 batch_size: int = 256, max_epochs: int = 200, patience: int = 10,
                 val_fraction: float = 0.2, seed: int = 0, progress: bool = False,
                 contamination: float = 0.1):
        self.hidden = hidden
        self.latent = latent
        self.n_components = n_components
        self.scaling = scaling
        self.activation = activation
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.seed = seed
        self.progress = progress
        self.contamination = contamination

    def _check_params(self) -> None:
        super()._check_params()
        if self.activation not in _ACTIVATIONS:
            raise InputError(f"activation must be one of {', '.join(_ACTIVATIONS)}, "
                             f"got {self.activation!r}")
        if not 0 < self.val_fraction < 1:
            raise InputError(f"val_fraction must lie in (0, 1), got {self.val_fraction}")

    @property
    def _hidden(self) -> tuple[int, ...]:
        return tuple(int(h) for h in self.hidden)

    def _fit(self, x: torch.Tensor) -> None:
        from tqdm.auto import tqdm

        n = x.shape[0]
        n_val = holdout_size(n, self.val_fraction)
        if n - n_val < 1:
            raise InputError(f"the autoencoder needs at least 2 jets (training and "
                             f"validation), got {n}")
        gen = torch.Generator().manual_seed(self.seed)
        tr_idx, val_idx = permutation_split(n, n_val, gen, x.device)
        tr = FeatureTransform.fit(x[tr_idx], self.scaling, self.n_components)
        mod = _ReconstructionScore(tr, self._hidden, self.latent, self.activation)
        with torch.no_grad():  # seeded initialisation (torch's default scheme)
            for m in mod.net:
                if isinstance(m, torch.nn.Linear):
                    torch.nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=gen)
                    bound = 1 / math.sqrt(m.in_features)
                    torch.nn.init.uniform_(m.bias, -bound, bound, generator=gen)
        mod = mod.to(x.device)
        with torch.no_grad():
            z = tr(x).float()
        z_tr, z_val = z[tr_idx], z[val_idx]
        opt = torch.optim.Adam(mod.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        best, best_state = math.inf, None
        self.best_epoch_ = 0
        history: dict[str, list[float]] = {"train": [], "val": []}
        bar = tqdm(range(self.max_epochs), desc="autoencoder", disable=not self.progress)
        for epoch in bar:
            mod.train()
            order = torch.randperm(len(z_tr), generator=gen).to(x.device)
            total = 0.0
            for i in range(0, len(z_tr), self.batch_size):
                batch = z_tr[order[i:i + self.batch_size]]
                loss = ((mod.net(batch) - batch) ** 2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(batch)
            mod.eval()
            with torch.no_grad():
                val = float(((mod.net(z_val) - z_val) ** 2).mean())
            history["train"].append(total / len(z_tr))
            history["val"].append(val)
            bar.set_postfix(val=f"{val:.4g}")
            if best_state is None or val < best - 1e-6 * abs(best):
                best, self.best_epoch_ = val, epoch
                best_state = {k: v.detach().clone() for k, v in mod.net.state_dict().items()}
            elif epoch - self.best_epoch_ >= self.patience:
                break
        assert best_state is not None
        mod.net.load_state_dict(best_state)
        self.module_ = mod.eval()
        self.history_ = history

    def get_state(self) -> dict[str, Any]:
        self._check_fitted()
        params = self.get_params()
        params["hidden"] = list(self._hidden)
        return {"params": params, "transform": self.module_.transform.get_state(),
                "network": {k: _cpu(v) for k, v in self.module_.net.state_dict().items()},
                "best_epoch": self.best_epoch_, "history": self.history_,
                "offset": self.offset_}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> AutoencoderAnomaly:
        self = cls(**renamed_params(state["params"]))
        mod = _ReconstructionScore(FeatureTransform.from_state(state["transform"]),
                                   self._hidden, self.latent, self.activation)
        mod.net.load_state_dict({k: torch.as_tensor(v) for k, v in state["network"].items()})
        self.module_ = mod.eval()
        self.best_epoch_ = int(state["best_epoch"])
        self.history_ = {k: [float(v) for v in vals] for k, vals in state["history"].items()}
        self._restore_offset(state)
        return self


# ------------------------------------------------------------------------ ensemble
class _TailCalibration(torch.nn.Module):
    """scores (B,) -> background tail score ``-log(1 - F(s))`` (B,), F the empirical
    distribution of the training scores, piecewise linear between ``knots`` (K,): the
    score quantiles at tail levels ``t_j = -log(1 - F)`` evenly spaced from 0 to
    ``t_max``. Above the last knot it grows linearly with the mean slope of the upper
    half (so the most anomalous jets stay ordered); elementwise ops only (ONNX)."""

    def __init__(self, knots: torch.Tensor, t_max: float):
        super().__init__()
        self.register_buffer("knots", knots)
        self.t_max = float(t_max)

    @classmethod
    def fit(cls, scores: torch.Tensor, n_knots: int) -> _TailCalibration:
        s = scores.to(torch.float64)
        t_max = math.log(len(s))
        t = torch.linspace(0.0, t_max, n_knots, dtype=torch.float64, device=s.device)
        knots = torch.quantile(s, (1 - torch.exp(-t)).clamp(0, 1))
        return cls(knots.cummax(0).values, t_max)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        k = self.knots.to(s.dtype)
        gaps = (k[1:] - k[:-1]).clamp_min(1e-12 * (k[-1] - k[0]).abs().clamp_min(1e-300))
        pos = ((s[:, None] - k[:-1]) / gaps).clamp(0, 1).sum(dim=1)
        dt = self.t_max / (len(k) - 1)
        mid = k[(len(k) - 1) // 2]
        slope = (self.t_max / 2) / (k[-1] - mid).clamp_min(1e-12)
        return pos * dt + torch.relu(s - k[-1]) * slope


class _EnsembleScore(torch.nn.Module):
    """features (B, F) -> mean over members of the calibrated member scores (B,)."""

    def __init__(self, members: list[torch.nn.Module], calibrations: list[_TailCalibration]):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.calibrations = torch.nn.ModuleList(calibrations)

    @property
    def num_features(self) -> int:
        return self.members[0].transform.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = [cal(m(x).to(torch.float64 if x.dtype == torch.float64 else torch.float32))
               for m, cal in zip(self.members, self.calibrations, strict=True)]
        return torch.stack(out, dim=0).mean(dim=0)


#: members of the default ensemble and their settings: three autoencoders (seed offsets
#: 0, 1, 2) and one Gaussian mixture
ENSEMBLE_DEFAULT = (("autoencoder", {"hidden": [128], "latent": 4, "seed": 0}),
                    ("autoencoder", {"hidden": [128], "latent": 4, "seed": 1}),
                    ("autoencoder", {"hidden": [128], "latent": 4, "seed": 2}),
                    ("gmm", {"n_mix": 8, "n_components": 50, "n_init": 1}))


@register("ensemble")
class EnsembleAnomaly(_ScoreTagger):
    """Average of several anomaly detectors' background tail scores.

    Each member is fitted on the same background jets; its score s on the training jets
    gives the distribution F, and a jet's member score becomes ``-log(1 - F(s))`` (the
    background tail probability in nats, interpolated between ``n_knots`` quantiles;
    about 0 for typical jets, ``log(n_train)`` at the most extreme training jet, and
    continued linearly beyond). These comparable scores are averaged, so no member
    dominates by its units. Detectors built on different ideas (reconstruction error,
    density) misjudge different background jets, so the average ranks better than each;
    averaging autoencoders trained from different seeds removes most of their
    seed-to-seed scatter.

    Top versus QCD, ROC AUC of the default ensemble on mirror-symmetrised BIP(3,6)
    features (178 columns) of each jet's 32 hardest constituents (the default features
    of ``jetace train --unsupervised``), fitted on 25k QCD jets: 0.958 / 0.960 / 0.955 on
    three independently generated test samples (8k + 8k jets; 5k + 5k with multi-parton
    interactions; 8k + 8k), 0.955 on average over five folds of the development files
    (fitted on 20k QCD jets each). The same from up to 128 constituents: 0.952 / 0.952 /
    0.949, and 0.952 over the folds. (One autoencoder alone scatters by about 0.004 with
    its seed.)
    Fitting on 25k jets takes about 45 s on one CPU thread.

    Parameters
    ----------
    members : sequence of ``(kind, params)`` pairs: registered anomaly kinds
        (``"gaussian"``, ``"gmm"``, ``"autoencoder"``) and their constructor arguments
        (JSON values). A member's ``seed`` is an offset (default 0) added to the
        ensemble's ``seed``, so that several copies of one detector can differ.
        Default :data:`ENSEMBLE_DEFAULT`: three autoencoders (hidden 128, latent 4;
        seed offsets 0, 1, 2) and a GMM (8 Gaussians on 50 principal components).
    n_knots : quantiles kept per member for the calibration.
    seed : seeds every member (plus the member's own ``seed`` offset).

    contamination : as in :class:`GaussianAnomaly`.

    ``signal_score(X)``: mean tail score, shape (n,). Fitted attributes:
    ``module_``, ``members_`` (the fitted member detectors), ``offset_``,
    ``n_features_in_``.
    """

    def __init__(self, members: Any = ENSEMBLE_DEFAULT, n_knots: int = 256, seed: int = 0,
                 contamination: float = 0.1):
        self.members = members
        self.n_knots = n_knots
        self.seed = seed
        self.contamination = contamination

    def _spec(self) -> list[tuple[str, dict]]:
        """The members as checked ``(kind, params)`` pairs."""
        spec = [(str(k), dict(p or {})) for k, p in self.members]
        if not spec:
            raise InputError("an ensemble needs at least one member")
        for kind, _ in spec:
            if kind not in _MEMBER_KINDS:
                raise InputError(f"ensemble members must be anomaly kinds "
                                 f"({', '.join(_MEMBER_KINDS)}), got {kind!r}")
        return spec

    def _check_params(self) -> None:
        super()._check_params()
        self._spec()
        if int(self.n_knots) < 3:
            raise InputError(f"n_knots must be at least 3, got {self.n_knots}")

    def _member(self, kind: str, params: dict) -> _ScoreTagger:
        params = {**renamed_params(params), "seed": int(self.seed) + int(params.get("seed", 0))}
        if "hidden" in params:
            params["hidden"] = tuple(params["hidden"])
        return _MEMBER_KINDS[kind](**params)

    def _fit(self, x: torch.Tensor) -> None:
        """Fit every member on background features x (n, F)."""
        fitted, cals = [], []
        for kind, params in self._spec():
            det = self._member(kind, params).fit(x)
            with torch.no_grad():
                s = torch.as_tensor(det.signal_score(x))
            fitted.append(det)
            cals.append(_TailCalibration.fit(s, int(self.n_knots)))
        self.members_ = fitted
        self.module_ = _EnsembleScore([d.module_ for d in fitted], cals)

    def get_state(self) -> dict[str, Any]:
        self._check_fitted()
        params = self.get_params()
        params["members"] = [[k, p] for k, p in self._spec()]
        return {"params": params, "offset": self.offset_,
                "members": [{"kind": d.kind, "state": d.get_state()} for d in self.members_],
                "knots": [_cpu(c.knots) for c in self.module_.calibrations],
                "t_max": [c.t_max for c in self.module_.calibrations]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EnsembleAnomaly:
        self = cls(**renamed_params(state["params"]))
        self.members_ = [_MEMBER_KINDS[m["kind"]].from_state(m["state"])
                         for m in state["members"]]
        cals = [_TailCalibration(torch.as_tensor(k).double(), float(t))
                for k, t in zip(state["knots"], state["t_max"], strict=True)]
        self.module_ = _EnsembleScore([d.module_ for d in self.members_], cals)
        self._restore_offset(state)
        return self


_MEMBER_KINDS: dict[str, type[_ScoreTagger]] = {
    "gaussian": GaussianAnomaly, "gmm": GMMAnomaly, "autoencoder": AutoencoderAnomaly}
