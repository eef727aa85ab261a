"""The protocol every tagger follows, and the registry that model files use.

A tagger is a scikit-learn style estimator on a feature matrix ``X`` of shape
(n_jets, n_features) (numpy array or torch tensor; torch taggers train on ``X``'s device):

* ``fit(X, y=None, ...)`` returns ``self``; learned attributes end in ``_``.
* ``decision_function(X)`` returns a score per jet, shape (n,) for binary and
  unsupervised taggers (larger = more signal-like, or more anomalous), (n, n_classes)
  for multi-class ones.
* ``get_state()`` returns a dict of JSON-compatible values, numpy arrays and torch
  tensors that, with :func:`tagger_from_state`, rebuilds an identical fitted tagger.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch

__all__ = ["Tagger", "TAGGERS", "register", "tagger_from_state"]

TAGGERS: dict[str, type[Tagger]] = {}


class Tagger:
    """Base class: subclasses set ``kind`` and implement fit/decision_function/get_state.

    ``logit_scores``: whether ``decision_function`` is the log odds of the signal class
    (supervised taggers), so that a cut at 0 means probability 0.5; anomaly, clustering
    and CWoLa scores only rank jets.
    """

    kind: ClassVar[str] = ""
    logit_scores: ClassVar[bool] = False

    def fit(self, X, y=None, **kwargs) -> Tagger:
        raise NotImplementedError

    def decision_function(self, X):
        raise NotImplementedError

    def raw_affine(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(weight (K, F), bias (K,))`` in float64 when ``decision_function(X)`` is the
        affine map ``X @ weight.T + bias`` of the raw features (K = 1: the (n,) score),
        else None. Lets scoring fold the tagger into the features
        (:class:`jetace.features.fused.FusedLinear`)."""
        return None

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments (scikit-learn convention): every tagger stores each
        ``__init__`` argument under an attribute of the same name."""
        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        return {n: getattr(self, n) for n in names}

    def get_state(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Tagger:
        raise NotImplementedError


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
