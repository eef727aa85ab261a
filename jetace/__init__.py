"""jetace: Atomic Cluster Expansion features for jet tagging.

Lorentz- and boost-invariant polynomial features of jet constituents, computed with
torch on CPU or GPU, feeding linear or small-MLP taggers.

The public names below are imported lazily, so ``import jetace`` stays cheap and a
command that only reads files never pays for the feature or tagger modules.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "read_jets": "jetace.io",
    "iterate_jets": "jetace.io",
    "to_padded": "jetace.io",
    "to_packed": "jetace.io",
    "Schema": "jetace.io",
    "JETCLASS": "jetace.io",
    "BIPFeatures": "jetace.features.bip",
    "LorentzACEFeatures": "jetace.features.lorentz",
    "features_from_spec": "jetace.features",
    "LinearTagger": "jetace.taggers.linear",
    "MLPTagger": "jetace.taggers.mlp",
    "ACETransformer": "jetace.transformers",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jetace' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
