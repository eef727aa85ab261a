"""Clustering of an unlabelled jet sample, with a rule for the signal-like cluster.

:class:`ClusterTagger` (kind ``"cluster"``) standardises the features, projects them on
the leading principal components (whitened for the Gaussian mixture), and splits the sample into
``n_clusters`` groups with a Gaussian mixture (``method="gmm"``, default) or k-means
(``method="kmeans"``). One cluster is declared *signal-like* by a documented rule:

* ``rule="smallest"`` (default): the cluster with the smallest weight (mixture weight
  for GMM, fraction of members for k-means). In a search the signal is the minority,
  so the smallest cluster is the candidate.
* ``rule="farthest"``: the cluster whose centre lies farthest (Euclidean distance in
  the PCA space) from the mean of the whole sample.

``decision_function(X)`` is the log-odds ``log p(signal-like | x) - log p(other | x)``:
a monotone function of the signal-like cluster's posterior, free of the float
saturation of probabilities near 1 (``predict_proba`` gives the posteriors
themselves). For k-means the posteriors are those of a mixture of equal-weight
isotropic Gaussians at the centres with the mean within-cluster variance.

:func:`cluster_report` compares a fitted tagger with known labels (purity, AUC).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import ClusterMixin

from jetace.errors import InputError
from jetace.numerics import like_input, to_numpy
from jetace.taggers.anomaly import (
    FeatureTransform,
    ModuleTagger,
    fit_gaussian_mixture,
    kmeans,
    mixture_log_prob,
)
from jetace.taggers.base import register, renamed_params
from jetace.taggers.preprocess import check_choice

__all__ = ["ClusterTagger", "cluster_report"]

METHODS = ("gmm", "kmeans")
RULES = ("smallest", "farthest")


class _ClusterScore(torch.nn.Module):
    """features (B, F) -> log-odds (B,) of the signal-like cluster.

    Cluster log-probabilities are ``mixture_log_prob`` of the fitted mixture; k-means
    is stored as a mixture of equal-weight isotropic Gaussians.
    """

    def __init__(self, transform: FeatureTransform, log_weights: torch.Tensor,
                 means: torch.Tensor, prec_chol: torch.Tensor, signal: int):
        super().__init__()
        self.transform = transform
        self.register_buffer("log_weights", log_weights)
        self.register_buffer("means", means)
        self.register_buffer("prec_chol", prec_chol)
        self.signal = int(signal)
        others = [c for c in range(len(log_weights)) if c != self.signal]
        self.register_buffer("others", torch.tensor(others, dtype=torch.long))

    def cluster_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised log posterior of every cluster, (B, n_clusters)."""
        return mixture_log_prob(self.transform(x), self.log_weights, self.means, self.prec_chol)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lp = self.cluster_log_prob(x)
        return lp[:, self.signal] - torch.logsumexp(lp[:, self.others], dim=1)


@register("cluster")
class ClusterTagger(ClusterMixin, ModuleTagger):
    """Unsupervised two-or-more-cluster tagger on an unlabelled sample.

    Parameters
    ----------
    n_clusters : number of clusters (>= 2).
    method : ``"gmm"`` (full-covariance Gaussian mixture, EM) or ``"kmeans"``.
    rule : ``"smallest"`` or ``"farthest"``: which cluster is signal-like (module doc).
    n_components : principal components kept (int or variance fraction).
    scaling : ``"standard"`` or ``"signed_log"`` input scaling.
    reg_covar, n_init, max_iter, tol : mixture/k-means fitting controls.
    seed : seeds the k-means++ initialisations.

    Fitted attributes: ``module_``, ``weights_`` (n_clusters,) fraction of the training
    sample in each cluster, ``signal_cluster_`` (index), ``distances_`` (n_clusters,)
    distance of every centre from the sample mean, ``labels_`` (n,) the cluster of every
    training jet (scikit-learn's ``fit_predict``), ``n_iter_`` (EM or Lloyd iterations),
    ``n_features_in_``.
    ``signal_score(X)`` = ``decision_function(X)``, the log-odds above.
    """

    def __init__(self, n_clusters: int = 2, method: str = "gmm", rule: str = "smallest",
                 n_components: int | float | None = 10, scaling: str = "standard",
                 reg_covar: float = 1e-3, n_init: int = 2, max_iter: int = 200,
                 tol: float = 1e-3, seed: int = 0):
        self.n_clusters = n_clusters
        self.method = method
        self.rule = rule
        self.n_components = n_components
        self.scaling = scaling
        self.reg_covar = reg_covar
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed

    def _check_params(self) -> None:
        check_choice("clustering method", self.method, METHODS)
        check_choice("rule", self.rule, RULES)
        if int(self.n_clusters) < 2:
            raise InputError(f"n_clusters must be at least 2, got {self.n_clusters}")

    def fit(self, X: Any, y: Any = None) -> ClusterTagger:
        """Cluster the unlabelled features X (n, F); ``y`` is ignored. Returns self."""
        x = self._fit_checked(X)
        self.labels_ = self._assign(x)
        return self

    def _fit(self, x: torch.Tensor) -> None:
        # k-means sees the standardised PCA scores unwhitened: whitening would give the
        # bulk's minor directions the same weight as the separating one
        tr = FeatureTransform.fit(x, self.scaling, self.n_components,
                                  whiten=self.method == "gmm")
        z = tr(x)
        k, d = int(self.n_clusters), z.shape[1]
        if self.method == "gmm":
            gm = fit_gaussian_mixture(z, k, seed=self.seed, n_init=self.n_init,
                                      max_iter=self.max_iter, tol=self.tol,
                                      reg_covar=self.reg_covar)
            log_w, means, prec = gm["log_weights"], gm["means"], gm["prec_chol"]
            weights = log_w.exp()
            self.n_iter_ = int(gm["n_iter"])
        else:
            means, labels, inertia, self.n_iter_ = kmeans(
                z, k, seed=self.seed, n_init=self.n_init, max_iter=self.max_iter,
                return_n_iter=True)
            weights = torch.bincount(labels, minlength=k).to(z.dtype) / len(labels)
            sigma2 = max(inertia / d, 1e-12)
            log_w = torch.full((k,), -float(np.log(k)), dtype=z.dtype, device=z.device)
            prec = torch.eye(d, dtype=z.dtype, device=z.device).expand(k, d, d) / sigma2 ** 0.5
            prec = prec.contiguous()
        self.weights_ = weights.detach().cpu()
        self.distances_ = torch.linalg.vector_norm(means - z.mean(dim=0), dim=1).detach().cpu()
        if self.rule == "smallest":
            self.signal_cluster_ = int(torch.argmin(self.weights_))
        else:
            self.signal_cluster_ = int(torch.argmax(self.distances_))
        self.module_ = _ClusterScore(tr, log_w, means, prec, self.signal_cluster_)

    def _posterior(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(self.module_.to(x.device).cluster_log_prob(x), dim=1)

    def _assign(self, x: torch.Tensor) -> np.ndarray:
        return self._posterior(x).argmax(dim=1).cpu().numpy().astype(np.int64)

    def decision_function(self, X: Any):
        """Log-odds of the signal-like cluster per jet, shape (n,) (module docstring)."""
        return self.signal_score(X)

    def predict_proba(self, X: Any):
        """Posterior probability of every cluster, shape (n, n_clusters)."""
        return like_input(self._posterior(self._features(X)), X)

    def predict(self, X: Any) -> np.ndarray:
        """Most probable cluster per jet, numpy int array of shape (n,)."""
        return self._assign(self._features(X))

    def get_state(self) -> dict[str, Any]:
        self._check_fitted()
        m = self.module_
        return {"params": self.get_params(), "transform": m.transform.get_state(),
                "log_weights": m.log_weights.cpu(), "means": m.means.cpu(),
                "prec_chol": m.prec_chol.cpu(), "signal_cluster": self.signal_cluster_,
                "weights": self.weights_, "distances": self.distances_}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ClusterTagger:
        self = cls(**renamed_params(state["params"]))
        self.signal_cluster_ = int(state["signal_cluster"])
        self.module_ = _ClusterScore(FeatureTransform.from_state(state["transform"]),
                                     *(torch.as_tensor(state[k]).double()
                                       for k in ("log_weights", "means", "prec_chol")),
                                     self.signal_cluster_)
        self.weights_ = torch.as_tensor(state["weights"]).double()
        self.distances_ = torch.as_tensor(state["distances"]).double()
        return self


def cluster_report(tagger: ClusterTagger, X: Any, labels: Any) -> dict[str, float | int]:
    """How well a fitted :class:`ClusterTagger` separates known classes.

    ``labels``: (n,) truth, 1/True = signal. Returns
    ``purity`` (fraction of jets in the majority class of their cluster),
    ``signal_cluster_purity`` (signal fraction inside the signal-like cluster),
    ``signal_cluster_efficiency`` (fraction of all signal jets that land in it),
    ``auc`` (ROC AUC of ``decision_function`` against the labels, ties counting one
    half, as :func:`jetace.metrics.roc_auc`), ``signal_cluster``,
    ``n_signal`` and ``n_background``.
    """
    from sklearn.metrics import roc_auc_score

    y = to_numpy(labels).astype(bool)
    assign = tagger.predict(X)
    if len(y) != len(assign):
        raise InputError(f"{len(assign)} jets but {len(y)} labels")
    if y.all() or not y.any():
        raise InputError("cluster_report needs both signal and background jets "
                         f"(got {int(y.sum())} signal, {int((~y).sum())} background)")
    purity = sum(max(int(y[assign == c].sum()), int((~y[assign == c]).sum()))
                 for c in np.unique(assign)) / len(y)
    in_sig = assign == tagger.signal_cluster_
    scores = to_numpy(tagger.decision_function(X)).astype(np.float64)
    return {
        "purity": float(purity),
        "signal_cluster_purity": float(y[in_sig].mean()) if in_sig.any() else 0.0,
        "signal_cluster_efficiency": float(in_sig[y].mean()) if y.any() else 0.0,
        "auc": float(roc_auc_score(y, scores)),
        "signal_cluster": tagger.signal_cluster_,
        "n_signal": int(y.sum()),
        "n_background": int((~y).sum()),
    }
