"""Internal field names never collide with branch names (issue 18 point 2): a user's
``jet_raw_mass`` / ``jet_raw_energy`` reach the output of features, predict and mix
under their own names, and ``jet_mass`` / ``jet_energy`` stay the mass and the energy."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pyarrow.parquet as pq
import pytest
import uproot
from toyjets import toy_jets, write_branches

from jetace.cli import main
from jetace.errors import InputError
from jetace.io import FIELD_ORIGINS, read_jets
from jetace.outputs import jet_columns
from jetace.training import train_model

N = 40
FEATURES = ["--order", "2", "--degree", "3", "--max-particles", "16", "--quiet"]


def _jet_branches(offset: float) -> dict[str, np.ndarray]:
    """Distinct values per branch and jet, so any swap shows."""
    base = np.arange(N, dtype=np.float32)
    return {"jet_pt": base + 600 + offset, "jet_eta": base / 100, "jet_phi": base / 50,
            "jet_mass": base + 1000 + offset, "jet_raw_mass": base + 2000 + offset,
            "jet_energy": base + 3000 + offset, "jet_raw_energy": base + 4000 + offset,
            "jet_rraw_energy": base + 5000 + offset}


def _write(path, seed: int, top: bool, offset: float):
    jets = toy_jets(N, seed=seed, n_prongs=3 if top else 1, max_particles=20)
    counts = [len(j) for j in jets]
    flat = np.concatenate(jets).astype(np.float32)
    parts = {f"part_{name}": ak.unflatten(flat[:, i], counts)
             for i, name in enumerate(["energy", "px", "py", "pz"])}
    labels = {"label_Tbqq": np.full(N, top), "label_QCD": np.full(N, not top)}
    return write_branches(path, {**parts, **_jet_branches(offset), **labels})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("names")
    return {"sig": _write(d / "sig.root", 1, True, 0.0),
            "bkg": _write(d / "bkg.root", 2, False, 0.5), "dir": d}


def _assert_own_names(table: dict[str, np.ndarray], offset: float = 0.0) -> None:
    for name, values in _jet_branches(offset).items():
        np.testing.assert_array_equal(np.asarray(table[name]), values, err_msg=name)


def test_reader_keeps_every_jet_branch_under_its_name(files):
    jets = read_jets(str(files["sig"]))
    # the record's coordinate is the mass; the other fields are renamed only where needed
    np.testing.assert_array_equal(jets.jet.mass, _jet_branches(0)["jet_mass"])
    assert set(ak.parameters(jets.jet)[FIELD_ORIGINS].values()) == {"energy"}
    _assert_own_names(jet_columns(jets))
    part = jet_columns(jets[np.array([7, 3])])
    assert part["jet_mass"].tolist() == [1007, 1003] and part["jet_energy"][0] == 3007


def test_features_keep_the_users_raw_branches(files, tmp_path):
    out = tmp_path / "f.parquet"
    assert main(["features", str(files["sig"]), "-o", str(out), *FEATURES]) == 0
    _assert_own_names({c: pq.read_table(out).column(c).to_numpy()
                       for c in _jet_branches(0)})


@pytest.mark.slow
def test_predict_keeps_the_users_raw_branches(files, tmp_path):
    model, _ = train_model(signal=str(files["sig"]), background=str(files["bkg"]),
                           spec={"family": "bip", "order": 2, "degree": 3,
                                 "max_particles": 16}, progress=False, device="cpu",
                           val_fraction=0.0)
    model_path = model.save(tmp_path / "m.jetace")
    out = tmp_path / "s.root"
    assert main(["predict", str(model_path), str(files["bkg"]), "-o", str(out),
                 "--quiet"]) == 0
    with uproot.open(out) as f:
        _assert_own_names(f["features"].arrays(list(_jet_branches(0)), library="np"), 0.5)


def test_mix_writes_the_right_values(files, tmp_path):
    out = tmp_path / "mix.root"
    assert main(["mix", str(files["sig"]), "--background", str(files["bkg"]), "--fraction",
                 "0.5", "-n", str(2 * N), "-o", str(out)]) == 0
    with uproot.open(out) as f:
        got = f["tree"].arrays(library="np")
    want = {k: np.r_[v, _jet_branches(0.5)[k]] for k, v in _jet_branches(0).items()}
    order = np.argsort(got["jet_pt"])  # mix shuffles; the pT values are all distinct
    for name, values in want.items():
        np.testing.assert_array_equal(got[name][order], np.sort(values), err_msg=name)
    # reading the mixture back gives the same columns again
    again = jet_columns(read_jets(str(out)))
    for name in want:
        np.testing.assert_array_equal(again[name], got[name], err_msg=name)


def test_label_named_like_a_jet_field_is_refused(files):
    with pytest.raises(InputError, match="name of a field of the jet records"):
        read_jets(str(files["sig"]), schema={"name": "odd", "labels": ["jet"]})
