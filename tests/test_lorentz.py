"""Tests of the exactly Lorentz-invariant ACE features (jetace.features.lorentz)."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest
import torch
from numpy.polynomial import chebyshev as npcheb
from numpy.polynomial import legendre as nplegendre
from scipy.special import sph_harm_y
from sympy.physics.wigner import clebsch_gordan
from tolerances import (
    COLUMN_SCALE,
    CUDA_VS_CPU,
    DIFFERS,
    FLOAT32_VS_FLOAT64,
    FOX_WOLFRAM,
    IRC_SAFETY,
    LORENTZ_DROPPED_COUPLINGS,
    LORENTZ_INVARIANCE,
    REFERENCE,
    REORDERED_SUMS,
    STORED_INVARIANCE,
)
from toyjets import stored_demo_jets, toy_jets

import jetace
import jetace.features.lorentz as lorentz_module
from jetace.features import features_from_spec
from jetace.features.lorentz import U_SCALE, U_SHIFT, LorentzACEFeatures

SMALL = dict(order=4, degree=4, lmax=2, n_radial=2)  # small setting for brute force


def pad(jets: list[np.ndarray], width: int | None = None, dtype=torch.float64):
    width = width or max(len(j) for j in jets)
    p4 = torch.zeros(len(jets), width, 4, dtype=dtype)
    mask = torch.zeros(len(jets), width, dtype=torch.bool)
    for i, j in enumerate(jets):
        p4[i, : len(j)] = torch.as_tensor(j, dtype=dtype)
        mask[i, : len(j)] = True
    return p4, mask


def random_lorentz(rng: np.random.Generator, gamma_max: float = 10.0) -> np.ndarray:
    """A proper orthochronous Lorentz matrix: a boost (random direction, gamma in
    [1, gamma_max]) composed with a random rotation, acting on (E, px, py, pz)."""
    gamma = rng.uniform(1.0, gamma_max)
    beta = np.sqrt(1 - 1 / gamma**2)
    n = rng.normal(size=3)
    n /= np.linalg.norm(n)
    boost = np.eye(4)
    boost[0, 0] = gamma
    boost[0, 1:] = boost[1:, 0] = gamma * beta * n
    boost[1:, 1:] += (gamma - 1) * np.outer(n, n)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    rot = np.eye(4)
    rot[1:, 1:] = q
    return rot @ boost


def natural_scale(f: LorentzACEFeatures, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per jet and feature, prod_t S_{a_t} with S_a = sum_j |w_j R_k(j)| |Y_l(n_j)|: the
    size of the sum of absolute terms, against which rounding errors are measured."""
    radial, ylm = f.radial_angular(p4, mask)
    scales = []
    for k, l in f.labels:
        ynorm = torch.linalg.vector_norm(ylm[..., l * l:(l + 1) ** 2], dim=-1)  # 1 or 0
        scales.append((radial[..., k].abs() * ynorm).sum(1))
    s = torch.stack(scales, dim=1)  # (B, n_labels)
    index = {a: i for i, a in enumerate(f.labels)}
    return torch.stack([torch.prod(s[:, [index[a] for a in labels]], dim=1)
                        for labels, _ in f.terms], dim=1)


def assert_close_scaled(f, p4, mask, got, want, rtol):
    scale = want.abs() + natural_scale(f, p4, mask)
    err = ((got - want).abs() / scale.clamp_min(1e-300)).max().item()
    assert err <= rtol, f"max scaled deviation {err:.3g} > {rtol:g}"


def assert_invariant(f, p4, mask, transform: np.ndarray, rtol=LORENTZ_INVARIANCE):
    """f(p4) and f(p4 transformed by the 4x4 matrix) agree to rtol relative to the
    size of the terms summed in each feature."""
    lam = torch.as_tensor(transform, dtype=p4.dtype)
    assert_close_scaled(f, p4, mask, f(p4 @ lam.T, mask), f(p4, mask), rtol)


@pytest.fixture(scope="module")
def jets():
    return (toy_jets(24, seed=3, n_prongs=3, mass=0.14, max_particles=40)
            + toy_jets(16, seed=4, n_prongs=1, max_particles=40))


@pytest.mark.parametrize("kw", [{}, {"irc_safe": True}, {"weight": "none"}, SMALL])
def test_lorentz_invariance(jets, kw):
    f = LorentzACEFeatures(**kw)
    p4, mask = pad(jets)
    rng = np.random.default_rng(11)
    for _ in range(4):
        assert_invariant(f, p4, mask, random_lorentz(rng))


@pytest.mark.parametrize("kw", [{}, {"irc_safe": True}])
def test_lorentz_invariance_on_stored_jets(kw):
    """Jets as stored (the shipped demo sample: float32 momenta, massless constituents
    read back slightly spacelike), float64: random Lorentz transformations (gamma up to
    10) change no feature by more than STORED_INVARIANCE of its column's scale, as on
    physical jets (definition 2 keeps each constituent's m^2 with its sign)."""
    from jetace.reproducibility import deviation

    rng = np.random.default_rng(12)
    p4, mask = stored_demo_jets(rng, 32)
    f = LorentzACEFeatures(**kw)
    x = f(p4, mask)
    for _ in range(3):
        lam = torch.as_tensor(random_lorentz(rng), dtype=p4.dtype)
        err = deviation(x, f((p4 @ lam.T) * mask[..., None], mask), floor=COLUMN_SCALE)
        assert err <= STORED_INVARIANCE["lorentz"], f"{kw}: {err:.3g}"


def test_not_trivially_invariant(jets):
    """The invariance check can fail: a transformation that changes masses is caught."""
    f = LorentzACEFeatures(**SMALL)
    p4, mask = pad(jets)
    with pytest.raises(AssertionError):
        assert_invariant(f, p4, mask, np.diag([1.01, 1.0, 1.0, 1.0]))


def test_permutation_and_padding(jets):
    f = LorentzACEFeatures()
    p4, mask = pad(jets)
    want = f(p4, mask)
    rng = np.random.default_rng(5)
    perm = [j[rng.permutation(len(j))] for j in jets]
    p4p, maskp = pad(perm, width=p4.shape[1] + 7)
    p4p[~maskp] = torch.as_tensor(rng.normal(size=(int((~maskp).sum()), 4)))  # finite junk
    assert_close_scaled(f, p4, mask, f(p4p, maskp), want, REORDERED_SUMS)
    # interleaved padding
    wide = torch.zeros(len(jets), 2 * p4.shape[1], 4, dtype=p4.dtype)
    wmask = torch.zeros(len(jets), 2 * p4.shape[1], dtype=torch.bool)
    wide[:, ::2], wmask[:, ::2] = p4, mask
    assert_close_scaled(f, p4, mask, f(wide, wmask), want, REORDERED_SUMS)


# ------------------------------------------------------------------ brute-force reference

def _boost_to_rest(jet: np.ndarray) -> tuple[np.ndarray, float]:
    """Rest-frame four-momenta by the textbook boost, and the jet mass."""
    tot = jet.sum(0)
    mass = np.sqrt(tot[0] ** 2 - tot[1:] @ tot[1:])
    beta = tot[1:] / tot[0]
    gamma = tot[0] / mass
    out = []
    for p in jet:
        bp = beta @ p[1:]
        e = gamma * (p[0] - bp)
        b2 = beta @ beta
        vec = p[1:] + ((gamma - 1) * bp / b2 - gamma * p[0]) * beta
        out.append(np.r_[e, vec])
    return np.array(out), mass


def _racah_ylm(l: int, m: int, n: np.ndarray) -> complex:
    theta = np.arccos(np.clip(n[2], -1, 1))
    phi = np.arctan2(n[1], n[0])
    return complex(np.sqrt(4 * np.pi / (2 * l + 1)) * sph_harm_y(l, m, theta, phi))


def _cg(l1, m1, l2, m2, big_l, mm) -> float:
    return float(clebsch_gordan(l1, l2, big_l, m1, m2, mm))


def reference_features(jet: np.ndarray, order: int, degree: int, lmax: int, n_radial: int
                       ) -> dict[tuple, float]:
    """All candidate coupled products, keyed by (labels, L), by loops over particles and
    multisets, in the complex basis (scipy harmonics, sympy Clebsch-Gordan)."""
    rest, mass = _boost_to_rest(jet)
    labels = sorted([(k, l) for k in range(n_radial) for l in range(lmax + 1) if k + l <= degree],
                    key=lambda a: (a[0] + a[1], a[1], a[0]))
    amp: dict[tuple[int, int, int], complex] = {}
    for k, l in labels:
        for m in range(-l, l + 1):
            total = 0j
            for p in rest:
                u = np.clip((np.log(p[0]) - U_SHIFT) / U_SCALE, -1, 1)
                radial = npcheb.chebval(u, [0] * k + [1]) * np.log1p(p[0])
                total += radial * _racah_ylm(l, m, p[1:] / np.linalg.norm(p[1:]))
            amp[k, l, m] = total

    def dot(x, y, big_l):  # real-basis scalar product of two real-type L-vectors
        return sum((-1) ** mm * x[mm] * y[-mm] for mm in range(-big_l, big_l + 1))

    def couple(a, b, big_l):
        (ka, la), (kb, lb) = a, b
        return {mm: sum(_cg(la, m1, lb, mm - m1, big_l, mm) * amp[ka, la, m1] * amp[kb, lb, mm - m1]
                        for m1 in range(-la, la + 1) if abs(mm - m1) <= lb)
                for mm in range(-big_l, big_l + 1)}

    def vec(a):
        return {m: amp[a[0], a[1], m] for m in range(-a[1], a[1] + 1)}

    out = {}
    for nu in range(1, order + 1):
        for ms in itertools.combinations_with_replacement(labels, nu):
            ls = [a[1] for a in ms]
            if sum(a[0] + a[1] for a in ms) > degree or sum(ls) % 2:
                continue
            if nu == 1 and ls[0] == 0:
                out[ms, 0] = amp[ms[0][0], 0, 0].real
            elif nu == 2 and ls[0] == ls[1]:
                out[ms, 0] = dot(vec(ms[0]), vec(ms[1]), ls[0]).real
            elif nu == 3 and abs(ls[0] - ls[1]) <= ls[2] <= ls[0] + ls[1]:
                out[ms, ls[2]] = dot(couple(ms[0], ms[1], ls[2]), vec(ms[2]), ls[2]).real
            elif nu == 4:
                for big_l in range(max(abs(ls[0] - ls[1]), abs(ls[2] - ls[3])),
                                   min(ls[0] + ls[1], ls[2] + ls[3]) + 1):
                    sign = (-1) ** ((ls[0] + ls[1] + big_l) % 2)
                    val = dot(couple(ms[0], ms[1], big_l), couple(ms[2], ms[3], big_l), big_l)
                    out[ms, big_l] = sign * val.real
    return out


def test_brute_force_reference():
    jets = toy_jets(5, seed=8, n_prongs=2, mass=0.2, min_particles=3, max_particles=7)
    f = LorentzACEFeatures(**SMALL)
    p4, mask = pad(jets)
    got = f(p4, mask).numpy()
    refs = [reference_features(j, **SMALL) for j in jets]
    keys = list(f.terms)
    assert set(keys) <= set(refs[0])
    want = np.array([[r[k] for k in keys] for r in refs])
    tol = REFERENCE["lorentz"]
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
    # couplings the module drops are combinations of the kept ones of the same multiset
    more = toy_jets(30, seed=9, n_prongs=2, mass=0.2, min_particles=3, max_particles=6)
    rmore = [reference_features(j, **SMALL) for j in more]
    for ms in {k[0] for k in refs[0]}:
        kept = [k for k in keys if k[0] == ms]
        dropped = [k for k in refs[0] if k[0] == ms and k not in keys]
        for k in dropped:
            y = np.array([r[k] for r in rmore])
            if not kept:
                vanish = LORENTZ_DROPPED_COUPLINGS["vanish"]
                assert np.abs(y).max() < vanish * (1 + np.abs([r[k] for r in rmore]).max())
                continue
            x = np.array([[r[c] for c in kept] for r in rmore])
            coef, *_ = np.linalg.lstsq(x, y, rcond=None)
            dependent = LORENTZ_DROPPED_COUPLINGS["dependent"]
            assert np.abs(x @ coef - y).max() <= dependent * max(1.0, np.abs(y).max())


# ------------------------------------------------------------------ counts, spec, names

@pytest.mark.parametrize("kw, count", [
    ({}, 1198),
    ({"degree": 8}, 486),
    ({"order": 3, "degree": 8}, 205),
    ({"irc_safe": True}, 32),
    ({"irc_safe": True, "degree": 8}, 7),
])
def test_feature_counts_documented(kw, count):
    f = LorentzACEFeatures(**kw)
    assert f.num_features == count == len(f.feature_names)
    assert re.search(rf":\s+{count}\b", lorentz_module.__doc__)


def test_spec_names_roundtrip(jets):
    f = LorentzACEFeatures(order=3, degree=6, irc_safe=False)
    spec = json.loads(json.dumps(f.spec))
    assert spec["family"] == "lorentz"
    g = features_from_spec(spec)
    p4, mask = pad(jets)
    torch.testing.assert_close(g(p4, mask), f(p4, mask))
    assert len(set(f.feature_names)) == f.num_features
    assert all(n.isidentifier() for n in f.feature_names)
    assert jetace.LorentzACEFeatures is LorentzACEFeatures


# ------------------------------------------------------------------ IRC safety, Fox-Wolfram

def test_irc_safety():
    f = LorentzACEFeatures(irc_safe=True)
    base = toy_jets(12, seed=21, n_prongs=3, max_particles=30)
    rng = np.random.default_rng(2)
    split, soft = [], []
    for j in base:
        i = rng.integers(len(j))
        z = rng.uniform(0.1, 0.9)
        split.append(np.vstack([np.delete(j, i, axis=0), z * j[i], (1 - z) * j[i]]))
        d = rng.normal(size=3)
        d *= 1e-6 / np.linalg.norm(d)
        soft.append(np.vstack([j, np.r_[1e-6, d]]))
    p4, mask = pad(base)
    want = f(p4, mask)
    for other in (split, soft):
        q4, qmask = pad(other)
        assert_close_scaled(f, p4, mask, f(q4, qmask), want, IRC_SAFETY)
    # the default (not IRC safe) features do see the split
    g = LorentzACEFeatures()
    q4, qmask = pad(split)
    assert not torch.allclose(g(q4, qmask), g(p4, mask), rtol=DIFFERS["features"])


def test_fox_wolfram_moments():
    jets = toy_jets(6, seed=31, n_prongs=3, mass=0.3, max_particles=25)
    f = LorentzACEFeatures(irc_safe=True)
    got = f(*pad(jets))
    for b, jet in enumerate(jets):
        rest, mass = _boost_to_rest(jet)
        dirs = rest[:, 1:] / np.linalg.norm(rest[:, 1:], axis=1, keepdims=True)
        for l in range(1, min(f.lmax, f.degree // 2) + 1):
            h_l = 0.0
            for i in range(len(rest)):
                for j in range(len(rest)):
                    p_l = nplegendre.legval(dirs[i] @ dirs[j], [0] * l + [1])
                    h_l += rest[i, 0] * rest[j, 0] * p_l
            h_l /= mass**2
            if l == 1:  # momentum balance in the rest frame: H_1 = 0, so no l = 1 column
                assert abs(h_l) <= FOX_WOLFRAM["h1"] and f"lor_l{l}_l{l}" not in f.feature_names
                continue
            col = f.feature_names.index(f"lor_l{l}_l{l}")
            assert abs(got[b, col].item() - h_l) <= FOX_WOLFRAM["features"] * max(1.0, abs(h_l))


# ------------------------------------------------------------------ numerics, edge cases

def test_edge_cases_finite():
    one = np.array([[50.0, 10.0, 20.0, 30.0]])
    one_massless = np.array([[5.0, 3.0, 0.0, 4.0]])
    back_to_back = np.array([[10.0, 0.0, 0.0, 8.0], [10.0, 0.0, 0.0, -8.0]])
    collinear = np.array([[z * 100.0, 0.0, z * 60.0, z * 80.0] for z in (0.5, 0.3, 0.2)])
    nearly = collinear.copy()
    nearly[0, 1] = 1e-9
    jets = [one, one_massless, back_to_back, collinear, nearly, np.zeros((0, 4))]
    for kw in ({}, {"irc_safe": True}):
        f = LorentzACEFeatures(**kw)
        for dtype in (torch.float32, torch.float64):
            p4, mask = pad([j if len(j) else np.zeros((1, 4)) for j in jets], dtype=dtype)
            mask[-1] = False
            out = f(p4, mask)
            assert out.dtype == dtype and torch.isfinite(out).all()
            assert (out[-1] == 0).all()  # no constituents: zeros
    f = LorentzACEFeatures(irc_safe=True)
    out = f(*pad([one, back_to_back, collinear]))
    assert (out[0] == 0).all() and (out[2] == 0).all()  # no direction: all l >= 1 vanish
    # back to back with equal energies: H_l = (1 + (-1)^l) / 2
    h = {l: out[1, f.feature_names.index(f"lor_l{l}_l{l}")].item() for l in (2, 3)}
    exact = FOX_WOLFRAM["back_to_back"]
    assert abs(h[3]) < exact and abs(h[2] - 1.0) < exact


def test_float32_matches_float64(jets):
    # measured ~4e-4 (default) on these jets: float32 resolves a constituent's
    # m^2 = E^2 - |p|^2 only to ~eps E^2, which moves the rest-frame energy of soft
    # massive constituents; the float64 reference sees the same float32-rounded inputs
    tol = FLOAT32_VS_FLOAT64["lorentz"]
    for kw in ({}, {"irc_safe": True}):
        f = LorentzACEFeatures(**kw)
        p4, mask = pad(jets)
        p32 = p4.float()
        want = f(p32.double(), mask)  # same (rounded) inputs in float64
        got = f(p32, mask).double()
        assert_close_scaled(f, p32.double(), mask, got, want, tol)


def test_highly_boosted_float64():
    """gamma ~ 100 along the jet: invariance still holds to 1e-8 in float64."""
    jets = toy_jets(8, seed=41, n_prongs=3, mass=0.14, max_particles=30)
    f = LorentzACEFeatures(**SMALL)
    p4, mask = pad(jets)
    lam = np.eye(4)
    gamma = 100.0
    beta = np.sqrt(1 - 1 / gamma**2)
    lam[0, 0] = lam[3, 3] = gamma
    lam[0, 3] = lam[3, 0] = gamma * beta
    assert_invariant(f, p4, mask, lam, rtol=LORENTZ_INVARIANCE)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(jets):
    f = LorentzACEFeatures()
    p4, mask = pad(jets)
    out = f.to("cuda")(p4.cuda(), mask.cuda())
    assert out.device.type == "cuda"
    tol = CUDA_VS_CPU["lorentz"]
    torch.testing.assert_close(out.cpu(), f.cpu()(p4, mask), rtol=tol, atol=tol)
