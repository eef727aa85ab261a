"""Exactly Lorentz-invariant ACE features: the ``lorentz`` feature family.

Construction, per jet with constituents p_j = (E_j, vec p_j) (docs/definition.md,
section 3):

1. P = sum_j p_j, M^2 = P.P. Every constituent is boosted to the jet rest frame. Its
   energy fraction there, x_j = E*_j / M = p_j.P / M^2 (sum_j x_j = 1), is a Lorentz
   invariant; its rest-frame direction n_j changes under a Lorentz transformation of the
   lab frame only by a rotation (the Wigner rotation of the jet rest frame).
2. One-particle basis phi_{k,l,m}(j) = w_j R_k(j) Y_lm(n_j): real spherical harmonics
   Y_lm (Racah-normalised, :mod:`jetace.features.angular`) times a radial part.
   Default: w_j = ln(1 + E*_j / GeV) (``weight="log"``; ``"none"``: w_j = 1) and
   R_k = T_k(u_j), Chebyshev polynomials k = 0..n_radial-1 of the log rest-frame energy
   u_j = clip((ln(E*_j / GeV) - U_SHIFT) / U_SCALE, -1, 1); E*_j is Lorentz invariant
   and carries the jet mass (sum_j E*_j = M), which a dimensionless x_j alone would not.
   ``irc_safe=True``: w_j = x_j, a single radial function R = 1 and l >= 2 only
   (A_00 = sum_j x_j = 1 is constant; A_1m = sum_j x_j n_j is the rest-frame momentum
   balance sum_j p*_j / M = 0 for massless constituents, and of order m_j^2 / (E*_j M)
   for massive ones: near zero by construction, rounding noise in float32. Both are
   dropped, and with them every product they would enter).
3. A_{k,l,m} = sum_j phi_{k,l,m}(j) (pooled over real constituents).
4. Features: products of nu = 1..order pooled vectors A_{a_t} (labels a_t = (k_t, l_t),
   sorted multisets with sum_t (k_t + l_t) <= degree, l_t <= lmax, sum_t l_t even)
   coupled to rotation scalars:
     nu = 1: A_{k,0,0};
     nu = 2: sum_m A_{a,m} A_{b,m} (l_a = l_b);
     nu = 3: sum_{m} C^{l1 l2 l3}_{m1 m2 m3} A_{a1,m1} A_{a2,m2} A_{a3,m3};
     nu = 4: sum_M B^{L}_{a1 a2, M} B^{L}_{a3 a4, M} for every intermediate L allowed by
             both triangles, with B^{L}_{ab, M} = sum C^{l_a l_b L}_{m1 m2 M} A_{a,m1} A_{b,m2}.
   C are real-basis Clebsch-Gordan tensors. Couplings of a multiset with repeated labels
   that are linearly dependent after symmetrisation (e.g. odd L for two equal labels)
   are dropped, so no column is a multiple or combination of others of its multiset.
   Only parity-even scalars are formed (O(3) invariants); parity-odd ones (triple
   products), also invariant under proper Lorentz transformations, are left out.

Why spherical harmonics rather than Cartesian tensors (CACE, arXiv:2402.07472): the
harmonics give an orthogonal, non-redundant angular basis: rank-l Cartesian moments
sum_j w_j n_j^{(x) l} contain the lower degrees l-2, l-4, ... again (traces), so their
contractions repeat information, and relations among them must be pruned by hand. With
harmonics, the number of invariants of a multiset is the known multiplicity of the
scalar in the tensor product, each feature has a definite angular degree, the
body-order-2 energy-weighted features *are* the Fox-Wolfram moments (addition theorem
sum_m Y_lm(a) Y_lm(b) = P_l(a.b)), and the coupling is two sparse bilinear stages with
index tables built once at construction.

Feature counts (checked by the tests; keyword arguments not given take their defaults):
    order=4, degree=10, lmax=4, n_radial=6: 1198  (the default)
    order=4, degree=8:                       486
    order=3, degree=8:                       205
    irc_safe=True (degree=12, lmax=8):        32
    irc_safe=True, degree=8:                   7

Cost model, per jet with P constituents: kinematics and harmonics O(P (lmax+1)^2);
pooling O(P n_radial (lmax+1)^2) (one batched matmul); pair couplings O(T_2) and the
products O(T_F), where T_2 and T_F (attributes ``n_pair_terms``, ``n_feature_terms``)
are the numbers of non-zero coupling terms; with the defaults T_2 = 3948 and T_F = 3914,
independent of P. A batch is a fixed number of tensor operations whatever the count.

Invariance is exact up to rounding: kinematics use cancellation-free forms (below), so
float64 features are invariant to ~1e-12 relative under boosts with gamma ~ 10-100.
Stable kinematics: with a = P/|P| the jet axis, p_par = vec p_j . a and
t_j = E_j - p_par (computed as (m_j^2 + p_perp^2) / (E_j + p_par) when p_par > 0),
    M^2 = (E + |P|) sum_j t_j,
    x_j = E_j / (E + |P|) + |P| t_j / M^2,
    M p*_par,j = E_j M^2 / (E + |P|) - E t_j,   p*_perp,j = p_perp,j,
sums of non-negative terms except the last one, whose terms are each accurate.

Degenerate jets (documented fallback, never NaN): a jet with M^2 <= RESOLVED_EPS * eps *
E^2 (eps the dtype's machine epsilon; e.g. all constituents collinear and massless, or a
single constituent) is treated as if every constituent were at rest in a common frame:
x_j = E_j / E, E*_j = x_j M (may be 0) and direction n_j = 0 (so Y_lm = 0 for l >= 1).
For collinear massless constituents these x_j are themselves Lorentz invariant. A
constituent at rest in the jet frame (|p*_j| = 0) also gets n_j = 0. A jet with no
constituents gives all-zero features. Padded entries (mask False) contribute nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import NamedTuple

import numpy as np
import torch

from jetace.basis import chebyshev
from jetace.features.angular import real_coupling, real_spherical_harmonics
from jetace.features.plan import enumerate_multisets, optional_spec, parse_selection
from jetace.species import channel_mixing, input_hint, store_species_settings

__all__ = ["LorentzACEFeatures", "RestFrame", "rest_frame", "column_meta", "U_SHIFT",
           "U_SCALE", "RESOLVED_EPS", "COLUMN_PROPERTIES"]

U_SHIFT, U_SCALE = 0.0, 5.0  #: u = (ln(E* / GeV) - U_SHIFT) / U_SCALE, clipped to [-1, 1]
RESOLVED_EPS = 16.0  #: jets with M^2 <= RESOLVED_EPS * eps * E^2 use the fallback
COLUMN_PROPERTIES = ("nu", "d", "k", "l", "L")  #: what a selection may compare
_RANK_TOL = 1e-9


class RestFrame(NamedTuple):
    """Jet rest-frame quantities: ``x`` (B, P) energy fractions E*_j / M, ``direction``
    (B, P, 3) unit rest-frame directions (zero where undefined), ``mass2`` (B,) M^2 in
    GeV^2, ``resolved`` (B,) bool, False for jets that use the documented fallback."""

    x: torch.Tensor
    direction: torch.Tensor
    mass2: torch.Tensor
    resolved: torch.Tensor


def rest_frame(p4: torch.Tensor, mask: torch.Tensor) -> RestFrame:
    """Energy fractions and directions of constituents in the jet rest frame.

    ``p4`` (B, P, 4) (E, px, py, pz) in GeV, ``mask`` (B, P) bool. Uses the
    cancellation-free forms and the fallback of the module docstring. Device, dtype: p4's.
    """
    m = mask.to(p4.dtype)
    e, px, py, pz = (c * m for c in p4.unbind(-1))  # (B, P) each
    e_jet = e.sum(1, keepdim=True)  # (B, 1)
    jx, jy, jz = px.sum(1, keepdim=True), py.sum(1, keepdim=True), pz.sum(1, keepdim=True)
    p_abs = torch.sqrt(jx * jx + jy * jy + jz * jz)
    has_p = p_abs > 0
    inv = 1.0 / torch.where(has_p, p_abs, 1.0)
    ax, ay, az = jx * inv, jy * inv, torch.where(has_p, jz * inv, 1.0)  # e_z if P = 0
    p_par = px * ax + py * ay + pz * az
    qx, qy, qz = px - p_par * ax, py - p_par * ay, pz - p_par * az  # p_perp
    perp2 = qx * qx + qy * qy + qz * qz
    pj2 = px * px + py * py + pz * pz
    # m_j^2 with its sign (definition 2): float32-stored massless constituents are often
    # slightly spacelike, and m_j^2 + p_perp^2 = E^2 - p_par^2 holds for either sign, so
    # t = p_j.(1, -axis) stays exact; it may then be slightly negative (a spacelike
    # constituent within ~|m_j| of the axis), which the sums below take as it is
    m2j = (e - torch.sqrt(pj2)) * (e + torch.sqrt(pj2))
    fwd = p_par > 0
    t = torch.where(fwd, (m2j + perp2) / torch.where(fwd, e + p_par, 1.0), e - p_par) * m
    mass2 = (e_jet + p_abs) * t.sum(1, keepdim=True)  # (B, 1)
    eps = torch.finfo(p4.dtype).eps
    resolved = (mass2 > RESOLVED_EPS * eps * e_jet * e_jet) & (e_jet > 0)
    safe_m2 = torch.where(resolved, mass2, 1.0)
    ep = (e_jet + p_abs).clamp_min(torch.finfo(p4.dtype).tiny)
    x_res = e / ep + p_abs * t / safe_m2
    x_fb = e / torch.where(e_jet > 0, e_jet, 1.0)
    x = torch.where(resolved, x_res, x_fb)
    # M * p*_j = mp_par * axis + M * p_perp: the common factor M drops out of the direction
    mp_par = e * (safe_m2 / ep) - e_jet * t
    mass = torch.sqrt(safe_m2)
    dx, dy, dz = mp_par * ax + mass * qx, mp_par * ay + mass * qy, mp_par * az + mass * qz
    norm = torch.sqrt(dx * dx + dy * dy + dz * dz)
    # at rest within the rounding of its terms (e.g. the constituent of a one-particle jet)
    noise = 64 * eps * (e * (safe_m2 / ep) + e_jet * t.abs() + mass * torch.sqrt(perp2))
    ok = (norm > noise) & resolved & mask
    scale = torch.where(ok, 1.0 / torch.where(ok, norm, 1.0), 0.0)
    direction = torch.stack([dx * scale, dy * scale, dz * scale], dim=-1)
    return RestFrame(x, direction, mass2[:, 0], resolved[:, 0])


# ---------------------------------------------------------------------------------------
# construction-time plan


def _label_table(degree: int, lmax: int, n_radial: int, irc_safe: bool) -> list[tuple[int, int]]:
    """One-particle labels (k, l), ordered by k + l, then l, then k."""
    if irc_safe:
        # l = 0: A = sum_j x_j = 1; l = 1: A_1m = sum_j x_j n_j, zero for massless
        # constituents (rest-frame momentum balance), so mostly rounding noise in float32
        labels = [(0, l) for l in range(2, min(lmax, degree) + 1)]
    else:
        labels = [(k, l) for k in range(n_radial) for l in range(lmax + 1) if k + l <= degree]
    return sorted(labels, key=lambda a: (a[0] + a[1], a[1], a[0]))


def _couplings(ls: tuple[int, ...]) -> list[int]:
    """Candidate intermediate degrees L for a sorted tuple of angular degrees (see module)."""
    if sum(ls) % 2:
        return []
    if len(ls) == 1:
        return [0] if ls[0] == 0 else []
    if len(ls) == 2:
        return [0] if ls[0] == ls[1] else []
    if len(ls) == 3:
        return [ls[2]] if abs(ls[0] - ls[1]) <= ls[2] <= ls[0] + ls[1] else []
    lo = max(abs(ls[0] - ls[1]), abs(ls[2] - ls[3]))
    hi = min(ls[0] + ls[1], ls[2] + ls[3])
    return list(range(lo, hi + 1))


def _coupled_value(ls: tuple[int, ...], big_l: int, vecs: list[np.ndarray]) -> float:
    """A coupled product (module docstring, step 4) of the given one-particle vectors."""
    if len(ls) == 1:
        return float(vecs[0][0])
    if len(ls) == 2:
        return float(vecs[0] @ vecs[1])
    left = np.einsum("abM,a,b->M", real_coupling(ls[0], ls[1], big_l), vecs[0], vecs[1])
    if len(ls) == 3:
        return float(left @ vecs[2])
    return float(left @ np.einsum("abM,a,b->M", real_coupling(ls[2], ls[3], big_l),
                                  vecs[2], vecs[3]))


@cache
def _independent_couplings(ls: tuple[int, ...], pattern: tuple[int, ...]) -> tuple[int, ...]:
    """Intermediate degrees whose coupled products are linearly independent as functions
    of the pooled vectors, where equal labels (``pattern[i]``: first position equal to
    position i) get equal vectors. Decided by the rank of their values at random points."""
    cands = _couplings(ls)
    if len(cands) <= 1 and len(set(pattern)) == len(pattern):
        return tuple(cands)
    rng = np.random.default_rng(0)
    n_points = 2 * len(cands) + 4
    values = np.empty((len(cands), n_points))
    for p in range(n_points):
        draws = {i: rng.normal(size=2 * ls[i] + 1) for i in set(pattern)}
        vecs = [draws[pattern[i]] for i in range(len(ls))]
        values[:, p] = [_coupled_value(ls, big_l, vecs) for big_l in cands]
    keep: list[int] = []
    for i, big_l in enumerate(cands):
        rows = values[[cands.index(b) for b in keep] + [i]]  # coefficients are O(1)
        sv = np.linalg.svd(rows, compute_uv=False)
        if sv[-1] > _RANK_TOL * sv[0]:
            keep.append(big_l)
    return tuple(keep)


def _enumerate(labels: list[tuple[int, int]], order: int, degree: int,
               reduced: tuple[int, int] | None = None) -> list[tuple[tuple[int, ...], int]]:
    """(sorted label-index multiset, intermediate L) for every feature, by body order:
    the multisets of :func:`jetace.features.plan.enumerate_multisets` (degree k + l per
    label) that have an independent coupling, each with its couplings in order.
    ``reduced = (n_kin, rank)`` for tensor-reduced species channels: ``labels`` are
    product channels of n_kin labels each, channel p serving body order p // rank + 1,
    and a multiset takes all its labels from one product channel of its own order."""

    def couplings(ms: tuple[int, ...]) -> tuple[int, ...]:
        ls = tuple(labels[i][1] for i in ms)
        return _independent_couplings(ls, tuple(ms.index(i) for i in ms))

    def fits(ms: tuple[int, ...], complete: bool) -> bool:
        if reduced is None:
            return True
        n_kin, rank = reduced
        size = ms[0] // n_kin // rank + 1  # the body order of the first label's channel
        same = ms[-1] // n_kin == ms[0] // n_kin
        return same and (len(ms) == size if complete else len(ms) <= size)

    multisets = enumerate_multisets(
        [k + l for k, l in labels], order, degree, prune=lambda ms, _: fits(ms, False),
        keep=lambda ms: fits(ms, True) and bool(couplings(ms)))
    return [(ms, big_l) for ms in multisets for big_l in couplings(ms)]


def column_meta(labels: list[tuple[int, int]], term: tuple[tuple[int, ...], int]
                ) -> dict[str, int]:
    """Metadata of a feature (label multiset, L) for selection: ``nu`` body order, ``d``
    degree sum(k + l), ``k`` and ``l`` the sums of the radial and angular degrees, ``L``
    the intermediate degree of a 4-body coupling (0 otherwise)."""
    ms, big_l = term
    ks, ls = [labels[i][0] for i in ms], [labels[i][1] for i in ms]
    return {"nu": len(ms), "d": sum(ks) + sum(ls), "k": sum(ks), "l": sum(ls),
            "L": big_l if len(ms) == 4 else 0}


class LorentzACEFeatures(torch.nn.Module):
    """Exactly Lorentz-invariant ACE features of jets (see the module docstring).

    Parameters
    ----------
    order : int
        Maximal body order (number of pooled factors in a product), 1..4.
    degree : int
        Maximal total degree sum_t (k_t + l_t) of a product (k radial, l angular).
        ``None``: 10, or 12 with ``irc_safe``.
    lmax : int
        Maximal angular degree of a single factor. ``None``: 4, or 8 with ``irc_safe``.
    n_radial : int
        Number of radial Chebyshev functions (ignored with ``irc_safe``).
    weight : {"log", "none"}
        One-particle weight w_j = ln(1 + E*_j / GeV) or 1 (ignored with ``irc_safe``).
    irc_safe : bool
        Energy-weighted, infrared and collinear safe variant: w_j = x_j, angular
        functions only; its body-order-2 features sum_ij x_i x_j P_l(cos theta*_ij) are
        the rest-frame Fox-Wolfram moments H_l (energy-weighted).
    select : str or list of str, optional
        Keep only the features whose metadata (:func:`column_meta`: ``nu``, ``d``,
        ``k``, ``l``, ``L``) pass every clause, e.g. ``"nu<=3"``; as for BIPFeatures.

    ``forward(p4, mask)``: ``p4`` (B, P, 4) constituents (E, px, py, pz) in GeV, ``mask``
    (B, P) bool (padded entries False); returns (B, num_features) on p4's device and in
    p4's dtype (float32 or float64); numpy arrays in: computed on the CPU, numpy out.
    """

    def __init__(self, order: int = 4, degree: int | None = None, lmax: int | None = None,
                 n_radial: int = 6, irc_safe: bool = False, weight: str = "log",
                 select: str | Sequence[str] | None = None,
                 species: str | Sequence[str] | None = None, channel_mode: str = "reduced",
                 rank: int = 2, mixing_seed: int = 0, species_weight: str = "radial") -> None:
        super().__init__()
        if weight not in ("none", "log"):
            raise ValueError(f"weight must be 'none' or 'log', got {weight!r}")
        self.weight = weight
        self.irc_safe = bool(irc_safe)
        degree = (12 if self.irc_safe else 10) if degree is None else degree
        lmax = (8 if self.irc_safe else 4) if lmax is None else lmax
        if not 1 <= int(order) <= 4:
            raise ValueError(f"order must be 1..4, got {order}")
        if int(degree) < 0 or int(lmax) < 0 or int(n_radial) < 1:
            raise ValueError(f"need degree >= 0, lmax >= 0, n_radial >= 1; got degree={degree},"
                             f" lmax={lmax}, n_radial={n_radial}")
        self.order, self.degree, self.lmax = int(order), int(degree), int(lmax)
        self.n_radial = 1 if self.irc_safe else int(n_radial)
        self._n_radial_arg = int(n_radial)
        selection = parse_selection(select, COLUMN_PROPERTIES)
        self.select = selection.texts()
        store_species_settings(self, species, channel_mode, rank, mixing_seed, species_weight)
        if self.irc_safe and self.species and self.species_weight == "count":
            raise ValueError("species_weight='count' counts constituents: not with irc_safe")
        if self.channel_mode not in ("full", "reduced") or self.rank < 1:
            raise ValueError(f"need channel_mode 'full' or 'reduced' and rank >= 1, got "
                             f"{channel_mode!r}, {rank}")
        n_species = 1 + len(self.species)
        reduced = bool(self.species) and self.channel_mode == "reduced"
        n_prod = self.order * self.rank if reduced else n_species  # product channels
        kin = _label_table(self.degree, self.lmax, self.n_radial, self.irc_safe)
        labels = kin * n_prod  # product channel p holds labels[p * len(kin):][:len(kin)]
        feats = [f for f in _enumerate(labels, self.order, self.degree,
                                       (len(kin), self.rank) if reduced else None)
                 if selection(column_meta(labels, f))]
        if not feats:
            raise ValueError(f"the selection {' and '.join(self.select)} keeps no column")
        # drop kinematic labels no feature uses (in any channel): label i of the full
        # table is kinematic label i % k0 of product channel i // k0
        k0 = len(kin)
        used = sorted({i % k0 for ms, _ in feats for i in ms})
        remap = {j: n for n, j in enumerate(used)}
        kin = [kin[j] for j in used]
        feats = [(tuple(i // k0 * len(kin) + remap[i % k0] for i in ms), big_l)
                 for ms, big_l in feats]
        labels = kin * n_prod
        self._n_prod, self._n_kin_labels = n_prod, len(kin)
        self._sh_lmax = max((l for _, l in kin), default=0)
        self.labels = kin
        channel = [i // len(kin) for i in range(len(labels))]
        self.terms = [(tuple(labels[i] for i in ms), big_l) for ms, big_l in feats]
        if self.species:  # the product channel of every factor, in front of (k, l)
            self.terms = [(tuple((channel[i], *labels[i]) for i in ms), big_l)
                          for ms, big_l in feats]
        self.column_meta = [column_meta(labels, f) for f in feats]
        self.feature_names = [self._name(t) for t in self.terms]
        self.num_features = len(feats)
        self._build_tables(labels, feats)

    # -- naming, spec ------------------------------------------------------------------
    def _name(self, term: tuple[tuple[tuple[int, ...], ...], int]) -> str:
        labels, big_l = term
        body = "_".join((f"c{lab[0]}" if len(lab) == 3 else "")
                        + (f"l{lab[-1]}" if self.irc_safe else f"k{lab[-2]}l{lab[-1]}")
                        for lab in labels)
        return f"lor_{body}" + (f"_L{big_l}" if len(labels) == 4 else "")

    @property
    def spec(self) -> dict:
        """JSON-serialisable description; ``features_from_spec(spec)`` rebuilds this module."""
        spec = {"family": "lorentz", "order": self.order, "degree": self.degree,
                "lmax": self.lmax, "n_radial": self._n_radial_arg, "irc_safe": self.irc_safe,
                "weight": self.weight}
        return {**spec, **optional_spec(self)}

    def extra_repr(self) -> str:
        return (f"order={self.order}, degree={self.degree}, lmax={self.lmax}, "
                f"n_radial={self.n_radial}, irc_safe={self.irc_safe}, "
                f"num_features={self.num_features}")

    # -- index tables ------------------------------------------------------------------
    def _build_tables(self, labels: list[tuple[int, int]], feats) -> None:
        """Flat indices: A rows are (label, m) pairs; pair rows follow them."""
        a_off, k = [], 0
        for _, l in labels:
            a_off.append(k)
            k += 2 * l + 1
        n_a = k
        nlm = (self._sh_lmax + 1) ** 2
        # rows of one channel's pooled table (n_radial x nlm): the kinematic labels
        a_src = [kk * nlm + l * l + mm for kk, l in labels[:self._n_kin_labels]
                 for mm in range(2 * l + 1)]

        pair_off: dict[tuple[int, int, int], int] = {}
        p_out, p_i, p_j, p_c = [], [], [], []

        def pair(ia: int, ib: int, big_l: int) -> int:
            key = (ia, ib, big_l)
            if key not in pair_off:
                pair_off[key] = n_a + sum(2 * kk[2] + 1 for kk in pair_off)
                c = real_coupling(labels[ia][1], labels[ib][1], big_l)
                for m1, m2, mm in zip(*np.nonzero(c), strict=True):
                    p_out.append(pair_off[key] - n_a + int(mm))
                    p_i.append(a_off[ia] + int(m1))
                    p_j.append(a_off[ib] + int(m2))
                    p_c.append(float(c[m1, m2, mm]))
            return pair_off[key]

        single, single_out = [], []
        f_out, f_i, f_j = [], [], []
        for f, (ms, big_l) in enumerate(feats):
            ls = [labels[i][1] for i in ms]
            if len(ms) == 1:
                single.append(a_off[ms[0]])
                single_out.append(f)
                continue
            if len(ms) == 2:
                left, right, width = a_off[ms[0]], a_off[ms[1]], 2 * ls[0] + 1
            elif len(ms) == 3:
                left, right, width = pair(ms[0], ms[1], ls[2]), a_off[ms[2]], 2 * ls[2] + 1
            else:
                left, right = pair(ms[0], ms[1], big_l), pair(ms[2], ms[3], big_l)
                width = 2 * big_l + 1
            f_out += [f] * width
            f_i += range(left, left + width)
            f_j += range(right, right + width)

        self.n_pair_terms, self.n_feature_terms = len(p_out), len(f_out)
        self._n_pairs = sum(2 * kk[2] + 1 for kk in pair_off)

        def buf(name: str, values, dtype=torch.long) -> None:
            self.register_buffer(name, torch.tensor(values, dtype=dtype), persistent=False)

        buf("_a_src", a_src)
        buf("_p_out", p_out)
        buf("_p_i", p_i)
        buf("_p_j", p_j)
        buf("_p_c", p_c, torch.float64)
        buf("_s_idx", single)
        buf("_s_out", single_out)
        buf("_f_out", f_out)
        buf("_f_i", f_i)
        buf("_f_j", f_j)
        if self.species and self.channel_mode == "reduced":
            self.register_buffer("_mixing", channel_mixing(
                (self._n_prod, 1 + len(self.species)), self.rank, self.mixing_seed),
                persistent=False)

    # -- evaluation --------------------------------------------------------------------
    def radial_angular(self, p4: torch.Tensor, mask: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Radial parts w_j R_k(j), (B, P, n_radial), and harmonics Y_lm(n_j), (B, P, nlm)."""
        rf = rest_frame(p4[..., :4], mask)
        ylm = real_spherical_harmonics(rf.direction, self._sh_lmax)
        if self.irc_safe:
            radial = rf.x[..., None]
        else:
            e_star = rf.x * torch.sqrt(rf.mass2.clamp_min(0))[:, None]
            tiny = torch.finfo(p4.dtype).tiny
            u = ((torch.log(e_star.clamp_min(tiny)) - U_SHIFT) / U_SCALE).clamp(-1, 1)
            w = torch.log1p(e_star) if self.weight == "log" else mask.to(p4.dtype)
            cheb = chebyshev(u, self.n_radial)
            radial = cheb * (w * mask)[..., None]
        if self.species:  # one block of radial parts per channel: "all", then the species
            # "count" (never with irc_safe): T_k(u_j) without w_j
            own = radial if self.species_weight == "radial" else \
                cheb * mask.to(p4.dtype)[..., None]
            species = p4[..., 4:, None] * own[..., None, :]
            radial = torch.cat([radial[..., None, :], species], -2).flatten(2)
        return radial, ylm

    def one_particle_basis(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """phi_{k,l,m}(j) as (B, P, n_radial, (l_used+1)^2), l_used the largest angular
        degree any feature uses (<= lmax); zero on padded entries."""
        radial, ylm = self.radial_angular(p4, mask)
        return radial[..., :, None] * ylm[..., None, :]

    def pooled_basis(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """A_{a,m} for every label a = (k, l) and m = -l..l, concatenated: (B, n_A)."""
        radial, ylm = self.radial_angular(p4, mask)
        pooled = torch.bmm(radial.transpose(1, 2), ylm)  # (B, C n_radial, nlm)
        b = p4.shape[0]  # not len(p4): symbolic under torch.export, so ONNX keeps B dynamic
        if not self.species:
            return pooled.reshape(b, -1)[:, self._a_src]
        per_channel = pooled.reshape(b, 1 + len(self.species), -1)[..., self._a_src]
        if self.channel_mode == "reduced":  # product channels: mixtures of the species
            per_channel = torch.matmul(self._mixing.to(p4.dtype), per_channel)
        return per_channel.reshape(b, -1)

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if isinstance(p4, np.ndarray):  # numpy in, numpy out (computed on the CPU)
            return self.forward(torch.from_numpy(p4), torch.as_tensor(mask)).numpy()
        width = 4 + len(self.species)
        if p4.ndim != 3 or p4.shape[-1] != width or mask.shape != p4.shape[:2]:
            raise ValueError(f"expected p4 (B, P, {width}) and mask (B, P), got "
                             f"{tuple(p4.shape)} and {tuple(mask.shape)}"
                             f"{input_hint(self.species)}")
        mask = mask.to(torch.bool)
        if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()) and mask.numel():
            used = torch.nonzero(mask.any(dim=0))
            width = int(used[-1]) + 1 if len(used) else 1
            p4, mask = p4[:, :width], mask[:, :width]
        a = self.pooled_basis(p4, mask).T  # (n_A, B): rows gathered contiguously
        dt = p4.dtype
        pairs = a.new_zeros((self._n_pairs, a.shape[1]))
        if self.n_pair_terms:
            pairs.index_add_(0, self._p_out, a[self._p_i] * a[self._p_j]
                             * self._p_c.to(dt)[:, None])
        z = torch.cat([a, pairs], dim=0)
        out = a.new_zeros((self.num_features, a.shape[1]))
        if self.n_feature_terms:
            out.index_add_(0, self._f_out, z[self._f_i] * z[self._f_j])
        out[self._s_out] = a[self._s_idx]
        return out.T.contiguous()
