"""The protocol every tagger follows, and the registry that model files use.

A tagger is a scikit-learn estimator (:class:`sklearn.base.BaseEstimator` with the mixin
of its kind) on a feature matrix ``X`` of shape (n_jets, n_features): a numpy array (or
anything :func:`sklearn.utils.validation.check_array` takes) or a torch tensor (torch
taggers train on the tensor's device and answer with tensors on it).

* ``__init__`` only stores its arguments; they are checked in ``fit``, so ``clone``,
  ``get_params``/``set_params`` and ``GridSearchCV`` work as for any estimator.
* ``fit(X, y=None, sample_weight=None)`` returns ``self``; learned attributes end in
  ``_``; methods of an unfitted tagger raise :class:`NotFittedError`.
* ``signal_score(X)`` is *the* score that ``jetace evaluate``, ``jetace predict``,
  model files and ONNX exports use, shape (n,) (larger = more signal-like, or more
  anomalous), (n, n_classes) logits for multi-class taggers. For supervised, CWoLa and
  clustering taggers it is ``decision_function``; anomaly detectors follow
  scikit-learn's outlier convention (``decision_function`` and ``score_samples`` larger
  for *normal* jets), so their signal score is ``-score_samples(X)``.
* ``get_state()`` returns a dict of JSON-compatible values, numpy arrays and torch
  tensors that, with :func:`tagger_from_state`, rebuilds an identical fitted tagger.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError as _SklearnNotFitted
from sklearn.utils.validation import check_is_fitted

from jetace.errors import InputError

__all__ = ["Tagger", "TAGGERS", "NotFittedError", "register", "tagger_from_state",
           "renamed_params", "RENAMED_PARAMS"]

TAGGERS: dict[str, type[Tagger]] = {}


class NotFittedError(InputError, _SklearnNotFitted):
    """A tagger used before ``fit``: both jetace's :class:`InputError` (the command line
    prints it) and scikit-learn's ``NotFittedError`` (what its tools expect)."""


class Tagger(BaseEstimator):
    """Base class: subclasses set ``kind`` and implement fit/decision_function/get_state.

    ``fitted_attribute``: the learned attribute whose presence means "fitted" (others,
    such as ``n_features_in_``, are set before a fit that may still fail).
    ``logit_scores``: whether :meth:`signal_score` is the log odds of the signal class
    (supervised taggers), so that a cut at 0 means probability 0.5; anomaly, clustering
    and CWoLa scores only rank jets.
    """

    kind: ClassVar[str] = ""
    logit_scores: ClassVar[bool] = False
    #: the learned attribute that only a completed ``fit`` (or a model file) sets
    fitted_attribute: ClassVar[str] = "module_"

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, self.fitted_attribute)

    def fit(self, X, y=None, sample_weight=None) -> Tagger:
        raise NotImplementedError

    def decision_function(self, X):
        raise NotImplementedError

    def signal_score(self, X):
        """The signal-like score per jet that evaluation and model files use: shape (n,),
        larger = more signal-like (or more anomalous); (n, K) logits for K > 2 classes.
        Numpy in, numpy out; a torch tensor in, a tensor on its device out."""
        return self.decision_function(X)

    def _check_fitted(self) -> None:
        try:
            check_is_fitted(self)
        except _SklearnNotFitted as exc:
            raise NotFittedError(f"{exc} (this {type(self).__name__} is not fitted yet)"
                                 ) from None

    def raw_affine(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(weight (K, F), bias (K,))`` in float64 when :meth:`signal_score` is the
        affine map ``X @ weight.T + bias`` of the raw features (K = 1: the (n,) score),
        else None. Lets scoring fold the tagger into the features
        (:class:`jetace.features.fused.FusedLinear`)."""
        return None

    def get_state(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Tagger:
        raise NotImplementedError


#: constructor arguments renamed since model files were first written: old -> new
#: (``transform`` clashed with scikit-learn's transformer protocol, which takes any
#: estimator with a ``transform`` attribute for a transformer)
RENAMED_PARAMS = {"transform": "scaling"}


def renamed_params(params: dict[str, Any]) -> dict[str, Any]:
    """A copy of stored constructor arguments with old names (:data:`RENAMED_PARAMS`)
    replaced by the current ones, so that model files written before a rename load."""
    return {RENAMED_PARAMS.get(k, k): v for k, v in params.items()}


def register(kind: str):
    """Class decorator: register a :class:`Tagger` subclass under ``kind``."""

    def wrap(cls: type[Tagger]) -> type[Tagger]:
        if kind in TAGGERS and TAGGERS[kind] is not cls:
            raise ValueError(f"tagger kind {kind!r} registered twice")
        cls.kind = kind
        TAGGERS[kind] = cls
        return cls

    return wrap


def tagger_from_state(kind: str, state: dict[str, Any]) -> Tagger:
    """Rebuild a fitted tagger of registered ``kind`` from :meth:`Tagger.get_state` output."""
    import importlib

    from jetace.errors import ModelFileError

    if kind not in TAGGERS:  # the defining module may not be imported yet
        for mod in ("linear", "mlp", "anomaly", "weak", "cluster"):
            try:
                importlib.import_module(f"jetace.taggers.{mod}")
            except ModuleNotFoundError:
                continue
    if kind not in TAGGERS:
        raise ModelFileError(f"unknown tagger kind {kind!r}; known: {', '.join(sorted(TAGGERS))}")
    return TAGGERS[kind].from_state(state)
