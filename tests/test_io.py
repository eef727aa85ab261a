"""Tests of jetace.io and jetace.schema: reading ROOT files into jets, padding, bad input."""

from __future__ import annotations

import json
import warnings

import awkward as ak
import numpy as np
import pytest
import torch
from tolerances import FLOAT32_DERIVED, FLOAT32_REST_FRAME, FLOAT32_ROUNDING, VECTOR_ETA
from toyjets import toy_jets, write_branches, write_jetclass

import jetace
from jetace.errors import InputError
from jetace.io import (
    JetFiles,
    count_jets,
    expand_paths,
    iterate_jets,
    read_jets,
    to_packed,
    to_padded,
)
from jetace.schema import JETCLASS, Schema, resolve_schema


def _momenta(jets: ak.Array) -> list[np.ndarray]:
    """Per jet (n, 4) float64 arrays (E, px, py, pz) in stored order."""
    c = jets.constituents
    return [np.stack([np.asarray(c.energy[i]), np.asarray(c.px[i]), np.asarray(c.py[i]),
                      np.asarray(c.pz[i])], axis=1).astype(np.float64) for i in range(len(jets))]


@pytest.fixture(scope="module")
def toy():
    return toy_jets(40, seed=3)


@pytest.fixture(params=[False, True], ids=["ttree", "rntuple"])
def toy_file(request, tmp_path, toy):
    path = write_jetclass(tmp_path / "toy.root", toy, {"label_Tbqq": True, "label_QCD": False},
                          rntuple=request.param)
    return path


def _three_files(tmp_path, rntuple=False):
    sets = [toy_jets(n, seed=s) for n, s in [(7, 1), (11, 2), (5, 3)]]
    paths = [write_jetclass(tmp_path / f"part{i}.root", js, rntuple=rntuple)
             for i, js in enumerate(sets)]
    return paths, [j for js in sets for j in js]


# ----------------------------------------------------------------------------- reading


def test_read_layout_values_and_labels(toy_file, toy):
    jets = read_jets(toy_file)
    assert len(jets) == len(toy)
    assert set(ak.fields(jets)) == {"constituents", "jet", "label_Tbqq", "label_QCD"}
    assert set(ak.fields(jets.constituents)) == {"px", "py", "pz", "energy"}
    for got, want in zip(_momenta(jets), toy, strict=True):
        np.testing.assert_array_equal(got, want.astype(np.float32))
    assert jets.label_Tbqq.type.content == ak.types.NumpyType("bool")
    assert ak.all(jets.label_Tbqq) and not ak.any(jets.label_QCD)
    np.testing.assert_array_equal(jets.jet.nparticles, [len(j) for j in toy])


def test_vector_behaviour(toy_file):
    jets = read_jets(toy_file)
    c = jets.constituents
    np.testing.assert_allclose(ak.flatten(c.pt), ak.flatten(np.hypot(c.px, c.py)),
                               rtol=FLOAT32_ROUNDING)
    eta = np.arcsinh(ak.flatten(c.pz) / ak.flatten(c.pt))
    np.testing.assert_allclose(ak.flatten(c.eta), eta, **VECTOR_ETA)
    # energy is the temporal coordinate: boosting a jet into its rest frame gives zero momentum
    total = ak.sum(ak.Array(c, with_name="Momentum4D"), axis=1)
    rest = c.boost_beta3(-total.to_beta3())
    assert np.all(np.abs(ak.sum(rest.px, axis=1)) < FLOAT32_REST_FRAME["momentum"] * total.p)
    # float32 inputs, boosts with gamma ~ 50: agreement to 1e-2 is all one can ask
    np.testing.assert_allclose(ak.sum(rest.energy, axis=1), total.mass,
                               rtol=FLOAT32_REST_FRAME["mass"])
    # the jet record (pt, eta, phi, energy) is a vector too
    np.testing.assert_allclose(jets.jet.px, jets.jet.pt * np.cos(jets.jet.phi),
                               rtol=FLOAT32_DERIVED)


def test_jet_mass_and_energy_kept_exactly(tmp_path):
    jets = toy_jets(6, seed=4)
    e = np.array([j[:, 0].sum() for j in jets], np.float32)
    mass = np.arange(6, dtype=np.float32) + 100.5
    counts = [len(j) for j in jets]
    flat = np.concatenate(jets).astype(np.float32)
    part = {k: ak.unflatten(flat[:, i], counts) for i, k in enumerate(["energy", "px", "py", "pz"])}
    path = write_branches(tmp_path / "m.root", {
        **{f"part_{k}": v for k, v in part.items()},
        "jet_pt": np.full(6, 500, np.float32), "jet_eta": np.zeros(6, np.float32),
        "jet_phi": np.zeros(6, np.float32), "jet_energy": e, "jet_mass": mass})
    out = read_jets(path)
    np.testing.assert_array_equal(out.jet.mass, mass)
    np.testing.assert_array_equal(out.jet.raw_energy, e)
    np.testing.assert_allclose(out.jet.energy, np.sqrt(500.0**2 + mass.astype(float) ** 2),
                               rtol=FLOAT32_ROUNDING)


def test_extras_read_when_present_and_optional(tmp_path):
    jets = toy_jets(5, seed=5)
    counts = [len(j) for j in jets]
    flat = np.concatenate(jets).astype(np.float32)
    branches = {f"part_{k}": ak.unflatten(flat[:, i], counts)
                for i, k in enumerate(["energy", "px", "py", "pz"])}
    branches["part_charge"] = ak.unflatten(np.ones(len(flat), np.float32), counts)
    path = write_branches(tmp_path / "x.root", branches)
    out = read_jets(path)
    assert "charge" in ak.fields(out.constituents) and "pid" not in ak.fields(out.constituents)
    assert ak.all(out.constituents.charge == 1)
    assert "charge" not in ak.fields(read_jets(path, extras=False).constituents)
    # no jet or label branches at all: an empty jet record, no label fields
    assert ak.fields(out.jet) == [] and set(ak.fields(out)) == {"constituents", "jet"}


def test_many_files_list_and_glob(tmp_path):
    paths, all_jets = _three_files(tmp_path)
    for arg in (paths, str(tmp_path / "part*.root"), [str(tmp_path / "part[0-1].root"), paths[2]]):
        jets = read_jets(arg)
        assert len(jets) == len(all_jets)
        for got, want in zip(_momenta(jets), all_jets, strict=True):
            np.testing.assert_array_equal(got, want.astype(np.float32))
    assert count_jets(paths) == len(all_jets)
    assert expand_paths(str(tmp_path / "part*.root")) == [str(p) for p in paths]


@pytest.mark.parametrize("max_jets", [0, 3, 7, 10, 18, 23, 100])
def test_max_jets_across_files(tmp_path, max_jets):
    paths, all_jets = _three_files(tmp_path)
    jets = read_jets(paths, max_jets=max_jets)
    assert len(jets) == min(max_jets, len(all_jets))
    for got, want in zip(_momenta(jets), all_jets[:max_jets], strict=False):
        np.testing.assert_array_equal(got, want.astype(np.float32))
    n = sum(len(c) for c in iterate_jets(paths, step_size=4, max_jets=max_jets))
    assert n == min(max_jets, len(all_jets))


@pytest.mark.parametrize("rntuple", [False, True], ids=["ttree", "rntuple"])
@pytest.mark.parametrize("step_size", [1, 4, 6, "13", 1000, "1 kB", "100 MB"])
def test_iterate_every_jet_once_in_order(tmp_path, rntuple, step_size):
    paths, all_jets = _three_files(tmp_path, rntuple=rntuple)
    chunks = list(iterate_jets(paths, step_size=step_size))
    assert all(len(c) > 0 for c in chunks)
    if isinstance(step_size, int) or step_size.isdigit():
        assert all(len(c) <= int(step_size) for c in chunks)
    got = [m for c in chunks for m in _momenta(c)]
    assert len(got) == len(all_jets)
    for g, w in zip(got, all_jets, strict=True):
        np.testing.assert_array_equal(g, w.astype(np.float32))


def test_iterate_checks_all_files_before_first_chunk(tmp_path):
    paths, _ = _three_files(tmp_path)
    bad = write_branches(tmp_path / "bad.root", {"jet_pt": np.ones(3, np.float32)})
    with pytest.raises(InputError, match="bad.root.*part_px"):
        iterate_jets([*paths, bad])


def test_skip_bad_files(tmp_path):
    paths, all_jets = _three_files(tmp_path)
    bad = write_branches(tmp_path / "bad.root", {"jet_pt": np.ones(3, np.float32)})
    with pytest.warns(UserWarning, match="bad.root"):
        files = JetFiles([paths[0], bad, paths[1]], skip_bad=True)
    assert files.files == [str(paths[0]), str(paths[1])]
    assert [p for p, _ in files.skipped] == [str(bad)] and "part_px" in files.skipped[0][1]
    assert len(files.read()) == 7 + 11
    with pytest.raises(InputError, match="none of the input files"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        JetFiles([bad], skip_bad=True)


def test_public_names_from_package(toy_file):
    assert jetace.read_jets is read_jets and jetace.JETCLASS is JETCLASS
    p4, mask = jetace.to_padded(jetace.read_jets(toy_file), max_particles=8)
    assert p4.shape == (40, 8, 4) and mask.shape == (40, 8)


# ----------------------------------------------------------------------------- padding


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_to_padded_shapes_dtypes(toy_file, dtype):
    jets = read_jets(toy_file)
    p4, mask = to_padded(jets, max_particles=70, dtype=dtype)
    assert p4.shape == (len(jets), 70, 4) and p4.dtype == dtype and p4.device.type == "cpu"
    assert mask.shape == (len(jets), 70) and mask.dtype == torch.bool
    counts = ak.to_numpy(ak.num(jets.constituents))
    np.testing.assert_array_equal(mask.sum(1).numpy(), np.minimum(counts, 70))
    assert torch.all(p4[~mask] == 0)


def _shuffled(jets: ak.Array, seed: int) -> ak.Array:
    rng = np.random.default_rng(seed)
    perm = ak.Array([rng.permutation(n) for n in ak.num(jets.constituents)])
    return ak.with_field(jets, jets.constituents[perm], "constituents")


@pytest.mark.parametrize("max_particles", [1, 10, 25, 60, None])
def test_to_padded_sorts_by_pt_then_truncates(toy_file, max_particles):
    jets = _shuffled(read_jets(toy_file), seed=1)
    p4, mask = to_padded(jets, max_particles=max_particles, dtype=torch.float64)
    counts = ak.to_numpy(ak.num(jets.constituents))
    size = counts.max() if max_particles is None else max_particles
    assert p4.shape[1] == size
    for i, m in enumerate(_momenta(jets)):
        # reference: a plain stable sort by falling pT, then cut
        ref = m[np.argsort(-(m[:, 1] ** 2 + m[:, 2] ** 2), kind="stable")][:size]
        k = len(ref)
        np.testing.assert_array_equal(p4[i, :k].numpy(), ref)
        assert mask[i, :k].all() and not mask[i, k:].any()
        assert torch.all(p4[i, k:] == 0)
    # the stored order does not matter
    p4b, maskb = to_padded(_shuffled(jets, seed=2), max_particles=max_particles,
                           dtype=torch.float64)
    assert torch.equal(p4, p4b) and torch.equal(mask, maskb)


@pytest.mark.parametrize("max_particles", [1, 10, 60, None])
def test_to_packed_holds_the_rows_of_to_padded(toy_file, max_particles):
    """Packed constituents are the padded ones without the padding: the same sorted and
    truncated rows, jet after jet (checked against each jet's own padded row)."""
    jets = _shuffled(read_jets(toy_file), seed=3)
    flat, counts = to_packed(jets, max_particles=max_particles, dtype=torch.float64)
    p4, mask = to_padded(jets, max_particles=max_particles, dtype=torch.float64)
    assert flat.dtype == torch.float64 and counts.dtype == torch.int64
    assert flat.T.is_contiguous()  # column-major: four component planes
    assert counts.tolist() == mask.sum(1).tolist() and len(flat) == int(counts.sum())
    start = 0
    for i, n in enumerate(counts.tolist()):
        assert torch.equal(flat[start:start + n], p4[i, :n])
        start += n
    f32, c32 = to_packed(jets, max_particles=max_particles)
    assert f32.dtype == torch.float32 and torch.equal(f32, flat.float())


def test_to_packed_empty_jets_and_errors():
    cons = ak.zip({"px": [[], [1.0, 2.0], []], "py": [[], [0.0, 0.0], []],
                   "pz": [[], [5.0, 6.0], []], "energy": [[], [9.0, 8.0], []]})
    flat, counts = to_packed(cons, max_particles=1)
    assert counts.tolist() == [0, 1, 0] and flat.tolist() == [[8.0, 2.0, 0.0, 6.0]]
    flat, counts = to_packed(cons[:0])
    assert flat.shape == (0, 4) and counts.shape == (0,)
    with pytest.raises(InputError, match="awkward Array"):
        to_packed(np.zeros((2, 4)))
    with pytest.raises(InputError, match=r"missing \['energy'\]"):
        to_packed(ak.zip({"px": [[1.0]], "py": [[1.0]], "pz": [[1.0]]}))
    with pytest.raises(InputError, match="at least 1"):
        to_packed(cons, max_particles=0)


def test_to_padded_accepts_constituents_and_keeps_ties_in_order():
    cons = ak.zip({"px": [[1.0, 0.0, 3.0], []], "py": [[0.0, 1.0, 0.0], []],
                   "pz": [[5.0, 6.0, 7.0], []], "energy": [[9.0, 8.0, 7.5], []]})
    p4, mask = to_padded(cons, max_particles=4, dtype=torch.float64)
    # pT 1, 1, 3: hardest first, then the tie in input order
    np.testing.assert_array_equal(p4[0, :3, 0].numpy(), [7.5, 9.0, 8.0])
    assert mask.tolist() == [[True, True, True, False], [False] * 4]


def test_zero_constituent_jets_kept(tmp_path):
    jets = toy_jets(4, seed=6)
    jets.insert(1, np.zeros((0, 4)))
    jets.append(np.zeros((0, 4)))
    path = write_jetclass(tmp_path / "z.root", jets)
    out = read_jets(path)
    assert len(out) == 6
    p4, mask = to_padded(out, max_particles=16)
    assert not mask[1].any() and not mask[5].any() and mask[0].any()
    assert torch.all(p4[1] == 0)


@pytest.mark.parametrize("rntuple", [False, True], ids=["ttree", "rntuple"])
def test_empty_file_gives_empty_array_with_layout(tmp_path, rntuple):
    path = write_jetclass(tmp_path / "empty.root", [], rntuple=rntuple)
    jets = read_jets(path)
    assert len(jets) == 0
    assert set(ak.fields(jets)) == {"constituents", "jet", "label_QCD"}
    assert set(ak.fields(jets.constituents)) == {"px", "py", "pz", "energy"}
    assert list(iterate_jets(path)) == []
    p4, mask = to_padded(jets, max_particles=8)
    assert p4.shape == (0, 8, 4) and mask.shape == (0, 8)
    # an empty file among others adds nothing
    full = write_jetclass(tmp_path / "full.root", toy_jets(3, seed=1), rntuple=rntuple)
    assert len(read_jets([path, full, path])) == 3


# ----------------------------------------------------------------------------- schemas


def _renamed_file(tmp_path, jets):
    counts = [len(j) for j in jets]
    flat = np.concatenate(jets).astype(np.float32)
    cols = {k: ak.unflatten(flat[:, i], counts) for i, k in enumerate(["e", "x", "y", "z"])}
    n = len(jets)
    return write_branches(tmp_path / "renamed.root", {
        "pf_e": cols["e"], "pf_px": cols["x"], "pf_py": cols["y"], "pf_pz": cols["z"],
        "pf_q": ak.unflatten(np.ones(len(flat), np.int32), counts),
        "fj_pt": np.linspace(500, 600, n).astype(np.float32),
        "fj_eta": np.zeros(n, np.float32), "fj_phi": np.zeros(n, np.float32),
        "fj_msd": np.full(n, 80, np.float32), "fj_other": np.ones(n, np.float32),
        "is_top": np.arange(n) % 2 == 0, "is_qcd": (np.arange(n) % 2).astype(np.int32)})


def test_custom_schema_from_json(tmp_path):
    jets = toy_jets(9, seed=7)
    path = _renamed_file(tmp_path, jets)
    spec = {"name": "mine", "px": "pf_px", "py": "pf_py", "pz": "pf_pz", "energy": "pf_e",
            "extras": {"charge": "pf_q"},
            "jet": {"pt": "fj_pt", "eta": "fj_eta", "phi": "fj_phi", "mass": "fj_msd"},
            "labels": ["is_top", "is_qcd"]}
    schema_file = tmp_path / "mine.json"
    schema_file.write_text(json.dumps(spec))
    schema = Schema.from_json(schema_file)
    assert schema.name == "mine" and resolve_schema(str(schema_file)) == schema
    out = read_jets(path, schema=str(schema_file))
    for got, want in zip(_momenta(out), jets, strict=True):
        np.testing.assert_array_equal(got, want.astype(np.float32))
    assert set(ak.fields(out.jet)) == {"pt", "eta", "phi", "mass"}  # fj_other not mapped
    np.testing.assert_allclose(out.jet.mass, 80)
    assert out.is_top.tolist() == [i % 2 == 0 for i in range(9)]
    assert out.is_qcd.tolist() == [i % 2 == 1 for i in range(9)]  # int label -> bool
    assert ak.all(out.constituents.charge == 1)
    # round trip through JSON
    schema.to_json(tmp_path / "again.json")
    assert Schema.from_json(tmp_path / "again.json") == schema
    # jet fields by prefix, labels by prefix
    out2 = read_jets(path, schema=Schema(px="pf_px", py="pf_py", pz="pf_pz", energy="pf_e",
                                         jet="fj_", labels="is_"))
    assert set(ak.fields(out2.jet)) == {"pt", "eta", "phi", "msd", "other"}
    assert set(ak.fields(out2)) == {"constituents", "jet", "is_top", "is_qcd"}


def test_schema_errors(tmp_path):
    with pytest.raises(InputError, match="unknown schema 'nope'"):
        resolve_schema("nope")
    with pytest.raises(InputError, match="missing.json does not exist"):
        resolve_schema(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"px": "a", "colour": "red"}')
    with pytest.raises(InputError, match="bad.json.*colour"):
        Schema.from_json(bad)
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.json.*JSON"):
        Schema.from_json(bad)
    with pytest.raises(InputError, match="clash"):
        Schema(extras={"mass": "part_m"})
    path = write_jetclass(tmp_path / "t.root", toy_jets(3))
    with pytest.raises(InputError, match="t.root.*label branch 'is_top'"):
        read_jets(path, schema=Schema(labels=["is_top"]))


# ----------------------------------------------------------------------------- bad input


def _jagged(values, counts):
    return ak.unflatten(np.asarray(values, np.float32), counts)


def _branches(counts=(3, 2, 4), **override):
    n = sum(counts)
    rng = np.random.default_rng(0)
    px, py, pz = (rng.normal(0, 10, n) for _ in range(3))
    e = np.sqrt(px**2 + py**2 + pz**2) + 0.1
    out = {"part_px": _jagged(px, counts), "part_py": _jagged(py, counts),
           "part_pz": _jagged(pz, counts), "part_energy": _jagged(e, counts),
           "jet_pt": np.ones(len(counts), np.float32)}
    out.update(override)
    return out


def test_missing_file_and_pattern(tmp_path):
    with pytest.raises(InputError, match="nothere.root: file does not exist"):
        read_jets(tmp_path / "nothere.root")
    with pytest.raises(InputError, match="no file matches"):
        read_jets(str(tmp_path / "*.root"))
    with pytest.raises(InputError, match="no input files"):
        read_jets([])


def test_not_a_root_file(tmp_path):
    text = tmp_path / "notes.root"
    text.write_text("this is not ROOT\n" * 100)
    with pytest.raises(InputError, match="notes.root: not a readable ROOT file"):
        read_jets(text)
    empty = tmp_path / "zero.root"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="zero.root.*0 bytes"):
        read_jets(empty)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_file(tmp_path, keep):
    path = write_jetclass(tmp_path / "trunc.root", toy_jets(300, seed=8))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputError, match="trunc.root"):
        read_jets(path)


def test_corrupted_baskets(tmp_path):
    path = write_jetclass(tmp_path / "corrupt.root", toy_jets(300, seed=8))
    data = bytearray(path.read_bytes())
    # overwrite the middle of the file (basket data), keep header and directory intact
    start = len(data) // 3
    data[start:start + len(data) // 4] = b"\x17" * (len(data) // 4)
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupt.root"):
        read_jets(path)


def test_missing_tree_names_what_is_there(tmp_path):
    path = write_jetclass(tmp_path / "t.root", toy_jets(3), tree="events")
    with pytest.raises(InputError, match=r"t.root: no TTree or RNTuple named 'tree'.*events"):
        read_jets(path)
    assert len(read_jets(path, tree="events")) == 3


def test_missing_branch_lists_available(tmp_path):
    b = _branches()
    del b["part_pz"]
    path = write_branches(tmp_path / "nopz.root", b)
    with pytest.raises(InputError, match=r"nopz.root.*'part_pz'.*available branches:.*part_px"):
        read_jets(path)


@pytest.mark.parametrize("rntuple", [False, True], ids=["ttree", "rntuple"])
def test_wrong_shape_branch(tmp_path, rntuple):
    path = write_branches(tmp_path / "flat.root",
                          _branches(part_px=np.ones(3, np.float32)), rntuple=rntuple)
    with pytest.raises(InputError, match="flat.root.*'part_px' should be jagged"):
        read_jets(path)
    path = write_branches(tmp_path / "jag.root", _branches(jet_pt=_jagged([1, 2, 3], [1, 1, 1])),
                          rntuple=rntuple)
    with pytest.raises(InputError, match="jag.root.*'jet_pt' should be flat"):
        read_jets(path)


def test_non_numeric_branches(tmp_path):
    path = write_branches(tmp_path / "str.root", _branches(jet_pt=ak.Array(["a", "b", "c"])),
                          rntuple=True)
    with pytest.raises(InputError, match="str.root.*'jet_pt' is not numeric"):
        read_jets(path)
    path = write_branches(tmp_path / "str2.root",
                          _branches(part_py=ak.Array([["a"], ["b", "c"], []])), rntuple=True)
    with pytest.raises(InputError, match="str2.root.*'part_py' is not numeric"):
        read_jets(path)
    path = write_branches(tmp_path / "bool.root",
                          _branches(part_px=ak.Array([[True] * 3, [False] * 2, [True] * 4])))
    with pytest.raises(InputError, match="bool.root.*'part_px' is not numeric"):
        read_jets(path)


def test_jagged_length_mismatch_names_jet(tmp_path):
    b = _branches(counts=(3, 2, 4))
    b["part_pz"] = _jagged(np.ones(9), (3, 3, 3))
    path = write_branches(tmp_path / "mis.root", b)
    with pytest.raises(InputError, match="mis.root.*'part_pz' has 3 values but 'part_px' has 2 "
                                         "at jet entry 1"):
        read_jets(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("branch", ["part_px", "part_energy"])
def test_non_finite_momenta_name_file_branch_jet(tmp_path, bad, branch):
    b = _branches(counts=(3, 2, 4, 1))
    values = ak.to_numpy(ak.flatten(b[branch])).copy()
    values[6] = bad  # third constituent of jet 2
    b[branch] = _jagged(values, (3, 2, 4, 1))
    path = write_branches(tmp_path / "nan.root", b)
    with pytest.raises(InputError, match=f"nan.root.*'{branch}'.*NaN or infinite.*jet entry 2"):
        read_jets(path)
    # found in later chunks too, with the entry number in the file
    with pytest.raises(InputError, match="jet entry 2"):
        list(iterate_jets(path, step_size=1))


def test_negative_energy(tmp_path):
    b = _branches(counts=(3, 2, 4))
    e = ak.to_numpy(ak.flatten(b["part_energy"])).copy()
    e[8] = -1.0
    b["part_energy"] = _jagged(e, (3, 2, 4))
    path = write_branches(tmp_path / "neg.root", b)
    with pytest.raises(InputError, match="neg.root.*'part_energy'.*negative energy.*jet entry 2"):
        read_jets(path)


def test_bad_arguments(toy_file):
    with pytest.raises(InputError, match="step size"):
        list(iterate_jets(toy_file, step_size="lots"))
    with pytest.raises(InputError, match="step size"):
        list(iterate_jets(toy_file, step_size=0))
    with pytest.raises(InputError, match="max_jets"):
        read_jets(toy_file, max_jets=-1)
    with pytest.raises(InputError, match="fields px, py, pz, energy"):
        to_padded(ak.Array([{"a": 1}]))
    with pytest.raises(InputError, match="max_particles"):
        to_padded(read_jets(toy_file), max_particles=0)


# ----------------------------------------------------------------------------- ranges


@pytest.mark.parametrize("rntuple", [False, True], ids=["ttree", "rntuple"])
@pytest.mark.parametrize("step_size", [4, "1 kB", None])
def test_ranges_match_iterate_and_read_range(tmp_path, rntuple, step_size):
    paths, _ = _three_files(tmp_path, rntuple=rntuple)
    files = JetFiles(paths)
    chunks = list(files.iterate(step_size, max_jets=20))
    ranges = files.ranges(step_size, max_jets=20)
    assert [b - a for _, a, b in ranges] == [len(c) for c in chunks]
    for (index, a, b), chunk in zip(ranges, chunks, strict=True):
        assert ak.array_equal(files.read_range(index, a, b), chunk)
    assert len(files.read_range(1, 3, 3)) == 0
    with pytest.raises(InputError, match=r"part1.root: entry range \[5, 12\) outside"):
        files.read_range(1, 5, 12)


def test_read_threads_give_the_same_jets(toy_file):
    """Decompression in a pool of threads or in the reading thread: the same jets;
    fewer than one thread is refused."""
    from jetace.io import set_read_threads

    before = set_read_threads(2)
    try:
        pooled = jetace.read_jets(toy_file)
        assert set_read_threads(1) == 2
        inline = jetace.read_jets(toy_file)
        with pytest.raises(ValueError, match="read thread"):
            set_read_threads(0)
    finally:
        set_read_threads(before)
    assert ak.to_list(inline) == ak.to_list(pooled)
