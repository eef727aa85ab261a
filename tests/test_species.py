"""Species channels (jetace.species, BIPFeatures(species=...)): weights from particle
identity, aligned with the momenta; symmetric features; the kinematic family inside."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import torch
from symmetry import assert_invariant, boost_along_axis, random_axis_rapidity, random_rotation
from symmetry import rotate as rotate3
from tolerances import (
    BIP_INVARIANCE,
    COLUMN_SCALE,
    EXACT,
    FEATURE_RTOL,
    LORENTZ_INVARIANCE,
    REFERENCE,
    assert_reproduced,
)
from toyjets import toy_jets

import jetace
from jetace import BIPFeatures
from jetace.errors import InputError
from jetace.features.bip import R_OFFSET, U_SCALE, U_SHIFT
from jetace.species import DEFAULT_SPECIES, check_species, species_columns

PIDS = np.array([211, -211, 22, 130, 2112, 11, -13, 321, 22, 22])


def _jets(n: int = 12, seed: int = 4, flags: bool = False) -> ak.Array:
    """Toy jets as read_jets returns them, with PDG ids and charges per constituent."""
    rng = np.random.default_rng(seed)
    raw = toy_jets(n, seed=seed, min_particles=3)
    counts = [len(j) for j in raw]
    flat = np.concatenate(raw)
    pid = rng.choice(PIDS, len(flat))
    charge = np.where(np.isin(np.abs(pid), (22, 130, 2112)), 0, np.sign(pid)).astype(float)
    charge[np.isin(pid, (11, 13))] *= -1  # e-, mu- have charge -1
    fields = {"energy": flat[:, 0], "px": flat[:, 1], "py": flat[:, 2], "pz": flat[:, 3],
              "charge": charge}
    if flags:
        a = np.abs(pid)
        fields.update(is_charged_hadron=((charge != 0) & ~np.isin(a, (11, 13))).astype(float),
                      is_neutral_hadron=np.isin(a, (130, 2112)).astype(float),
                      is_photon=(a == 22).astype(float), is_electron=(a == 11).astype(float),
                      is_muon=(a == 13).astype(float))
    else:
        fields["pid"] = pid
    cons = ak.unflatten(ak.zip(fields), counts)
    return ak.zip({"constituents": cons}, depth_limit=1)


def test_channel_names_and_errors():
    assert check_species("default") == DEFAULT_SPECIES
    assert check_species("photon, charge") == ("photon", "charge")
    assert check_species(None) == ()
    with pytest.raises(ValueError, match="unknown species channel.*'kaon'"):
        check_species(["kaon"])
    bare = ak.zip({"constituents": ak.unflatten(ak.zip({"px": [1.0], "py": [1.0], "pz": [1.0],
                                                         "energy": [2.0]}), [1])},
                  depth_limit=1)
    with pytest.raises(InputError, match="mine.root.*need per-constituent particle identity"):
        species_columns(bare.constituents, ["photon"], where="mine.root")
    with pytest.raises(InputError, match="particle identity"):
        jetace.to_padded(bare, species=["photon"])


def test_pid_and_flag_sources_agree_and_follow_the_momenta():
    """The weights from (pid, charge) and from the JetClass flags are the same, and
    to_padded orders and truncates them with the constituents."""
    a = jetace.to_padded(_jets(), max_particles=8, dtype=torch.float64,
                         species=DEFAULT_SPECIES)
    b = jetace.to_padded(_jets(flags=True), max_particles=8, dtype=torch.float64,
                         species=DEFAULT_SPECIES)
    torch.testing.assert_close(a[0], b[0], **EXACT)
    p4, mask = a
    assert p4.shape[-1] == 4 + len(DEFAULT_SPECIES)
    plain, _ = jetace.to_padded(_jets(), max_particles=8, dtype=torch.float64)
    assert torch.equal(p4[..., :4], plain)
    w = p4[mask][:, 4:]  # charge, charged hadron, neutral hadron, photon, lepton
    assert set(w[:, 0].tolist()) <= {-1.0, 0.0, 1.0}
    assert torch.all(w[:, 1:].sum(1) == 1)  # each constituent is one of the four kinds
    assert torch.all((w[:, 0] != 0) == ((w[:, 1] + w[:, 4]) == 1))


@pytest.fixture(scope="module")
def species_jets():
    return jetace.to_padded(_jets(16), max_particles=None, dtype=torch.float64,
                            species=DEFAULT_SPECIES)


@pytest.mark.parametrize("kw", [{"channel_mode": "reduced", "rank": 2},
                                {"channel_mode": "reduced", "rank": 2, "species_weight": "count"},
                                {"channel_mode": "full", "mirror": True}])
def test_species_features_are_symmetric(species_jets, kw):
    p4, mask = species_jets
    order, degree = (3, 5) if kw["channel_mode"] == "reduced" else (2, 4)
    f = BIPFeatures(order, degree, species=DEFAULT_SPECIES, **kw)
    rng = np.random.default_rng(9)
    rot = random_rotation(rng)
    rap = random_axis_rapidity(p4[..., :4], mask, rng, 1.0).clamp(max=1.0)

    def rotate(q):
        return torch.cat([rotate3(q[..., :4], rot), q[..., 4:]], -1)

    def boost(q):
        return torch.cat([boost_along_axis(q[..., :4], mask, rap), q[..., 4:]], -1)

    # toy jets hold constituents down to 1e-6 GeV almost on the axis (ill-conditioned
    # in the input itself), as in test_bip's toy-jet invariance
    assert_invariant(f, p4, mask, rotate, BIP_INVARIANCE["toy_jets"], "rotation")
    assert_invariant(f, p4, mask, boost, BIP_INVARIANCE["toy_jets"], "boost")
    perm = torch.randperm(p4.shape[1], generator=torch.Generator().manual_seed(1))
    assert_reproduced(f(p4[:, perm], mask[:, perm]), f(p4, mask), "permutation")
    flat, counts = p4[mask], mask.sum(1)
    assert_reproduced(f.forward_packed(flat, counts), f(p4, mask), "packed")


def test_reduced_channels_contain_the_kinematic_features(species_jets):
    """Per body order the first mixture is the 'all' channel: those columns are the
    kinematic family's; the count grows with the rank, not with C^nu."""
    p4, mask = species_jets
    kin = BIPFeatures(3, 5, mirror=True)
    f = BIPFeatures(3, 5, mirror=True, species=DEFAULT_SPECIES, rank=3)
    x, xk = f(p4, mask), kin(p4[..., :4], mask)
    first = [i for i, t in enumerate(f.terms) if t[0][0] % 3 == 0]
    assert len(first) == kin.num_features and f.num_features == 3 * kin.num_features
    assert_reproduced(x[:, first], xk, "the 'all' mixtures")
    assert not torch.allclose(x[:, [i for i in range(f.num_features) if i not in first]][:, :20],
                              xk[:, :20])


def test_full_channels_with_unit_weights_are_kinematic_products():
    """Full channel combinations: with every constituent a charged hadron, each product
    over channels (all, charged_hadron) equals the kinematic product."""
    jets = _jets(6)
    p4, mask = jetace.to_padded(jets, max_particles=None, dtype=torch.float64,
                                species=["charged_hadron"])
    p4[..., 4] = mask.double()  # every constituent charged
    f = BIPFeatures(2, 4, species=["charged_hadron"], channel_mode="full")
    kin = BIPFeatures(2, 4)
    x, xk = f(p4, mask), kin(p4[..., :4], mask)
    by_name = dict(zip(kin.feature_names, xk.T, strict=True))
    for j, term in enumerate(f.terms):
        kinematic = sorted(e[1:] for e in term)  # as the kinematic family orders them
        name = "bip_" + "_".join(f"k{k}l{l}n{n}".replace("-", "m") for k, l, n in kinematic)
        assert_reproduced(x[:, j:j + 1], by_name[name][:, None], f.feature_names[j])
    assert f.num_features > kin.num_features


def test_species_spec_round_trip_and_shape_error(species_jets):
    from jetace.features import features_from_spec

    f = BIPFeatures(3, 5, mirror=True, species="photon,charge", rank=2, mixing_seed=3)
    g = features_from_spec(f.spec)
    assert g.spec == f.spec and g.species == ("photon", "charge")
    p4, mask = jetace.to_padded(_jets(5), max_particles=None, dtype=torch.float64,
                                species=g.species)
    torch.testing.assert_close(g(p4, mask), f(p4, mask), **EXACT)
    with pytest.raises(ValueError, match=r"p4 \(B, P, 6\).*species=module.species"):
        f(p4[..., :4], mask)


def _u_reference(jet: np.ndarray) -> np.ndarray:
    """u_j of docs/definition.md 2.3, per constituent, from a plain float64 loop: r_t is
    the momentum transverse to the jet's total three-momentum."""
    axis = jet[:, 1:].sum(0)
    axis = axis / np.linalg.norm(axis)
    r = np.array([np.linalg.norm(p - (p @ axis) * axis) for p in jet[:, 1:]]) + R_OFFSET
    return (np.log(r / r.sum()) + U_SHIFT) / U_SCALE


@pytest.mark.parametrize("family", ["bip", "lorentz"])
def test_counting_channels_count_constituents(family):
    """species_weight="count": a species channel's k = 0 body-order-1 column is the
    number of the jet's constituents of that species (the "radial" weighting is not);
    in bip its k = 1 column is the sum of u_j over them (a slow reference)."""
    jets = _jets(10, seed=5)
    names = ["charged_hadron", "photon"]
    p4, mask = jetace.to_padded(jets, max_particles=None, dtype=torch.float64, species=names)
    kw = {"species": names, "channel_mode": "full"}
    if family == "bip":
        f, radial = BIPFeatures(1, 6, species_weight="count", **kw), BIPFeatures(1, 6, **kw)
    else:
        f = jetace.LorentzACEFeatures(order=1, species_weight="count", **kw)
        radial = jetace.LorentzACEFeatures(order=1, **kw)
    prefix = family[:3]
    x, xr = f(p4, mask), radial(p4, mask)
    pid = [np.abs(np.asarray(c.pid)) for c in jets.constituents]
    charge = [np.asarray(c.charge) for c in jets.constituents]
    expected = {1: [np.sum((q != 0) & ~np.isin(a, (11, 13)))
                    for a, q in zip(pid, charge, strict=True)],
                2: [np.sum(a == 22) for a in pid]}
    suffix = "k0l0n0" if family == "bip" else "k0l0"
    for c, counts in expected.items():
        col = f.feature_names.index(f"{prefix}_c{c}{suffix}")
        assert_reproduced(x[:, col], torch.tensor(counts, dtype=torch.float64),
                          f"channel {c} count")
        assert not torch.allclose(xr[:, col], x[:, col])
    if family == "bip":
        col = f.feature_names.index("bip_c1k1l0n0")
        ref = []
        for j, jet in enumerate(jets.constituents):
            arr = np.stack([np.asarray(jet[k], dtype=np.float64)
                            for k in ("energy", "px", "py", "pz")], 1)
            sel = (charge[j] != 0) & ~np.isin(pid[j], (11, 13))
            ref.append(_u_reference(arr)[sel].sum())
        tol = REFERENCE["bip"]
        torch.testing.assert_close(x[:, col], torch.tensor(ref, dtype=torch.float64),
                                   rtol=tol, atol=tol)
    # the "all" channel keeps its radial weight: it equals the kinematic family
    kin = BIPFeatures(1, 6) if family == "bip" else jetace.LorentzACEFeatures(order=1)
    assert_reproduced(x[:, :kin.num_features], kin(p4[..., :4], mask), "'all' channel")


def test_species_weight_spec_and_errors():
    from jetace.features import features_from_spec

    f = BIPFeatures(2, 4, species="photon", species_weight="count")
    assert f.spec["species_weight"] == "count"
    assert features_from_spec(f.spec).species_weight == "count"
    assert "species_weight" not in BIPFeatures(2, 4, species="photon").spec
    with pytest.raises(ValueError, match="species_weight must be one of"):
        BIPFeatures(2, 4, species="photon", species_weight="counts")
    with pytest.raises(ValueError, match="not with irc_safe"):
        jetace.LorentzACEFeatures(order=2, irc_safe=True, species="photon",
                                  species_weight="count")


# ------------------------------------------------------------------ the lorentz family

def _lorentz_matrix(rng: np.random.Generator, gamma_max: float = 5.0) -> torch.Tensor:
    gamma = rng.uniform(1.0, gamma_max)
    n = rng.normal(size=3)
    n /= np.linalg.norm(n)
    lam = np.eye(4)
    lam[0, 0] = gamma
    lam[0, 1:] = lam[1:, 0] = np.sqrt(gamma**2 - 1) * n
    lam[1:, 1:] += (gamma - 1) * np.outer(n, n)
    rot = np.eye(4)
    rot[1:, 1:] = random_rotation(rng)
    return torch.as_tensor(rot @ lam)


@pytest.mark.parametrize("kw", [{"channel_mode": "reduced", "rank": 2},
                                {"channel_mode": "reduced", "rank": 2, "species_weight": "count"},
                                {"channel_mode": "full", "irc_safe": True}])
def test_lorentz_species_features_are_invariant(species_jets, kw):
    from jetace.reproducibility import deviation

    p4, mask = species_jets
    f = jetace.LorentzACEFeatures(order=3, degree=6, species=DEFAULT_SPECIES, **kw)
    x = f(p4, mask)
    lam = _lorentz_matrix(np.random.default_rng(3))
    moved = torch.cat([(p4[..., :4] @ lam.T) * mask[..., None], p4[..., 4:]], -1)
    assert deviation(x, f(moved, mask), floor=COLUMN_SCALE) < LORENTZ_INVARIANCE
    # a permutation reorders the sums; charge-weighted sums cancel, so this is judged on
    # each column's scale (the contract covers batchings, which keep the order)
    perm = torch.randperm(p4.shape[1], generator=torch.Generator().manual_seed(2))
    assert deviation(f(p4[:, perm], mask[:, perm]), x, floor=COLUMN_SCALE) <= \
        FEATURE_RTOL[p4.dtype]


def test_lorentz_reduced_channels_contain_the_kinematic_features(species_jets):
    p4, mask = species_jets
    kin = jetace.LorentzACEFeatures(order=3, degree=6)
    f = jetace.LorentzACEFeatures(order=3, degree=6, species=DEFAULT_SPECIES, rank=2)
    first = [i for i, (labels, _) in enumerate(f.terms) if labels[0][0] % 2 == 0]
    assert len(first) == kin.num_features and f.num_features == 2 * kin.num_features
    assert_reproduced(f(p4, mask)[:, first], kin(p4[..., :4], mask), "the 'all' mixtures")
    g = jetace.features.features_from_spec(f.spec)
    assert g.feature_names == f.feature_names and g.species == f.species


# ------------------------------------------------------------------ files and commands

def _write_identity_file(path, jets: ak.Array, identity: bool = True):
    from toyjets import write_branches

    cons = jets.constituents
    branches = {f"part_{f}": ak.values_astype(cons[f], np.float32)
                for f in ("px", "py", "pz", "energy")}
    if identity:
        branches["part_pid"] = ak.values_astype(cons.pid, np.int32)
        branches["part_charge"] = ak.values_astype(cons.charge, np.float32)
    branches["label_QCD"] = np.ones(len(jets), dtype=bool)
    return write_branches(path, branches)


def test_features_command_with_species(tmp_path, capsys):
    import pyarrow.parquet as pq

    from jetace.cli import main

    jets = _jets(20)
    path = _write_identity_file(tmp_path / "id.root", jets)
    out = tmp_path / "f.parquet"
    args = ["features", str(path), "-o", str(out), "--order", "2", "--degree", "3",
            "--mirror", "--species", "default", "--rank", "2", "--quiet", "--device", "cpu"]
    assert main(args) == 0
    f = BIPFeatures(2, 3, mirror=True, species="default", rank=2)
    table = pq.read_table(out)
    cols = [c for c in table.column_names if c.startswith("bip_")]
    assert len(cols) == f.num_features and len(table) == 20
    p4, mask = jetace.to_padded(jetace.read_jets(str(path)), species=f.species)
    assert_reproduced(np.stack([table[c].to_numpy() for c in cols], 1), f(p4, mask),
                      "jetace features --species")
    bare = _write_identity_file(tmp_path / "bare.root", jets, identity=False)
    assert main([*args[:1], str(bare), "-o", str(tmp_path / "g.parquet"), *args[4:]]) == 1
    err = capsys.readouterr().err
    assert "bare.root" in err and "particle identity" in err
    assert not (tmp_path / "g.parquet").exists()


def test_features_command_species_weight(tmp_path, capsys):
    import pyarrow.parquet as pq

    from jetace.cli import main

    path = _write_identity_file(tmp_path / "id.root", _jets(8))
    out = tmp_path / "f.parquet"
    common = [str(path), "--order", "2", "--degree", "3", "--quiet", "--device", "cpu"]
    assert main(["features", *common, "-o", str(out), "--species", "photon,charged_hadron",
                 "--species-weight", "count"]) == 0
    f = BIPFeatures(2, 3, species="photon,charged_hadron", species_weight="count")
    table = pq.read_table(out)
    p4, mask = jetace.to_padded(jetace.read_jets(str(path)), species=f.species)
    cols = [c for c in table.column_names if c.startswith("bip_")]
    assert_reproduced(np.stack([table[c].to_numpy() for c in cols], 1), f(p4, mask),
                      "jetace features --species-weight count")
    assert main(["features", *common, "-o", str(tmp_path / "g.parquet"),
                 "--species-weight", "count"]) == 1
    assert "apply with --species only" in capsys.readouterr().err


def test_feature_modules_take_numpy():
    p4, mask = jetace.to_padded(_jets(4), dtype=torch.float64)
    for f in (BIPFeatures(2, 3), jetace.LorentzACEFeatures(order=2, degree=3)):
        got = f(p4.numpy(), mask.numpy())
        assert isinstance(got, np.ndarray)
        torch.testing.assert_close(torch.from_numpy(got), f(p4, mask), **EXACT)
