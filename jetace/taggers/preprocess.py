"""Input preparation shared by the supervised taggers.

* :class:`FeatureScaler`: a ``torch.nn.Module`` that maps raw features (B, F) to
  standardised ones, optionally after a signed-log transform that tames the huge
  dynamic range of high body-order products. It is part of every model (and of its
  ONNX graph), so raw features go in and no preprocessing happens outside.
* :class:`SupervisedTagger`: the plumbing of :class:`~jetace.taggers.linear.LinearTagger`
  and :class:`~jetace.taggers.mlp.MLPTagger`: input checks, label encoding,
  ``predict``/``predict_proba`` from the decision function, numpy-in/numpy-out.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from jetace.errors import InputError
from jetace.taggers.base import Tagger

__all__ = ["FeatureScaler", "SupervisedTagger", "as_features", "to_numpy", "TRANSFORMS"]

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


def to_numpy(x: Any) -> np.ndarray:
    """A torch tensor (on any device) or array-like as a numpy array."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


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
    def fit(self, X: torch.Tensor, max_rows_for_scale: int = 20000) -> FeatureScaler:
        """Fit the scales on X (n, F); statistics accumulate in float64."""
        X = X.to(self.mean.device)
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
            s1 += z.sum(0)
            s2 += (z * z).sum(0)
        n = X.shape[0]
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


class SupervisedTagger(Tagger):
    """Shared base of the supervised torch taggers.

    Subclasses implement ``_fit(X, y_index)`` (X a tensor, y class indices 0..K-1) and
    ``as_module()`` (a ``torch.nn.Module`` mapping raw features (B, F) to the decision
    function: (B,) logit of ``classes_[1]`` for two classes, (B, K) logits otherwise).
    """

    logit_scores = True
    classes_: list
    n_features_in_: int

    # -- labels ---------------------------------------------------------------------
    def _encode(self, y: Any, n: int) -> torch.Tensor:
        if y is None:
            raise InputError(f"{type(self).__name__}.fit needs labels y")
        arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        if arr.ndim != 1 or len(arr) != n:
            raise InputError(f"y must have shape ({n},) (one label per jet), got {arr.shape}")
        classes, index = np.unique(arr, return_inverse=True)
        if len(classes) < 2:
            raise InputError(f"y holds a single class ({classes.tolist()}); "
                             "a tagger needs at least two")
        self.classes_ = classes.tolist()
        return torch.as_tensor(index, dtype=torch.long)

    def fit(self, X: Any, y: Any = None, **kwargs) -> SupervisedTagger:
        """Fit on features X (n, F) and labels y (n,) of two or more classes; returns self."""
        Xt = as_features(X)
        yi = self._encode(y, Xt.shape[0]).to(Xt.device)
        self.n_features_in_ = int(Xt.shape[1])
        self._fit(Xt, yi, **kwargs)
        self._module = None
        return self

    def _fit(self, X: torch.Tensor, y: torch.Tensor, **kwargs) -> None:
        raise NotImplementedError

    def as_module(self) -> torch.nn.Module:
        raise NotImplementedError

    # -- prediction -----------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise InputError(f"this {type(self).__name__} is not fitted yet; call fit first")

    def _run(self, X: Any) -> tuple[torch.Tensor, bool]:
        self._check_fitted()
        Xt = as_features(X)
        if Xt.shape[1] != self.n_features_in_:
            raise InputError(f"X has {Xt.shape[1]} features, the tagger was fitted on "
                             f"{self.n_features_in_}")
        # the fitted module, copied once per (device, dtype) it is asked to run in:
        # float64 features are scored in float64 throughout
        cache = getattr(self, "_module", None)
        if not isinstance(cache, dict):
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
        out, to_numpy = self._run(X)
        return out.cpu().numpy() if to_numpy else out

    def predict_proba(self, X: Any):
        """Class probabilities, shape (n, K), columns in the order of ``classes_``."""
        out, to_numpy = self._run(X)
        if out.ndim == 1:
            p1 = torch.sigmoid(out)
            out = torch.stack([1 - p1, p1], dim=1)
        else:
            out = torch.softmax(out, dim=1)
        return out.cpu().numpy() if to_numpy else out

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class per jet, as a numpy array of ``classes_`` values."""
        out, _ = self._run(X)
        idx = (out > 0).long() if out.ndim == 1 else out.argmax(dim=1)
        return np.asarray(self.classes_)[idx.cpu().numpy()]
