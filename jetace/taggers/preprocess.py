"""Input preparation shared by the supervised taggers.

* :class:`FeatureScaler`: a ``torch.nn.Module`` that maps raw features (B, F) to
  standardised ones, optionally after a signed-log transform that tames the huge
  dynamic range of high body-order products. It is part of every model (and of its
  ONNX graph), so raw features go in and no preprocessing happens outside.
* :class:`SupervisedTagger`: the plumbing of :class:`~jetace.taggers.linear.LinearTagger`
  and :class:`~jetace.taggers.mlp.MLPTagger`: input checks, label encoding,
  ``predict``/``predict_proba`` from the decision function, numpy-in/numpy-out.
* :func:`check_fit_input`, :func:`check_predict_input`, :func:`check_sample_weight`:
  the input checks of every tagger (scikit-learn's for array-likes, jetace's for torch
  tensors, which stay on their device).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d, validate_data

from jetace.errors import InputError
from jetace.numerics import from_numpy, to_numpy
from jetace.taggers.base import Tagger

__all__ = ["FeatureScaler", "SupervisedTagger", "as_features", "TRANSFORMS",
           "check_fit_input", "check_predict_input", "check_sample_weight", "check_choice"]

TRANSFORMS = ("standard", "signed_log")


def as_features(X: Any, name: str = "X") -> torch.Tensor:
    """``X`` as a floating torch tensor of shape (n, F), kept on its device.

    numpy arrays become CPU tensors; integer arrays become float32. Raises
    :class:`InputError` for the wrong shape, an empty matrix or non-finite values.
    """
    t = X if isinstance(X, torch.Tensor) else torch.as_tensor(np.asarray(X))
    if not t.is_floating_point():
        t = t.to(torch.float32)
    if t.ndim != 2:
        raise InputError(f"{name} must have shape (n_jets, n_features), got {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise InputError(f"{name} is empty (shape {tuple(t.shape)})")
    if torch.isfinite(t.sum(dim=0, dtype=torch.float64)).all():
        return t  # a NaN or inf anywhere would make its column's sum non-finite
    bad = ~torch.isfinite(t)
    if bad.any():
        rows = int(bad.any(dim=1).sum())
        raise InputError(f"{name} has non-finite values in {rows} of {t.shape[0]} jets")
    return t


_FLOATS = (np.float64, np.float32)


def _check_width(est: Any, n_features: int) -> None:
    expected = getattr(est, "n_features_in_", None)
    if expected is not None and n_features != expected:
        raise InputError(f"X has {n_features} features, but {type(est).__name__} is "
                         f"expecting {expected} features as input")


def _validated(est: Any, X: Any, *y: Any, reset: bool = True):
    """scikit-learn's ``validate_data`` (floats kept), its ValueErrors as InputError."""
    try:
        return validate_data(est, X, *y, dtype=_FLOATS, reset=reset)
    except InputError:
        raise
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def check_fit_input(est: Any, X: Any, y: Any = None, *, requires_y: bool = False
                    ) -> tuple[torch.Tensor, np.ndarray | None]:
    """The training matrix of ``est.fit`` as a floating tensor (n, F), and ``y`` (n,).

    A torch tensor is checked with :func:`as_features` and stays on its device; anything
    else goes through scikit-learn's ``validate_data`` (float64 or float32 kept,
    ``n_features_in_`` and ``feature_names_in_`` set, NaN and inf refused). With
    ``requires_y``, ``y`` must be one label per jet (a column vector is flattened with
    scikit-learn's DataConversionWarning); otherwise ``y`` is ignored and None returned.
    """
    if not isinstance(X, torch.Tensor):
        if requires_y:
            Xn, yn = _validated(est, X, y)
            return from_numpy(Xn), yn
        return from_numpy(_validated(est, X)), None
    t = as_features(X)
    est.n_features_in_ = int(t.shape[1])
    if hasattr(est, "feature_names_in_"):
        del est.feature_names_in_
    if not requires_y:
        return t, None
    if y is None:
        raise InputError(f"{type(est).__name__} requires y to be passed, but the target y "
                         "is None")
    yn = column_or_1d(to_numpy(y), warn=True)
    if len(yn) != t.shape[0]:
        raise InputError(f"y must have shape ({t.shape[0]},) (one label per jet), "
                         f"got {yn.shape}")
    return t, yn


def check_predict_input(est: Any, X: Any) -> torch.Tensor:
    """The matrix of a fitted ``est``'s predict/score methods as a floating tensor (n, F),
    with as many features as in ``fit`` (torch tensors stay on their device)."""
    if isinstance(X, torch.Tensor):
        t = as_features(X)
        _check_width(est, t.shape[1])
        return t
    return from_numpy(_validated(est, X, reset=False))


def check_sample_weight(sample_weight: Any, n: int, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float64) -> torch.Tensor | None:
    """Per-jet training weights (n,) as a tensor on ``device``, or None for none given.

    A scalar applies to every jet. Weights must be finite and non-negative with a
    positive sum (negative event weights, as NLO generators write, are accepted by
    :mod:`jetace.metrics`, not by the fits: drop or absorb them first).
    """
    if sample_weight is None:
        return None
    w = np.asarray(to_numpy(sample_weight), dtype=np.float64)
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.shape != (n,):
        raise InputError(f"sample_weight.shape == {w.shape}, expected {(n,)} (one weight "
                         "per jet)")
    if not np.isfinite(w).all():
        raise InputError(f"sample_weight has {int((~np.isfinite(w)).sum())} non-finite values")
    if (w < 0).any():
        raise InputError(f"sample_weight has {int((w < 0).sum())} negative values; fits "
                         "need non-negative weights")
    if not w.sum() > 0:
        raise InputError("sample_weight: all weights are zero; at least one non-zero "
                         "weight is needed")
    return torch.as_tensor(w, device=device).to(dtype)


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    """Raise InputError unless ``value`` is one of ``choices`` (named in the message)."""
    if value not in choices:
        raise InputError(f"unknown {name} {value!r}; choose one of "
                         f"{', '.join(map(str, choices))}")


class FeatureScaler(torch.nn.Module):
    """Per-feature input scaling, fitted on training features.

    transform="standard": ``(x - mean) / std``.
    transform="signed_log": ``asinh(x / s)`` first, with ``s`` the per-feature median of
    |x| (so typical values stay nearly linear and the tails grow only logarithmically),
    then standardised. Features whose spread is at rounding level (relative 1e-5 for
    float32 input) are treated as constants (std set to 1, so they stay near 0).

    Buffers ``scale``, ``mean``, ``std`` have shape (F,); forward maps (B, F) -> (B, F)
    in the buffers' dtype.
    """

    def __init__(self, num_features: int, transform: str = "standard",
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        if transform not in TRANSFORMS:
            raise InputError(f"unknown transform {transform!r}; "
                             f"choose one of {', '.join(TRANSFORMS)}")
        self.transform = transform
        for name in ("scale", "mean", "std"):
            self.register_buffer(name, torch.ones(num_features, dtype=dtype))
        self.mean.zero_()

    @torch.no_grad()
    def fit(self, X: torch.Tensor, max_rows_for_scale: int = 20000,
            sample_weight: torch.Tensor | None = None) -> FeatureScaler:
        """Fit the scales on X (n, F); statistics accumulate in float64. With
        ``sample_weight`` (n,), mean and standard deviation are weighted (the median of
        "signed_log" is not)."""
        X = X.to(self.mean.device)
        w = None if sample_weight is None else \
            sample_weight.to(device=X.device, dtype=torch.float64)
        if self.transform == "signed_log":
            step = max(1, X.shape[0] // max_rows_for_scale)
            med = X[::step].abs().median(dim=0).values.to(torch.float64)
            fallback = X[::step].abs().mean(dim=0).to(torch.float64)
            med = torch.where(med > 0, med, fallback)
            self.scale.copy_(torch.where(med > 0, med, torch.ones_like(med)))
        s1 = torch.zeros(X.shape[1], dtype=torch.float64, device=X.device)
        s2 = torch.zeros_like(s1)
        for i in range(0, X.shape[0], 8192):
            z = self._shape(X[i:i + 8192]).to(torch.float64)
            wz = z if w is None else z * w[i:i + 8192, None]
            s1 += wz.sum(0)
            s2 += (wz * z).sum(0)
        n = X.shape[0] if w is None else float(w.sum())
        mean = s1 / n
        var = (s2 / n - mean * mean).clamp_min(0)
        std = var.sqrt()
        # spread at the level of the input's rounding is noise, not signal: such a
        # feature would amplify rounding differences (e.g. torch vs ONNX) enormously
        rel = 1e-5 if X.dtype != torch.float64 else 1e-11
        tiny = rel * torch.sqrt(mean * mean + var).clamp_min(1e-30)
        self.mean.copy_(mean)
        self.std.copy_(torch.where(std > tiny, std, torch.ones_like(std)))
        return self

    def _shape(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.scale.dtype)
        if self.transform == "signed_log":
            return torch.asinh(x / self.scale)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self._shape(x) - self.mean) / self.std

    def get_state(self) -> dict[str, Any]:
        buffers = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        return {"transform": self.transform, **buffers}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FeatureScaler:
        mean = torch.as_tensor(state["mean"])
        out = cls(mean.shape[0], state["transform"], dtype=mean.dtype)
        out.load_state_dict({k: torch.as_tensor(state[k]) for k in ("scale", "mean", "std")})
        return out


class SupervisedTagger(ClassifierMixin, Tagger):
    """Shared base of the supervised torch taggers (scikit-learn classifiers).

    Subclasses implement ``_check_params()`` (raise InputError for bad constructor
    arguments), ``_fit(X, y_index, sample_weight)`` (X a tensor, y class indices
    0..K-1, weights (n,) float64 on X's device or None) and ``as_module()`` (a
    ``torch.nn.Module`` mapping raw features (B, F) to the decision function: (B,) logit
    of ``classes_[1]`` for two classes, (B, K) logits otherwise).
    """

    logit_scores = True
    classes_: np.ndarray
    n_features_in_: int

    # -- labels ---------------------------------------------------------------------
    def _encode(self, y: np.ndarray) -> torch.Tensor:
        check_classification_targets(y)
        classes, index = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise InputError(f"y holds only one class ({classes.tolist()}); a tagger needs "
                             "at least two classes")
        self.classes_ = classes
        return torch.as_tensor(index.reshape(-1), dtype=torch.long)

    def _check_params(self) -> None:
        raise NotImplementedError

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> SupervisedTagger:
        """Fit on features X (n, F) and labels y (n,) of two or more classes; returns self.

        ``sample_weight`` (n,): per-jet weights of the loss, the validation loss and the
        input scaling (non-negative; see :func:`check_sample_weight`)."""
        self._check_params()
        Xt, yn = check_fit_input(self, X, y, requires_y=True)
        yi = self._encode(yn).to(Xt.device)
        w = check_sample_weight(sample_weight, Xt.shape[0], Xt.device)
        self._fit(Xt, yi, w)
        self._module = {}  # fitted modules per (device, dtype), filled by the first use
        return self

    def _fit(self, X: torch.Tensor, y: torch.Tensor, sample_weight: torch.Tensor | None
             ) -> None:
        raise NotImplementedError

    def as_module(self) -> torch.nn.Module:
        raise NotImplementedError

    # -- prediction -----------------------------------------------------------------
    def _run(self, X: Any) -> tuple[torch.Tensor, bool]:
        self._check_fitted()
        Xt = check_predict_input(self, X)
        # the fitted module, copied once per (device, dtype) it is asked to run in:
        # float64 features are scored in float64 throughout
        cache = getattr(self, "_module", None)
        if not isinstance(cache, dict):  # taggers built before the cache was a dict
            cache = self._module = {}
        key = (Xt.device, Xt.dtype if Xt.dtype == torch.float64 else None)
        mod = cache.get(key)
        if mod is None:
            mod = copy.deepcopy(self.as_module()).eval().to(Xt.device)
            mod = cache[key] = mod.double() if key[1] is not None else mod
        with torch.no_grad():
            out = torch.cat([mod(Xt[i:i + 65536]) for i in range(0, Xt.shape[0], 65536)])
        return out, not isinstance(X, torch.Tensor)

    def decision_function(self, X: Any):
        """Scores (n,) = logit of ``classes_[1]`` for two classes, else logits (n, K)."""
        out, numpy_out = self._run(X)
        return out.cpu().numpy() if numpy_out else out

    def predict_proba(self, X: Any):
        """Class probabilities, shape (n, K), columns in the order of ``classes_``."""
        out, numpy_out = self._run(X)
        if out.ndim == 1:
            p1 = torch.sigmoid(out)
            out = torch.stack([1 - p1, p1], dim=1)
        else:
            out = torch.softmax(out, dim=1)
        return out.cpu().numpy() if numpy_out else out

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class per jet, as a numpy array of ``classes_`` values."""
        out, _ = self._run(X)
        idx = (out > 0).long() if out.ndim == 1 else out.argmax(dim=1)
        return np.asarray(self.classes_)[idx.cpu().numpy()]
