"""The public input formats: Top Tagging HDF5, energyflow .npz, JetClass-style Parquet,
read into the same records as ROOT, streamed, and refused with the file and column
named."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
from formatfiles import write_energyflow, write_parquet, write_top_tagging
from tolerances import FORMAT_CONVERSION
from toyjets import toy_jets, write_jetclass

import jetace
from jetace.errors import InputError
from jetace.formats import format_of, p4_from_ptyphi


def _same_constituents(a: ak.Array, b: ak.Array) -> None:
    for f in ("energy", "px", "py", "pz"):
        np.testing.assert_array_equal(ak.to_numpy(ak.flatten(a.constituents[f])),
                                      ak.to_numpy(ak.flatten(b.constituents[f])))
    np.testing.assert_array_equal(ak.num(a.constituents), ak.num(b.constituents))


def _hardest_first(jets, m):
    out = []
    for j in jets:
        order = np.argsort(-np.hypot(j[:, 1], j[:, 2]), kind="stable")[:m]
        out.append(j[order])
    return out


def test_top_tagging_hdf5_matches_the_same_jets_in_root(tmp_path):
    jets = _hardest_first(toy_jets(40, seed=1, min_particles=3, max_particles=15), 20)
    sig = np.arange(40) % 3 == 0
    h5 = write_top_tagging(tmp_path / "train.h5", jets, sig)
    root = write_jetclass(tmp_path / "same.root", jets)
    got = jetace.read_jets(h5)
    _same_constituents(got, jetace.read_jets(root))
    np.testing.assert_array_equal(got.label_Tbqq, sig)
    np.testing.assert_array_equal(got.label_QCD, ~sig)
    assert set(ak.fields(got.jet)) >= {"pt", "eta", "phi", "truth_energy", "ttv"}
    # E = 0 entries are padding: no constituent with zero energy survives
    assert ak.all(got.constituents.energy > 0)
    # streamed in chunks of 7 jets: the same jets
    chunks = list(jetace.iterate_jets(h5, step_size=7))
    assert [len(c) for c in chunks] == [7] * 5 + [5]
    _same_constituents(ak.concatenate(chunks), got)
    assert len(list(jetace.iterate_jets(h5, step_size="1 kB"))) > 1


def test_energyflow_npz_conversion_and_mass_conventions(tmp_path):
    rng = np.random.default_rng(2)
    rows = []
    for _ in range(25):
        n = rng.integers(2, 20)
        pid = rng.choice([22, 211, -211, 2112, 11], size=n).astype(float)
        rows.append(np.c_[rng.exponential(20, n) + 0.5, rng.normal(0, 0.5, n),
                          rng.uniform(-np.pi, np.pi, n), pid])
    y = rng.integers(0, 2, 25)
    path = write_energyflow(tmp_path / "QG_jets.npz", rows, y)
    jets = jetace.read_jets(path)
    np.testing.assert_array_equal(jets.label_quark, y == 1)
    flat = np.concatenate(rows)
    e, px, py, pz = (ak.to_numpy(ak.flatten(jets.constituents[f]))
                     for f in ("energy", "px", "py", "pz"))
    np.testing.assert_allclose(np.hypot(px, py), flat[:, 0], rtol=FORMAT_CONVERSION["exact_pt"])
    np.testing.assert_allclose(e * e - pz * pz, flat[:, 0] ** 2,
                               rtol=FORMAT_CONVERSION["float64"])  # massless
    np.testing.assert_allclose(0.5 * np.log((e + pz) / (e - pz)), flat[:, 1],
                               atol=FORMAT_CONVERSION["float64"])
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(jets.constituents.pid)), flat[:, 3])
    pion = jetace.read_jets(path, format="energyflow-pion")
    ep, pzp = (ak.to_numpy(ak.flatten(pion.constituents[f])) for f in ("energy", "pz"))
    np.testing.assert_allclose(ep * ep - pzp * pzp, flat[:, 0] ** 2 + 0.13957039 ** 2,
                               rtol=FORMAT_CONVERSION["float64"])
    e2, px2, py2, pz2 = p4_from_ptyphi(flat[:, 0], flat[:, 1], flat[:, 2], flat[:, 3], "pid")
    m2 = e2 ** 2 - px2 ** 2 - py2 ** 2 - pz2 ** 2
    np.testing.assert_allclose(np.sqrt(np.maximum(m2[flat[:, 3] == 2112], 0)), 0.939565,
                               rtol=FORMAT_CONVERSION["mass"])
    np.testing.assert_allclose(m2[flat[:, 3] == 22], 0.0, atol=FORMAT_CONVERSION["mass"])


def test_parquet_jetclass_columns_match_root(tmp_path):
    jets = toy_jets(70, seed=3)
    pq_path = write_parquet(tmp_path / "jets.parquet", jets, {"label_QCD": True})
    root = write_jetclass(tmp_path / "jets.root", jets)
    got = jetace.read_jets(pq_path)
    _same_constituents(got, jetace.read_jets(root))
    assert bool(ak.all(got.label_QCD))
    chunks = list(jetace.iterate_jets(pq_path, step_size=30))  # across row groups of 64
    assert [len(c) for c in chunks] == [30, 30, 10]
    _same_constituents(ak.concatenate(chunks), got)
    assert len(jetace.read_jets(pq_path, max_jets=5)) == 5


def test_format_dispatch_and_errors(tmp_path):
    assert format_of("a.h5") == "toptagging" and format_of("b.NPZ") == "energyflow"
    assert format_of("c.parquet") == "parquet" and format_of("d.root") == "root"
    with pytest.raises(InputError, match="did you mean 'parquet'"):
        format_of("x", "parket")
    jets = toy_jets(10, seed=4)
    # a Top Tagging file without is_signal_new: the file and the column are named
    h5 = write_top_tagging(tmp_path / "bad.h5", jets, np.zeros(10, bool))
    import h5py

    with h5py.File(h5, "a") as f:
        f["table/block1_items"][0] = b"is_signal"
    with pytest.raises(InputError, match=r"bad\.h5: no column 'is_signal_new'.*nearest"):
        jetace.read_jets(h5)
    npz = tmp_path / "bad.npz"
    np.savez(npz, X=np.zeros((3, 5, 4)))
    with pytest.raises(InputError, match=r"bad\.npz: no array 'y'"):
        jetace.read_jets(npz)
    pq_path = write_parquet(tmp_path / "nolab.parquet", jets, {"label_QCD": True})
    with pytest.raises(InputError, match=r"nolab\.parquet.*no branch 'part_e'.*part_energy"):
        jetace.read_jets(pq_path, schema={"energy": "part_e"})
    # NaN momenta are caught as in ROOT files, with the jet entry
    bad = [j.copy() for j in jets]
    bad[6][0, 1] = np.nan
    with pytest.raises(InputError, match=r"nan\.parquet.*part_px.*jet entry 6"):
        jetace.read_jets(write_parquet(tmp_path / "nan.parquet", bad, {"label_QCD": True}))
    with pytest.raises(InputError, match="does not exist"):
        jetace.read_jets(tmp_path / "missing.h5")
    # the format can come with the schema (JSON schema files, --schema)
    renamed = tmp_path / "jets.dat"
    renamed.write_bytes(pq_path.read_bytes())
    assert len(jetace.read_jets(renamed, schema={"format": "parquet"})) == 10
    with pytest.raises(InputError, match="unknown input format 'hdf'"):
        jetace.read_jets(pq_path, schema={"format": "hdf"})


@pytest.mark.slow
def test_commands_read_the_formats(tmp_path, capsys):
    """jetace features and jetace train take the files by extension, or --format."""
    import pyarrow.parquet as pq

    from jetace.cli import main

    jets = _hardest_first(toy_jets(60, seed=5, n_prongs=1), 20) + \
        _hardest_first(toy_jets(60, seed=6, n_prongs=3), 20)
    h5 = write_top_tagging(tmp_path / "train.h5", jets, np.r_[np.zeros(60), np.ones(60)])
    feats = ["--order", "2", "--degree", "4", "--max-particles", "20", "--quiet"]
    assert main(["features", str(h5), "-o", str(tmp_path / "f.parquet"), *feats]) == 0
    table = pq.read_table(tmp_path / "f.parquet")
    assert table.num_rows == 120 and "label_Tbqq" in table.column_names
    assert main(["train", "--inputs", str(h5), "--labels", "label_QCD,label_Tbqq", "-o",
                 str(tmp_path / "m.jetace"), *feats]) == 0
    assert "AUC" in capsys.readouterr().out
    # one file holding both classes: evaluate splits it by the signal's label field
    assert main(["evaluate", str(tmp_path / "m.jetace"), "--inputs", str(h5),
                 "--signal-label", "label_Tbqq", "--json", "--signal-class",
                 "label_Tbqq"]) == 0
    import json

    got = json.loads(capsys.readouterr().out)
    assert got["n_signal"] == 60 and got["n_background"] == 60 and got["auc"] > 0.9
    assert main(["evaluate", str(tmp_path / "m.jetace"), "--inputs", str(h5), "--json",
                 "--signal-label", "label_top"]) != 0
    assert "label_Tbqq" in capsys.readouterr().err  # the label fields there are listed
    assert main(["evaluate", str(tmp_path / "m.jetace"), "--inputs", str(h5)]) != 0
    assert "signal's label field" in capsys.readouterr().err
    odd = tmp_path / "train.data"  # an extension that says nothing: --format says it
    odd.write_bytes(h5.read_bytes())
    assert main(["features", str(odd), "-o", str(tmp_path / "g.parquet"), "--format",
                 "toptagging", *feats]) == 0
    assert pq.read_table(tmp_path / "g.parquet").equals(table)
    assert main(["features", str(odd), "-o", str(tmp_path / "h.parquet"), *feats]) != 0
    assert "train.data" in capsys.readouterr().err  # read as ROOT: not a ROOT file
