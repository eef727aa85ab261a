"""BIPFeatures: counts, brute-force reference, symmetries, numerics."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from symmetry import (
    assert_invariant,
    boost_along_axis,
    jet_rapidity_along_axis,
    pad,
    random_axis_rapidity,
    random_rotation,
    rotate,
)
from tolerances import (
    BIP_COMPLETE_VS_DEFAULT,
    BIP_FLOAT32_WELL_CONDITIONED,
    BIP_INVARIANCE,
    COLUMN_SCALE,
    CUDA_VS_CPU,
    DIFFERS,
    EXACT,
    REFERENCE,
    REORDERED_SUMS,
    STORED_INVARIANCE,
    assert_reproduced,
)
from toyjets import stored_demo_jets, toy_jet, toy_jets

from jetace import BIPFeatures


def well_conditioned_jets(n: int, seed: int) -> list[np.ndarray]:
    """Massive constituents of 1-50 GeV, 0.05-0.4 rad from the jet axis: no rapidity or
    azimuth is ill-conditioned, so float64 invariance holds to ~1e-12."""
    rng = np.random.default_rng(seed)
    jets = []
    for _ in range(n):
        m = int(rng.integers(3, 25))
        pt = rng.uniform(1, 50, m)
        eta = rng.uniform(-1.5, 1.5) + rng.choice([-1, 1], m) * rng.uniform(0.05, 0.4, m)
        phi = rng.uniform(-3, 3) + rng.choice([-1, 1], m) * rng.uniform(0.05, 0.4, m)
        px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        e = np.sqrt(px**2 + py**2 + pz**2 + rng.uniform(0.1, 1.0, m) ** 2)
        jets.append(np.stack([e, px, py, pz], 1))
    return jets


# ---- an independent, slow reference written from docs/definition.md section 2 ---------

def reference_bip(jet: np.ndarray, order: int, degree: int, complete: bool = False,
                  mirror: bool = False) -> list[float]:
    e, p = jet[:, 0], jet[:, 1:]
    axis = p.sum(0) / np.linalg.norm(p.sum(0))
    v = axis - np.array([0.0, 0.0, 1.0])
    h = np.eye(3) - 2 * np.outer(v, v) / v.dot(v) if v.dot(v) > 0 else np.eye(3)
    q = p @ h.T
    z = q[:, 2]
    r = np.hypot(q[:, 0], q[:, 1]) + 1e-4
    theta = np.arctan2(q[:, 1], q[:, 0])
    y = 0.5 * np.log((e + z) / (e - z))
    tm = np.log(e**2 - z**2 + 1)
    u = (np.log(r / r.sum()) + 4.7) / 6
    one = [(k, l, n) for k in range(6) for l in range(-3, 4) for n in range(-3, 4)
           if k + abs(l) + abs(n) <= degree]  # a factor above the degree can never appear
    a = {}
    for k, l, n in one:
        tk = np.polynomial.chebyshev.Chebyshev.basis(k)(u)
        a[k, l, n] = sum(tk[j] * tm[j] * complex(math.cos(l * theta[j] + n * y[j]),
                                                  math.sin(l * theta[j] + n * y[j]))
                         for j in range(len(e)))
    out, seen = [], set()
    for nu in range(1, order + 1):
        for combo in itertools.combinations_with_replacement(one, nu):
            if (sum(c[1] for c in combo) or sum(c[2] for c in combo)
                    or sum(c[0] + abs(c[1]) + abs(c[2]) for c in combo) > degree):
                continue
            value = np.prod([a[c] for c in combo])
            if mirror:  # mean with the image under theta -> -theta, once per such pair
                images = {tuple(sorted((k, sl * l, sn * n) for k, l, n in combo))
                          for sl in (1, -1) for sn in (1, -1)}
                if combo not in seen:
                    seen.update(images)
                    image = tuple(sorted((k, -l, n) for k, l, n in combo))
                    out.append(0.5 * (value.real + np.prod([a[c] for c in image]).real))
                continue
            if not complete:
                out.append(value.real)
                continue
            conj = tuple(sorted((k, -l, -n) for k, l, n in combo))
            if combo <= conj:
                out.append(value.real)
                if combo != conj:
                    out.append(value.imag)
    return out


@pytest.mark.parametrize("order,degree,count", [(3, 6, 311), (3, 7, 595), (4, 7, 1473),
                                                (4, 8, 3205)])
def test_feature_counts_match_reference_implementation(order, degree, count):
    assert BIPFeatures(order, degree).num_features == count
    assert BIPFeatures(order, degree, complete=True).num_features == count
    assert len(BIPFeatures(order, degree).feature_names) == count


@pytest.mark.parametrize("order,degree,count", [(3, 6, 178), (3, 7, 296), (4, 7, 694),
                                                (4, 8, 1356)])
def test_mirror_feature_counts(order, degree, count):
    f = BIPFeatures(order, degree, mirror=True)
    assert f.num_features == len(set(f.feature_names)) == count
    with pytest.raises(ValueError, match="cannot be combined"):
        BIPFeatures(order, degree, complete=True, mirror=True)


@pytest.mark.parametrize("order,degree,complete,mirror",
                         [(2, 4, False, False), (3, 4, False, False), (3, 4, True, False),
                          (4, 3, True, False), (3, 4, False, True), (4, 3, False, True)])
def test_agrees_with_brute_force_reference(order, degree, complete, mirror):
    jets = well_conditioned_jets(4, seed=1)
    f = BIPFeatures(order, degree, complete=complete, mirror=mirror)
    got = f(*pad(jets, width=30)).numpy()
    want = np.array([reference_bip(j, order, degree, complete, mirror) for j in jets])
    assert got.shape == want.shape
    tol = REFERENCE["bip"]
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


def test_complete_mode_removes_duplicates_and_keeps_real_parts():
    jets = well_conditioned_jets(16, seed=2)
    p4, mask = pad(jets)
    x = BIPFeatures(3, 6)(p4, mask).numpy()
    xc = BIPFeatures(3, 6, complete=True)(p4, mask).numpy()
    dup = len(x.T) - len(np.unique(x.round(9), axis=1).T)
    assert dup / x.shape[1] > 0.3  # the paper's construction repeats many columns
    assert len(np.unique(xc.round(9), axis=1).T) == xc.shape[1]
    # every default column is one of the complete mode's real parts
    names = BIPFeatures(3, 6, complete=True).feature_names
    re = xc[:, [i for i, n in enumerate(names) if n.endswith("_re")]]
    for col in x.T:
        nearest = np.abs(re - col[:, None]).max(axis=0).min()
        assert nearest <= BIP_COMPLETE_VS_DEFAULT * np.abs(col).max()


# ---- symmetries ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bip47():
    return BIPFeatures(4, 7, complete=True)


@pytest.mark.parametrize("seed", range(3))
def test_invariance_float64_well_conditioned(bip47, seed):
    """Rotations and boosts along the axis up to |rapidity| 1: relative 1e-9."""
    rng = np.random.default_rng(seed)
    p4, mask = pad(well_conditioned_jets(32, seed))
    rot = random_rotation(rng)
    rap = random_axis_rapidity(p4, mask, rng, 1.0).clamp(max=1.0)
    tol = BIP_INVARIANCE["well_conditioned"]
    assert_invariant(bip47, p4, mask, lambda q: rotate(q, rot), tol, "rotation")
    assert_invariant(bip47, p4, mask, lambda q: boost_along_axis(q, mask, rap), tol, "boost")


def random_reflection(rng: np.random.Generator) -> np.ndarray:
    """A random improper orthogonal matrix (det -1): a rotation times a plane reflection."""
    return random_rotation(rng) @ np.diag([1.0, 1.0, -1.0]) @ random_rotation(rng)


@pytest.mark.parametrize("seed", range(2))
def test_mirror_features_invariant_under_reflections(seed):
    """mirror=True: invariant under reflections too (float64, 1e-9); the default
    features are not (their mirror-odd columns change)."""
    rng = np.random.default_rng(seed)
    p4, mask = pad(well_conditioned_jets(32, seed + 10))
    f = BIPFeatures(4, 5, mirror=True)
    refl = random_reflection(rng)
    rap = random_axis_rapidity(p4, mask, rng, 1.0).clamp(max=1.0)
    tol = BIP_INVARIANCE["well_conditioned"]
    assert_invariant(f, p4, mask, lambda q: rotate(q, refl), tol, "reflection")
    assert_invariant(f, p4, mask, lambda q: rotate(q, random_rotation(rng)), tol, "rotation")
    assert_invariant(f, p4, mask, lambda q: boost_along_axis(q, mask, rap), tol, "boost")
    plain = BIPFeatures(4, 5)
    x, xr = plain(p4, mask), plain(rotate(p4, refl), mask)
    assert ((x - xr).abs() > DIFFERS["features"] * x.abs().amax(0)).any()


def test_invariance_float64_large_boosts(bip47):
    """Boosts up to gamma = 10 (rapidity 3) along the axis: relative 1e-7. The boosted
    four-vectors themselves carry the loss: a 1 GeV, 0.3 GeV-mass constituent boosted to
    20 GeV keeps m^2 = E^2 - p^2 only to ~1e-12 relative in float64."""
    rng = np.random.default_rng(11)
    p4, mask = pad(well_conditioned_jets(32, 11))
    rap = random_axis_rapidity(p4, mask, rng, 3.0)
    assert_invariant(bip47, p4, mask, lambda q: boost_along_axis(q, mask, rap),
                     BIP_INVARIANCE["large_boosts"], "boost")


def test_permutation_invariance(bip47):
    rng = np.random.default_rng(5)
    p4, mask = pad(toy_jets(16, seed=5))
    perm = torch.tensor(rng.permutation(p4.shape[1]))
    x = bip47(p4, mask)
    xp = bip47(p4[:, perm], mask[:, perm])
    assert float(((xp - x).abs() / x.abs().amax(0).clamp_min(1e-300)).max()) < REORDERED_SUMS


def test_invariance_float64_ill_conditioned_toy_jets(bip47):
    """Toy jets hold constituents down to 1e-6 GeV almost on the axis, where rapidity and
    azimuth are ill-conditioned in the input itself: relative 1e-6 (measured ~1e-7)."""
    rng = np.random.default_rng(7)
    p4, mask = pad(toy_jets(32, seed=7))
    rot = random_rotation(rng)
    rap = random_axis_rapidity(p4, mask, rng, 1.0).clamp(max=1.0)
    tol = BIP_INVARIANCE["toy_jets"]
    assert_invariant(bip47, p4, mask, lambda q: rotate(q, rot), tol, "rotation")
    assert_invariant(bip47, p4, mask, lambda q: boost_along_axis(q, mask, rap), tol, "boost")


def test_invariance_float32_stated_tolerance(bip47):
    """float32: changes stay below 1e-3 of each feature's scale (its largest magnitude over
    the batch); measured about 1e-4, set by cancellations in the pooled sums."""
    rng = np.random.default_rng(3)
    p4, mask = pad(well_conditioned_jets(32, 3), dtype=torch.float32)
    rot = random_rotation(rng)
    rap = random_axis_rapidity(p4, mask, rng, 1.0).clamp(max=1.0)
    tol = BIP_INVARIANCE["float32"]
    assert_invariant(bip47, p4, mask, lambda q: rotate(q, rot), tol, "rotation f32",
                     floor=COLUMN_SCALE)
    assert_invariant(bip47, p4, mask, lambda q: boost_along_axis(q, mask, rap), tol,
                     "boost f32", floor=COLUMN_SCALE)


@pytest.mark.reproducibility
def test_padding_and_batch_composition_do_not_change_features(bip47):
    jets = well_conditioned_jets(8, 4)
    p4, mask = pad(jets)
    x = bip47(p4, mask)
    p4w, maskw = pad(jets, width=p4.shape[1] + 17)
    assert_reproduced(bip47(p4w, maskw), x, "wider padding")
    # one jet alone gives the same as inside a batch (trailing padding is cropped per batch)
    for i in (0, 5):
        assert_reproduced(bip47(p4[i:i + 1], mask[i:i + 1]), x[i:i + 1], f"jet {i} alone")
    # finite garbage in padded slots is ignored (the same operations on the same values)
    p4g = p4.clone()
    p4g[~mask] = 123.0
    torch.testing.assert_close(bip47(p4g, mask), x, **EXACT)


def test_float32_agrees_with_float64():
    """Documented tolerance: 1e-4 of each feature's scale on jets with constituents
    above 0.1 GeV; the agreement is limited by cancellations in the pooled sums."""
    p4, mask = pad(well_conditioned_jets(64, 5))
    f = BIPFeatures(4, 7)
    x64 = f(p4, mask)
    x32 = f(p4.float(), mask)
    assert x32.dtype == torch.float32
    scale = x64.abs().amax(0, keepdim=True)
    assert float(((x32.double() - x64).abs() / scale).max()) < BIP_FLOAT32_WELL_CONDITIONED


# ---- numerics on degenerate jets ----------------------------------------------------------

def degenerate_jets() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(9)
    d = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    energies = np.array([100.0, 20.0, 5.0, 1e-3])
    return {
        "collinear massless": np.column_stack([energies, np.outer(energies, d)]),
        "single constituent": np.array([[50.0, 10.0, 20.0, 30.0]]),
        "single massless": np.array([[5.0, 0.0, 3.0, 4.0]]),
        "along +z": np.array([[10.0, 0.0, 0.0, 10.0], [5.0, 0.0, 0.0, 5.0]]),
        "along -z": np.array([[10.0, 0.0, 0.0, -10.0], [5.0, 1.0, 0.0, -4.8]]),
        "back to back": np.array([[10.0, 0.0, 0.0, 10.0], [10.0, 0.0, 0.0, -10.0]]),
        "zero energy constituent": np.array([[0.0, 0.0, 0.0, 0.0], [10.0, 1.0, 2.0, 9.0]]),
        "ultra soft": toy_jet(rng, 40, pt=1e-3),
        "huge": toy_jet(rng, 40, pt=6500.0),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(degenerate_jets()))
def test_degenerate_jets_give_finite_features(name, dtype):
    p4, mask = pad([degenerate_jets()[name]], width=50, dtype=dtype)
    x = BIPFeatures(4, 7, complete=True)(p4, mask)
    assert torch.isfinite(x).all(), name


@pytest.mark.reproducibility
def test_jet_without_constituents_gives_zeros():
    p4, mask = pad(well_conditioned_jets(3, 6), width=20)
    mask[1] = False
    p4[1] = 0
    f = BIPFeatures(3, 6)
    x = f(p4, mask)
    assert torch.equal(x[1], torch.zeros_like(x[1]))
    assert_reproduced(x[[0, 2]], f(p4[[0, 2]], mask[[0, 2]]), "without the empty jet")
    assert f(torch.zeros(0, 5, 4), torch.zeros(0, 5, dtype=torch.bool)).shape == (0, 311)


def test_shape_errors_and_spec_round_trip():
    from jetace import features_from_spec

    f = BIPFeatures(3, 7, complete=True)
    with pytest.raises(ValueError, match="expected p4"):
        f(torch.zeros(2, 5, 3), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError):
        BIPFeatures(0, 5)
    g = features_from_spec(f.spec)
    assert isinstance(g, BIPFeatures) and g.spec == f.spec and g.num_features == f.num_features
    m = features_from_spec(BIPFeatures(3, 6, mirror=True).spec)
    assert m.mirror and m.num_features == 178
    old = {"family": "bip", "order": 3, "degree": 6, "complete": False}  # before mirror
    assert not features_from_spec(old).mirror


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    p4, mask = pad(well_conditioned_jets(64, 8))
    f = BIPFeatures(4, 7)
    x = f(p4, mask)
    xc = f.cuda()(p4.cuda(), mask.cuda())
    assert xc.device.type == "cuda"
    tol = CUDA_VS_CPU["bip"]
    torch.testing.assert_close(xc.cpu(), x, rtol=tol, atol=tol * float(x.abs().max()))


@pytest.mark.reproducibility
@pytest.mark.parametrize("dtype,threads", [(torch.float64, 1), (torch.float64, 2),
                                           (torch.float32, 2)])
def test_cpu_sub_batches_give_the_same_features(monkeypatch, dtype, threads):
    """Large CPU batches are split into multiplicity-sorted sub-batches (shared by worker
    threads): same result, rows back in input order, torch's thread count restored; with
    gradients required the batch is computed whole."""
    import jetace.features.bip as bip

    p4, mask = pad(toy_jets(11, seed=12))
    p4 = p4.to(dtype)
    f = BIPFeatures(3, 6)
    whole = f(p4, mask)
    monkeypatch.setattr(bip, "CPU_CHUNK", 3)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        split = f(p4, mask)
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    assert split.dtype == dtype and split.shape == whole.shape
    assert_reproduced(split, whole, f"{threads} threads, sub-batches of 3")
    graph = f(p4.clone().requires_grad_(), mask)  # computed whole, as ``whole`` was
    assert graph.grad_fn is not None
    torch.testing.assert_close(graph.detach(), whole, **EXACT)


@pytest.mark.reproducibility
@pytest.mark.parametrize("dtype,threads,chunk", [(torch.float64, 1, 3), (torch.float64, 2, 3),
                                                 (torch.float32, 2, 4), (torch.float64, 1, 512)])
def test_packed_input_gives_the_padded_features(monkeypatch, dtype, threads, chunk):
    """forward_packed (flat constituents + counts, as jetace.io.to_packed gives them) is
    forward on the padded batch: jets of all sizes, empty ones, any sub-batch size."""
    import jetace.features.bip as bip

    jets = toy_jets(13, seed=21, min_particles=1)
    jets[4] = np.zeros((0, 4))
    p4, mask = pad(jets)
    p4 = p4.to(dtype)
    counts = mask.sum(1)
    flat = p4[mask]  # row-major: jet after jet, constituents in order
    f = BIPFeatures(3, 6, mirror=True)
    whole = f(p4, mask)
    monkeypatch.setattr(bip, "CPU_CHUNK", chunk)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = f.forward_packed(flat, counts)
        padded = f(p4, mask)  # the same sub-batches, padded
    finally:
        torch.set_num_threads(before)
    assert got.dtype == dtype and got.shape == whole.shape
    assert torch.all(got[4] == 0)
    assert_reproduced(got, padded, "packed against padded, same sub-batch size")
    assert_reproduced(got, whole, "packed sub-batches against the whole padded batch")
    assert f.forward_packed(flat[:0], counts[:0]).shape == (0, f.num_features)
    with pytest.raises(ValueError, match="sum"):
        f.forward_packed(flat[1:], counts)
    with pytest.raises(ValueError, match="flat"):
        f.forward_packed(flat[:, :3], counts)


def test_invariance_on_generated_jets():
    """Real Pythia jets as stored (the shipped demo sample: float32 momenta, so massless
    constituents read back slightly spacelike), in float64: rotations and boosts along
    the axis change no feature by more than STORED_INVARIANCE of its column's scale,
    as on physical jets; the signed m^2 of definition 2 keeps m_T^2 = E^2 - z^2 exact."""
    rng = np.random.default_rng(21)
    p4, mask = stored_demo_jets(rng, 48)
    f = BIPFeatures(4, 7, complete=True)
    rot = random_rotation(rng)
    tol = STORED_INVARIANCE["bip"]
    assert_invariant(f, p4, mask, lambda q: rotate(q, rot), tol, "rotation", floor=COLUMN_SCALE)
    for beta in (0.8, 0.95):  # the figures of the issue, with the jets' own direction kept
        rap = torch.full((len(p4),), math.atanh(beta), dtype=p4.dtype)
        rap = torch.minimum(rap, 0.9 * jet_rapidity_along_axis(p4, mask))
        assert_invariant(f, p4, mask, lambda q, r=rap: boost_along_axis(q, mask, r), tol,
                         f"boost beta {beta}", floor=COLUMN_SCALE)
