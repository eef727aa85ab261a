"""Particle identity as channel weights: which species a constituent belongs to.

A species channel gives every constituent a weight; a species-aware feature family pools
its one-particle basis once per channel (docs/definition.md, section 2.9). Channel 0 is
always "all" (weight 1 for every constituent: the kinematic family); the channels named
by the user follow it.

The weights come from per-constituent fields of the jets (record fields of
:func:`jetace.io.read_jets`, see :mod:`jetace.schema`): either a PDG id ``pid`` with the
electric ``charge`` (jetace's generated files: ``part_pid``, ``part_charge``) or the
JetClass flags ``is_charged_hadron``, ``is_neutral_hadron``, ``is_photon``,
``is_electron``, ``is_muon`` with ``charge`` (``part_isChargedHadron``, ...). A schema
can map other branches onto these field names.

========================  =====================================  ==========================
channel                   from pid and charge                    from JetClass flags
========================  =====================================  ==========================
``charge``                charge (-1, 0, +1 in units of e)       charge
``charged_hadron``        charge != 0 and not e, mu              is_charged_hadron
``neutral_hadron``        charge == 0 and not a photon           is_neutral_hadron
``photon``                pid == 22                              is_photon
``electron``              abs(pid) == 11                         is_electron
``muon``                  abs(pid) == 13                         is_muon
``lepton``                electron or muon                       is_electron + is_muon
========================  =====================================  ==========================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import awkward as ak
import numpy as np
import torch

from jetace.errors import InputError

__all__ = ["SPECIES", "DEFAULT_SPECIES", "FLAG_FIELDS", "SPECIES_WEIGHTS", "check_species",
           "check_species_weight", "store_species_settings", "identity_source",
           "species_columns", "channel_mixing", "input_hint"]

FLAG_FIELDS = ("is_charged_hadron", "is_neutral_hadron", "is_photon", "is_electron",
               "is_muon")
#: the species channels of ``BIPFeatures(species="default")``
DEFAULT_SPECIES = ("charge", "charged_hadron", "neutral_hadron", "photon", "lepton")

Fields = Mapping[str, np.ndarray]


def _pid(f: Fields) -> np.ndarray:
    return np.abs(f["pid"].astype(np.int64))


def _lepton_pid(f: Fields) -> np.ndarray:
    return np.isin(_pid(f), (11, 13))


#: channel -> (weight from pid and charge, weight from the JetClass flags and charge)
SPECIES: dict[str, tuple[Callable[[Fields], np.ndarray], Callable[[Fields], np.ndarray]]] = {
    "charge": (lambda f: f["charge"], lambda f: f["charge"]),
    "charged_hadron": (lambda f: (f["charge"] != 0) & ~_lepton_pid(f),
                       lambda f: f["is_charged_hadron"]),
    "neutral_hadron": (lambda f: (f["charge"] == 0) & (_pid(f) != 22),
                       lambda f: f["is_neutral_hadron"]),
    "photon": (lambda f: _pid(f) == 22, lambda f: f["is_photon"]),
    "electron": (lambda f: _pid(f) == 11, lambda f: f["is_electron"]),
    "muon": (lambda f: _pid(f) == 13, lambda f: f["is_muon"]),
    "lepton": (_lepton_pid, lambda f: f["is_electron"].astype(bool) | f["is_muon"].astype(bool)),
}


def check_species(species: str | Sequence[str] | None) -> tuple[str, ...]:
    """The channel names of a species setting: None or () for none, "default" for
    :data:`DEFAULT_SPECIES`, or names of :data:`SPECIES` (no repeats)."""
    if species is None:
        return ()
    if isinstance(species, str):
        species = DEFAULT_SPECIES if species == "default" else tuple(
            s.strip() for s in species.split(",") if s.strip())
    names = tuple(str(s) for s in species)
    unknown = [s for s in names if s not in SPECIES]
    if unknown:
        raise ValueError(f"unknown species channel(s) {unknown}; choose from "
                         f"{', '.join(SPECIES)} (or 'default')")
    if len(set(names)) != len(names):
        raise ValueError(f"species channels repeat: {list(names)}")
    return names


#: how a species channel weights its constituents: "radial", the channel weight times the
#: family's own radial weight (t_M in bip, ln(1 + E*) in lorentz), or "count", the channel
#: weight alone (its pooled sums count the channel's constituents, by momentum fraction
#: and angle; docs/definition.md, section 2.13)
SPECIES_WEIGHTS = ("radial", "count")


def check_species_weight(species_weight: str) -> str:
    """``species_weight`` if it is one of :data:`SPECIES_WEIGHTS`, else ValueError."""
    if species_weight not in SPECIES_WEIGHTS:
        raise ValueError(f"species_weight must be one of {SPECIES_WEIGHTS}, "
                         f"got {species_weight!r}")
    return str(species_weight)


def store_species_settings(module: object, species: str | Sequence[str] | None,
                           channel_mode: str, rank: int, mixing_seed: int,
                           species_weight: str) -> None:
    """Check and store a feature module's species settings as its attributes
    ``species``, ``channel_mode``, ``rank``, ``mixing_seed`` and ``species_weight``
    (those its spec writes back)."""
    module.species = check_species(species)
    module.channel_mode, module.rank = str(channel_mode), int(rank)
    module.mixing_seed = int(mixing_seed)
    module.species_weight = check_species_weight(species_weight)


def input_hint(species: Sequence[str]) -> str:
    """What a species-aware module's input holds, for its shape errors ("" without)."""
    if not species:
        return ""
    return (f" (momenta, then the weights of the species channels {list(species)}: "
            "jetace.to_padded(jets, species=module.species) gives them)")


def identity_source(fields: Sequence[str], species: Sequence[str], where: str = "jets"
                    ) -> tuple[int, tuple[str, ...]]:
    """Which identity fields the weights of ``species`` come from: (0, pid and charge) or
    (1, charge and the JetClass flags); InputError naming ``where`` when neither set is
    among ``fields`` (per-constituent record fields)."""
    have = set(fields)
    if {"pid", "charge"} <= have:
        return 0, ("pid", "charge")
    if {"charge", *FLAG_FIELDS} <= have:
        return 1, ("charge", *FLAG_FIELDS)
    other = sorted(have - {"px", "py", "pz", "energy"})
    raise InputError(f"{where}: species channels {list(species)} need per-constituent "
                     "particle identity: fields 'pid' and 'charge' (branches part_pid, "
                     "part_charge) or 'charge' and the JetClass flags "
                     f"{', '.join(FLAG_FIELDS)}; these jets have "
                     f"{other or 'no per-constituent field besides the momenta'} "
                     "(map other branches with a schema's 'extras')")


def species_columns(constituents: ak.Array, species: Sequence[str],
                    where: str = "jets") -> list[np.ndarray]:
    """Flat per-constituent weights (float64, stored order), one array per channel.

    ``constituents``: jagged constituents (records with the identity fields, see the
    module docstring). Raises InputError naming ``where`` and the missing fields when
    the jets carry no particle identity.
    """
    source, names = identity_source(ak.fields(constituents), species, where)
    flat = {n: np.asarray(ak.to_numpy(ak.flatten(constituents[n], axis=1))) for n in names}
    out = []
    for name in species:
        w = np.asarray(SPECIES[name][source](flat), dtype=np.float64)
        if not np.isfinite(w).all():
            raise InputError(f"{where}: non-finite particle identity for species {name!r}")
        out.append(w)
    return out


def channel_mixing(shape: tuple[int, int], rank: int, seed: int) -> torch.Tensor:
    """The fixed mixing of species channels into product channels, (order x rank, C),
    float64: per body order, the first mixture is channel 0 ("all", so the kinematic
    features are among the outputs) and the others are seeded Gaussian rows / sqrt(C)."""
    n_out, n_in = shape
    gen = torch.Generator().manual_seed(int(seed))
    mix = torch.randn(n_out, n_in, generator=gen, dtype=torch.float64) / n_in ** 0.5
    mix[::rank] = 0.0
    mix[::rank, 0] = 1.0
    return mix
