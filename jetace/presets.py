"""Training presets: the defaults of each training mode, in one place.

Three modes, each a :class:`Preset` (data only): :data:`SUPERVISED` (``jetace train
--signal/--background`` or ``--inputs/--labels``: :func:`jetace.training.train_model`),
:data:`WEAK` (CWoLa, ``--mixture-a/--mixture-b``: :func:`jetace.training.train_cwola`)
and :data:`ANOMALY` (anomaly detection and clustering, ``--unsupervised METHOD``:
:func:`jetace.training.train_unsupervised`). A preset holds the mode's default feature
spec, its held-out validation fraction, the taggers it trains and the parameters it
gives them over their own constructor defaults. :mod:`jetace.training` takes its
defaults from here and the ``jetace train`` command reads them (defaults and help
texts); neither decides them again. Everything here is plain data and pure functions:
importing this module imports no feature or tagger code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from jetace.errors import InputError

__all__ = ["Preset", "SUPERVISED", "WEAK", "ANOMALY", "PRESETS", "SUPERVISED_SPEC",
           "WEAK_SPEC", "ANOMALY_SPEC", "UNSUPERVISED", "preset", "mode_of",
           "default_spec", "tagger_params", "complete_spec"]

#: Default features of supervised training: 694 mirror-symmetrised BIP(4,7) columns.
SUPERVISED_SPEC: Mapping[str, Any] = MappingProxyType(
    {"family": "bip", "order": 4, "degree": 7, "mirror": True, "max_particles": 128})
#: Default features of CWoLa training (and, of fewer constituents, of anomaly detection
#: and clustering): 178 mirror-symmetrised BIP(3,6) columns. Density estimates and weak
#: labels do better with fewer dimensions (benchmarks/unsupervised.py: best anomaly AUC
#: 0.952 against 0.948 on BIP(4,7); CWoLa at 0.2 vs 0.05 0.975 against 0.973).
WEAK_SPEC: Mapping[str, Any] = MappingProxyType({**SUPERVISED_SPEC, "order": 3, "degree": 6})
#: Default features of anomaly detection and clustering: :data:`WEAK_SPEC` of each jet's
#: 32 hardest constituents. A density of QCD jets captures their hard structure better
#: without the soft tail (about half of a 600 GeV jet's particles, the part that
#: fluctuates most and is least well modelled). Top vs QCD, default ensemble fitted on
#: QCD jets only: AUC 0.955 against 0.952 with 128 constituents (mean over five folds of
#: the development files), 0.956-0.960 against 0.949-0.952 on three independently
#: generated samples; clustering 0.921 against 0.910 (benchmarks/unsupervised.py).
ANOMALY_SPEC: Mapping[str, Any] = MappingProxyType({**WEAK_SPEC, "max_particles": 32})


@dataclass(frozen=True)
class Preset:
    """The defaults of one training mode.

    ``spec``: default feature spec; ``val_fraction``: default held-out fraction of the
    validation check (the saved model is refitted on all jets); ``models``: the tagger
    kinds the mode trains (for CWoLa: its inner classifiers), ``model`` the default one
    of the library functions (``jetace train --unsupervised`` names its method);
    ``tagger_params``: per tagger kind, the parameters the
    mode sets over the tagger's own defaults (an absent kind, or an empty mapping: the
    tagger's constructor defaults as they are, e.g. :class:`jetace.taggers.mlp.MLPTagger`).
    """

    mode: str
    spec: Mapping[str, Any]
    val_fraction: float
    models: tuple[str, ...]
    model: str
    tagger_params: Mapping[str, Mapping[str, Any]]


_LINEAR = MappingProxyType({"method": "logistic"})

SUPERVISED = Preset("supervised", SUPERVISED_SPEC, 0.2, ("linear", "mlp"), "linear",
                    MappingProxyType({"linear": _LINEAR, "mlp": MappingProxyType({})}))
#: CWoLa: a classifier of mixture A against mixture B, with the supervised taggers'
#: parameters (:class:`jetace.taggers.weak.CWoLaTagger` itself sets its linear
#: classifier's C to "auto" unless given)
WEAK = Preset("weak", WEAK_SPEC, 0.2, ("linear", "mlp"), "linear", SUPERVISED.tagger_params)
#: anomaly scores fitted on background jets (gaussian, gmm, autoencoder, ensemble) and
#: clustering of an unlabelled sample (cluster); no held-out check by default
ANOMALY = Preset("anomaly", ANOMALY_SPEC, 0.0,
                 ("gaussian", "gmm", "autoencoder", "ensemble", "cluster"), "gaussian",
                 MappingProxyType({}))
PRESETS: Mapping[str, Preset] = MappingProxyType(
    {p.mode: p for p in (SUPERVISED, WEAK, ANOMALY)})
#: the unsupervised methods (tagger kinds) of :data:`ANOMALY`
UNSUPERVISED = ANOMALY.models


def preset(mode: str) -> Preset:
    """The :class:`Preset` of ``mode``: "supervised", "weak" or "anomaly"."""
    try:
        return PRESETS[mode]
    except KeyError:
        raise InputError(f"unknown training mode {mode!r}; choose one of "
                         f"{', '.join(PRESETS)}") from None


def mode_of(method: str) -> str:
    """The training mode of a method name: an unsupervised method (:data:`UNSUPERVISED`)
    is "anomaly", "cwola" (or "cwola-<model>") "weak", anything else "supervised"."""
    if method in UNSUPERVISED:
        return "anomaly"
    return "weak" if method == "cwola" or method.startswith("cwola-") else "supervised"


def default_spec(mode: str, model: str | None = None) -> dict[str, Any]:
    """A fresh copy of the default feature spec of ``mode`` (the same for every tagger
    ``model`` of the mode; a model the mode does not train is an :class:`InputError`)."""
    p = preset(mode)
    if model is not None and model not in p.models:
        raise InputError(f"{mode} training has no model {model!r}; choose one of "
                         f"{', '.join(p.models)}")
    return dict(p.spec)


def tagger_params(mode: str, model: str) -> dict[str, Any]:
    """A fresh copy of the parameters ``mode`` gives tagger ``model`` over its own
    constructor defaults (empty: the tagger's defaults)."""
    return dict(preset(mode).tagger_params.get(model, {}))


def complete_spec(mode: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` with the defaults of ``mode`` for what it leaves unset: a bip spec
    without ``order`` and ``degree`` takes both, and one without ``max_particles`` that
    too (a spec that sets either of order and degree keeps the family's default of the
    other)."""
    default = preset(mode).spec
    out = dict(spec)
    if out.get("family", "bip") == "bip" and "order" not in out and "degree" not in out:
        out.update(order=default["order"], degree=default["degree"])
    out.setdefault("max_particles", default["max_particles"])
    return out
