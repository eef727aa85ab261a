"""Feature families: each a ``torch.nn.Module`` mapping (p4, mask) to (B, num_features).

Every family module exposes ``spec`` (a JSON-serialisable dict, ``family`` included)
so that model files can rebuild the exact same features with :func:`features_from_spec`.

:data:`FEATURE_DEFINITION` numbers the definition of every family (docs/definition.md):
a change that moves any feature value beyond rounding takes a new number, and model
files record the number they were trained with.

* 1: jetace 0.1.0: each constituent's m^2 = E^2 - |p|^2 clamped at 0; the IRC-safe
  Lorentz family kept its l = 1 factors (66 columns at the defaults).
* 2: m^2 with its sign (float32-stored massless constituents are slightly spacelike:
  the features stay covariant for them); the IRC-safe family drops the l = 1 factors,
  which vanish by momentum balance for massless constituents (32 columns). Features of
  timelike and lightlike constituents are unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the plans (jetace.features.plan, .bip_plan) import without torch
    import torch

__all__ = ["features_from_spec", "build_features", "feature_module", "FAMILIES",
           "FEATURE_DEFINITION", "definition_change", "DEFAULT_MAX_PARTICLES"]

FAMILIES = ("bip", "lorentz")
FEATURE_DEFINITION = 2  #: the feature definition this jetace computes (module docstring)
DEFAULT_MAX_PARTICLES = 128  #: constituents fed per jet when a spec names no max_particles


def definition_change(spec: dict[str, Any], definition: int) -> str | None:
    """Why features of ``spec`` computed under ``definition`` cannot stand in for the
    current ones (a sentence), or None where they can: definition 1's features are the
    current ones except on spacelike constituents, where they differ at rounding level
    for float32-stored jets, so such models are migrated as they are, except the
    IRC-safe Lorentz family, whose columns changed."""
    if definition == FEATURE_DEFINITION:
        return None
    if definition == 1 and FEATURE_DEFINITION == 2:
        if spec.get("family") == "lorentz" and spec.get("irc_safe"):
            return ("definition 2 dropped the IRC-safe family's l = 1 columns, which "
                    "vanish by momentum balance for massless constituents")
        return None
    return f"definition {definition} is not known to this jetace"


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


def build_features(spec: Any) -> torch.nn.Module:
    """:func:`features_from_spec`, with an invalid spec (order 0, an unknown option...)
    reported as a :class:`~jetace.errors.JetaceError` naming the spec."""
    from jetace.errors import JetaceError

    try:
        return features_from_spec(dict(spec))
    except JetaceError:
        raise
    except (ValueError, TypeError) as exc:
        raise JetaceError(f"invalid feature options {dict(spec)}: {exc}") from exc


def feature_module(spec: Any) -> tuple[torch.nn.Module, int]:
    """The feature module for ``spec`` and the number of constituents it is fed: the one
    place where jetace turns a spec into a module.

    ``spec`` is a feature spec mapping (``{"family": "bip", "order": 3, "degree": 6,
    "max_particles": 128}``, see :func:`features_from_spec`) or an already built module
    (its ``spec`` attribute, if any, may hold ``max_particles``).
    """
    import torch

    if isinstance(spec, torch.nn.Module):
        module = spec
        max_particles = (getattr(module, "spec", None) or {}).get(
            "max_particles", DEFAULT_MAX_PARTICLES)
    else:
        module = build_features(spec)
        max_particles = spec.get("max_particles", DEFAULT_MAX_PARTICLES)
    return module, int(max_particles)
