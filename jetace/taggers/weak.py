"""Weak supervision: classification without labels (CWoLa).

Given two mixed samples A and B of the same two classes with different, unknown signal
fractions f_A > f_B, the optimal classifier of "A versus B" is a monotone function of
the signal-to-background likelihood ratio, so a tagger trained to tell the mixtures
apart is a signal tagger (Metodiev, Nachman, Thaler, arXiv:1708.02949). No jet-level
truth is needed: only which mixture each jet came from.

* :class:`CWoLaTagger` (kind ``"cwola"``): wraps a supervised tagger (``"linear"`` by
  default, or ``"mlp"``) trained on mixture membership, with the two mixtures weighted
  equally. By convention A is the mixture richer in signal, so larger scores are more
  signal-like.
* :func:`make_mixture`: draw a mixed sample of given signal fraction from labelled
  features (for tests and benchmarks).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from jetace.errors import InputError
from jetace.taggers.base import TAGGERS, Tagger, register, tagger_from_state
from jetace.taggers.preprocess import SupervisedTagger, as_features

__all__ = ["CWoLaTagger", "make_mixture"]


def _rows(X: Any) -> int:
    shape = getattr(X, "shape", None)
    if shape is None or len(shape) != 2:
        raise InputError(f"features must have shape (n_jets, n_features), got "
                         f"{None if shape is None else tuple(shape)}")
    return int(shape[0])


def _take(X: Any, idx: np.ndarray):
    """Rows ``idx`` of a numpy array or torch tensor (same type, same device)."""
    if isinstance(X, torch.Tensor):
        return X[torch.as_tensor(idx, device=X.device)]
    return np.asarray(X)[idx]


def _concat(parts: list[Any]):
    if isinstance(parts[0], torch.Tensor):
        return torch.cat([torch.as_tensor(p, device=parts[0].device) for p in parts])
    return np.concatenate([np.asarray(p) for p in parts])


def make_mixture(signal_X: Any, background_X: Any, fraction: float, n: int,
                 rng: np.random.Generator | int | None = None) -> tuple[Any, np.ndarray]:
    """A shuffled mixed sample of ``n`` jets with ``round(fraction * n)`` signal jets.

    ``signal_X`` (n_s, F), ``background_X`` (n_b, F): numpy arrays or torch tensors;
    jets are drawn without replacement. ``rng``: a numpy Generator or a seed.
    Returns ``(X, is_signal)``: X (n, F) of the inputs' type, is_signal (n,) bool numpy.
    """
    if not 0.0 <= fraction <= 1.0:
        raise InputError(f"signal fraction must lie in [0, 1], got {fraction}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    n_sig = int(round(fraction * n))
    n_bkg = int(n) - n_sig
    have_s, have_b = _rows(signal_X), _rows(background_X)
    if n_sig > have_s or n_bkg > have_b:
        raise InputError(f"a mixture of {n} jets at signal fraction {fraction} needs {n_sig} "
                         f"signal and {n_bkg} background jets; got {have_s} and {have_b}")
    s_idx = rng.choice(have_s, n_sig, replace=False)
    b_idx = rng.choice(have_b, n_bkg, replace=False)
    X = _concat([_take(signal_X, s_idx), _take(background_X, b_idx)])
    truth = np.r_[np.ones(n_sig, bool), np.zeros(n_bkg, bool)]
    order = rng.permutation(n)
    return _take(X, order), truth[order]


@register("cwola")
class CWoLaTagger(Tagger):
    """Classification without labels: a tagger trained to tell mixture A from mixture B.

    Parameters
    ----------
    classifier : registered kind of the inner supervised tagger, ``"linear"`` (default:
        :class:`~jetace.taggers.linear.LinearTagger`) or ``"mlp"``.
    classifier_params : keyword arguments of the inner tagger (its ``seed`` defaults to
        ``seed``; for ``"linear"``, ``C`` defaults to ``"auto"``: the regularisation is
        chosen by the log-loss of mixture membership on a validation split, which needs
        no truth and matters because mixture labels are very noisy).
    balance : weigh the two mixtures equally by oversampling the smaller one (whole
        copies plus a seeded random remainder), so that the score does not depend on
        the sample sizes.
    seed : seeds the oversampling and the inner tagger.

    ``fit(X, y)``: ``y`` (n,) = 1/True for jets of mixture A (the signal-richer one),
    0/False for mixture B; or use :meth:`fit_mixtures`. ``decision_function(X)``: the
    inner tagger's logit of "from A", shape (n,): larger = more signal-like.
    Fitted attributes: ``classifier_`` (the inner tagger), ``n_mixture_a_``,
    ``n_mixture_b_``.
    """

    def __init__(self, classifier: str = "linear", classifier_params: dict | None = None,
                 balance: bool = True, seed: int = 0):
        self.classifier = classifier
        self.classifier_params = dict(classifier_params or {})
        self.balance = balance
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {"classifier": self.classifier, "classifier_params": dict(self.classifier_params),
                "balance": self.balance, "seed": self.seed}

    def _inner(self) -> Tagger:
        if self.classifier not in TAGGERS:
            import importlib

            try:
                importlib.import_module(f"jetace.taggers.{self.classifier}")
            except ModuleNotFoundError:
                pass
        cls = TAGGERS.get(self.classifier)
        if cls is None or not issubclass(cls, SupervisedTagger):
            raise InputError(f"CWoLa needs a supervised classifier kind such as 'linear' or "
                             f"'mlp', got {self.classifier!r}")
        defaults: dict[str, Any] = {"seed": self.seed}
        if self.classifier == "linear":
            defaults["C"] = "auto"
        return cls(**{**defaults, **self.classifier_params})

    def fit(self, X: Any, y: Any = None) -> CWoLaTagger:
        """Train on jets X (n, F) with mixture membership y (n,): 1 = A, 0 = B."""
        if y is None:
            raise InputError("CWoLa needs the mixture of every jet: y = 1 for mixture A "
                             "(signal-richer), 0 for mixture B; or call fit_mixtures(X_a, X_b)")
        n = as_features(X).shape[0]  # raises for an empty, ragged or non-finite matrix
        yy = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        if yy.ndim != 1 or len(yy) != n:
            raise InputError(f"y must have shape ({n},) (one mixture label per jet), "
                             f"got {yy.shape}")
        if not np.isin(yy, (0, 1)).all():
            raise InputError("y must hold mixture labels 1 (A) and 0 (B), got values "
                             f"{np.unique(yy)[:5].tolist()}")
        yy = yy.astype(bool)
        a, b = np.flatnonzero(yy), np.flatnonzero(~yy)
        if len(a) == 0 or len(b) == 0:
            raise InputError(f"CWoLa needs jets of both mixtures, got {len(a)} of A and "
                             f"{len(b)} of B")
        idx = np.arange(n)
        if self.balance and len(a) != len(b):
            small, big = (a, b) if len(a) < len(b) else (b, a)
            rng = np.random.default_rng(self.seed)
            q, r = divmod(len(big), len(small))
            extra = np.r_[np.tile(small, q - 1), rng.choice(small, r, replace=False)]
            idx = np.r_[idx, extra.astype(np.int64)]
        self.classifier_ = self._inner().fit(_take(X, idx), yy[idx].astype(np.int64))
        self.n_mixture_a_, self.n_mixture_b_ = len(a), len(b)
        return self

    def fit_mixtures(self, X_a: Any, X_b: Any) -> CWoLaTagger:
        """Train on the two mixtures: X_a (n_a, F) signal-richer, X_b (n_b, F)."""
        X = _concat([X_a, X_b])
        return self.fit(X, np.r_[np.ones(_rows(X_a), np.int64), np.zeros(_rows(X_b), np.int64)])

    def _check_fitted(self) -> None:
        if not hasattr(self, "classifier_"):
            raise InputError("this CWoLaTagger is not fitted yet: call fit first")

    def decision_function(self, X: Any):
        """Signal-likeness per jet, shape (n,): the logit of "from mixture A"."""
        self._check_fitted()
        return self.classifier_.decision_function(X)

    def predict_proba(self, X: Any):
        """Probability of (B, A) membership per jet, shape (n, 2)."""
        self._check_fitted()
        return self.classifier_.predict_proba(X)

    def as_module(self) -> torch.nn.Module:
        """The inner tagger's module: raw features (B, F) -> decision function (B,)."""
        self._check_fitted()
        return self.classifier_.as_module()

    def get_state(self) -> dict[str, Any]:
        self._check_fitted()
        return {"params": self.get_params(), "inner_kind": self.classifier_.kind,
                "inner_state": self.classifier_.get_state(),
                "n_mixture_a": self.n_mixture_a_, "n_mixture_b": self.n_mixture_b_}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CWoLaTagger:
        self = cls(**state["params"])
        self.classifier_ = tagger_from_state(state["inner_kind"], state["inner_state"])
        self.n_mixture_a_ = int(state["n_mixture_a"])
        self.n_mixture_b_ = int(state["n_mixture_b"])
        return self
