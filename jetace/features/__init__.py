"""Feature families: each a ``torch.nn.Module`` mapping (p4, mask) to (B, num_features).

Every family module exposes ``spec`` (a JSON-serialisable dict, ``family`` included)
so that model files can rebuild the exact same features with :func:`features_from_spec`.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["features_from_spec", "FAMILIES"]

FAMILIES = ("bip", "lorentz")


def features_from_spec(spec: dict[str, Any]) -> torch.nn.Module:
    """Build the feature module described by ``spec`` (as returned by ``module.spec``).

    Keys other than ``family`` are the module's constructor arguments; ``max_particles``
    (a reading option stored beside them) is ignored here.
    """
    from jetace.errors import JetaceError

    opts = {k: v for k, v in spec.items() if k not in ("family", "max_particles")}
    family = spec.get("family", "bip")
    if family == "bip":
        from jetace.features.bip import BIPFeatures

        return BIPFeatures(**opts)
    if family == "lorentz":
        from jetace.features.lorentz import LorentzACEFeatures

        return LorentzACEFeatures(**opts)
    raise JetaceError(f"unknown feature family {family!r}; choose one of {', '.join(FAMILIES)}")
