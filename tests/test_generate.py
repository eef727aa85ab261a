"""Tests of jetace.generate: Pythia 8 + FastJet jets in the JetClass layout.

Tests that run Pythia are marked ``generate`` (they need the ``jetace[generate]`` extra);
they generate a handful of jets per process and take well under a minute together.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import uproot
from tolerances import FLOAT32_DERIVED, FLOAT32_ROUNDING, GENERATED_JET_MASS

from jetace.cli import main
from jetace.errors import JetaceError
from jetace.generate import (
    LABELS,
    PROCESSES,
    QG_LABELS,
    demo_files,
    generate,
    generate_jets,
    pthat_window,
    worker_seed,
)
from jetace.generate.pythia import _contained

# the branches of the JetClass-layout development samples, then the label branches
COMMON = ["npart", "part_px", "part_py", "part_pz", "part_energy", "part_pid", "part_charge",
          "jet_pt", "jet_eta", "jet_phi", "jet_energy", "jet_mass", "jet_nparticles"]
BRANCHES = [*COMMON, *LABELS]  # every JetClass-style file
DEMO_LABELS = LABELS[:4]  # files written before the Higgs processes (the demo samples)
# the JetClass-style processes (one label family: their files can be read together)
JETCLASS = [p for p, spec in PROCESSES.items() if spec.labels == LABELS]
CUTS = dict(pt_min=500.0, pt_max=700.0, eta_max=1.5)
N_JETS = 6


def _read(path) -> dict:
    """Every branch of the file's tree, by name, in file order (awkward arrays)."""
    tree = uproot.open(path)["tree"]
    return {name: tree[name].array(library="ak") for name in tree.keys()}


def _assert_same_jets(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].tolist() == b[name].tolist(), name


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory) -> dict[str, object]:
    """A file of N_JETS jets of every process, generated once for the module."""
    base = tmp_path_factory.mktemp("gen")
    return {process: generate(process, N_JETS, base / f"{process}.root", seed=11 + k,
                              progress=False, **CUTS).files[0]
            for k, process in enumerate(PROCESSES)}


@pytest.fixture(scope="module")
def samples(sample_files) -> dict[str, dict]:
    return {process: _read(path) for process, path in sample_files.items()}


@pytest.mark.generate
@pytest.mark.parametrize("process", list(PROCESSES))
def test_jetclass_layout(samples, sample_files, process):
    jets = samples[process]
    assert list(jets) == [*COMMON, *PROCESSES[process].labels]
    assert PROCESSES[process].labels == (QG_LABELS if process in ("zq", "zg") else LABELS)
    assert len(jets["jet_pt"]) == N_JETS
    tree = uproot.open(sample_files[process])["tree"]
    for name in ("part_px", "part_py", "part_pz", "part_energy", "part_charge"):
        assert tree[name].interpretation.content.to_dtype == np.dtype("f4"), name
    assert tree["part_pid"].interpretation.content.to_dtype == np.dtype("i4")
    for name in ("jet_pt", "jet_eta", "jet_phi", "jet_energy", "jet_mass"):
        assert tree[name].interpretation.to_dtype == np.dtype("f4"), name
    assert tree["jet_nparticles"].interpretation.to_dtype == np.dtype("i4")
    for name in PROCESSES[process].labels:
        assert tree[name].interpretation.to_dtype == np.dtype("bool"), name


@pytest.mark.generate
@pytest.mark.parametrize("process", list(PROCESSES))
def test_jets_pass_cuts_and_sum_to_constituents(samples, process):
    jets = samples[process]
    pt, eta = np.asarray(jets["jet_pt"]), np.asarray(jets["jet_eta"])
    lo, hi = CUTS["pt_min"] * (1 - FLOAT32_ROUNDING), CUTS["pt_max"] * (1 + FLOAT32_ROUNDING)
    assert np.all((pt >= lo) & (pt <= hi))
    assert np.all(np.abs(eta) < CUTS["eta_max"])
    sums = {c: np.array([np.sum(np.asarray(x, np.float64)) for x in jets[f"part_{c}"]])
            for c in ("px", "py", "pz", "energy")}
    spt = np.hypot(sums["px"], sums["py"])
    np.testing.assert_allclose(spt, pt, rtol=FLOAT32_DERIVED)
    np.testing.assert_allclose(sums["energy"], jets["jet_energy"], rtol=FLOAT32_DERIVED)
    np.testing.assert_allclose(np.arcsinh(sums["pz"] / spt), eta, atol=FLOAT32_DERIVED)
    np.testing.assert_allclose(np.arctan2(sums["py"], sums["px"]), jets["jet_phi"],
                               atol=FLOAT32_DERIVED)
    m2 = sums["energy"] ** 2 - sums["px"] ** 2 - sums["py"] ** 2 - sums["pz"] ** 2
    np.testing.assert_allclose(np.sqrt(np.maximum(m2, 0)), jets["jet_mass"],
                               atol=GENERATED_JET_MASS)
    n = np.asarray([len(x) for x in jets["part_px"]])
    assert n.tolist() == jets["npart"].tolist() == jets["jet_nparticles"].tolist()


@pytest.mark.generate
@pytest.mark.parametrize("process", list(PROCESSES))
def test_constituents_sorted_visible_and_charged(samples, process):
    jets = samples[process]
    for px, py in zip(jets["part_px"], jets["part_py"], strict=True):
        cpt = np.hypot(np.asarray(px), np.asarray(py))
        assert np.all(np.diff(cpt) <= 0)
    pid = np.concatenate([np.asarray(x) for x in jets["part_pid"]])
    charge = np.concatenate([np.asarray(x) for x in jets["part_charge"]])
    assert not np.isin(np.abs(pid), [12, 14, 16]).any()  # neutrinos are invisible
    for code, q in [(211, 1.0), (-211, -1.0), (22, 0.0), (2212, 1.0), (11, -1.0)]:
        assert np.all(charge[pid == code] == q)


@pytest.mark.generate
@pytest.mark.parametrize("process", list(PROCESSES))
def test_labels_one_hot(samples, process):
    jets = samples[process]
    onehot = np.stack([np.asarray(jets[name]) for name in PROCESSES[process].labels], axis=1)
    assert np.all(onehot.sum(axis=1) == 1)
    assert np.all(np.asarray(jets[PROCESSES[process].label]))


@pytest.mark.generate
def test_readable_by_read_jets(samples, sample_files):
    import torch

    import jetace

    jets = jetace.read_jets([sample_files[p] for p in JETCLASS])
    assert len(jets) == len(JETCLASS) * N_JETS
    assert all(name in jets.fields for name in LABELS)
    p4, mask = jetace.to_padded(jets, max_particles=400, dtype=torch.float64)
    energy = np.concatenate([np.asarray(samples[p]["jet_energy"]) for p in JETCLASS])
    nparticles = np.concatenate([np.asarray(samples[p]["jet_nparticles"]) for p in JETCLASS])
    assert mask.sum(1).tolist() == nparticles.tolist()
    np.testing.assert_allclose((p4[..., 0] * mask).sum(1).numpy(), energy, rtol=FLOAT32_DERIVED)


@pytest.mark.generate
def test_heavy_jets_are_heavier_than_qcd(samples):
    # the containment rule keeps top/W/Z jets with their decay products inside
    mass = {p: float(np.median(np.asarray(samples[p]["jet_mass"]))) for p in PROCESSES}
    assert mass["top"] > mass["z"] > mass["qcd"]
    assert mass["top"] > mass["w"] > mass["qcd"]


@pytest.mark.generate
def test_determinism_from_seed():
    a = generate_jets("qcd", 4, seed=5, **CUTS)
    b = generate_jets("qcd", 4, seed=5, **CUTS)
    c = generate_jets("qcd", 4, seed=6, **CUTS)
    for key in ("p4", "pid", "charge", "counts", "jet"):
        assert np.array_equal(a[key], b[key]), key
    assert not np.array_equal(a["jet"], c["jet"])


@pytest.mark.generate
def test_workers_concatenate_worker_streams(tmp_path):
    """workers=2 writes worker 0's first jets, then worker 1's, independent of scheduling."""
    merged = tmp_path / "merged.root"
    summary = generate("qcd", 5, merged, seed=8, workers=2, progress=False, **CUTS)
    assert summary.files == [merged] and summary.n_jets == 5 and summary.workers == 2
    jets = _read(merged)
    w0 = _read(generate("qcd", 3, tmp_path / "w0.root", seed=8, progress=False, **CUTS).files[0])
    w1 = generate_jets("qcd", 2, seed=8, worker=1, **CUTS)
    assert jets["jet_pt"][:3].tolist() == w0["jet_pt"].tolist()
    assert jets["part_px"][:3].tolist() == w0["part_px"].tolist()
    np.testing.assert_array_equal(np.asarray(jets["jet_pt"][3:]), w1["jet"][:, 0].astype("f4"))

    split = generate("qcd", 5, tmp_path / "split.root", seed=8, workers=2, split=True,
                     progress=False, **CUTS)
    assert [f.name for f in split.files] == ["split_0.root", "split_1.root"]
    parts = [_read(f) for f in split.files]
    assert [len(p["jet_pt"]) for p in parts] == [3, 2]
    assert (parts[0]["jet_pt"].tolist() + parts[1]["jet_pt"].tolist()) == jets["jet_pt"].tolist()


@pytest.mark.generate
def test_rntuple_output(tmp_path):
    path = generate("w", 2, tmp_path / "w.root", seed=3, rntuple=True, compression="lzma:5",
                    progress=False, **CUTS).files[0]
    f = uproot.open(path)
    assert f.classname_of("tree") == "ROOT::RNTuple"
    arrays = f["tree"].arrays()
    assert set(arrays.fields) == set(BRANCHES)
    assert arrays["label_Wqq"].tolist() == [True, True]


@pytest.mark.generate
def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "cli.root"
    rc = main(["generate", "qcd", "-n", "3", "-o", str(out), "--seed", "4", "--pt-min", "500",
               "--pt-max", "700", "--eta-max", "1.5", "--quiet"])
    assert rc == 0
    assert "wrote 3 qcd jets" in capsys.readouterr().out
    ref = generate("qcd", 3, tmp_path / "ref.root", seed=4, progress=False, **CUTS)
    _assert_same_jets(_read(out), _read(ref.files[0]))


@pytest.mark.parametrize("kwargs, message", [
    (dict(process="higgs"), "known processes: top"),
    (dict(n_jets=0), "number of jets"),
    (dict(pt_min=650.0, pt_max=550.0), "pt_min < pt_max"),
    (dict(pt_min=600.0, pt_max=600.0), "pt_min < pt_max"),
    (dict(eta_max=0.0), "|eta| cut"),
    (dict(radius=-0.4), "radius"),
    (dict(workers=0), "workers"),
    (dict(seed=-1), "seed"),
    (dict(sqrts=1000.0), "cannot be made"),
    (dict(compression="gzip:3"), "unknown compression"),
])
def test_errors(tmp_path, kwargs, message):
    args = dict(process="top", n_jets=2, output=tmp_path / "x.root", progress=False)
    args.update(kwargs)
    with pytest.raises(JetaceError, match=message.replace("|", r"\|")):
        generate(**args)
    assert not (tmp_path / "x.root").exists()


def test_error_missing_directory(tmp_path):
    with pytest.raises(JetaceError, match="does not exist"):
        generate("qcd", 1, tmp_path / "nowhere" / "x.root", progress=False)


def test_error_missing_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pythia8mc", None)  # import now raises ImportError
    with pytest.raises(JetaceError, match=r"pip install 'jetace\[generate\]'"):
        generate("qcd", 1, tmp_path / "x.root", progress=False)


def test_cli_reports_errors(tmp_path, capsys):
    assert main(["generate", "gluino", "-n", "1", "-o", str(tmp_path / "x.root")]) == 1
    assert "unknown process 'gluino'" in capsys.readouterr().err


def test_pthat_window_and_seeds():
    lo, hi = pthat_window(550.0, 650.0)
    assert lo < 550.0 and hi > 650.0
    assert (lo, hi) == pytest.approx((480.0, 720.0))
    lo, hi = pthat_window(500.0, 505.0)  # a narrow window still gets a real margin
    assert lo <= 450.0 and hi >= 555.0
    seeds = {worker_seed(s, k) for s in range(5) for k in range(5)}
    assert len(seeds) == 25 and all(1 <= s <= 900_000_000 for s in seeds)
    assert worker_seed(3, 1) == worker_seed(3, 1)


def test_containment_wraps_phi():
    group = [(0.1, np.pi - 0.05), (0.0, -np.pi + 0.1)]  # across the phi = +-pi seam
    assert _contained(0.0, np.pi, group, 0.8)
    assert not _contained(0.0, 0.0, group, 0.8)
    assert not _contained(0.0, np.pi, [(0.9, np.pi)], 0.8)


def test_demo_files():
    top, qcd = demo_files()
    for path, label in ((top, "label_Tbqq"), (qcd, "label_QCD")):
        tree = uproot.open(path)["tree"]
        assert list(tree.keys()) == [*COMMON, *DEMO_LABELS]
        labels = tree.arrays(list(DEMO_LABELS), library="np")
        assert labels[label].all() and tree.num_entries >= 1000
        assert sum(labels[name].sum() for name in DEMO_LABELS) == tree.num_entries
    # top jets peak near the top mass, QCD jets are lighter
    assert 150 < np.median(uproot.open(top)["tree"]["jet_mass"].array(library="np")) < 200
    assert np.median(uproot.open(qcd)["tree"]["jet_mass"].array(library="np")) < 120
