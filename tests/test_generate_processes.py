"""Tests of the Higgs, semi-leptonic top and quark/gluon processes of ``jetace generate``.

Each process generates a handful of seeded jets with its own default cuts; the tests
check the labels, the truth-matching rule (every matched particle within Delta R < R of
the jet axis, recomputed here from the constituents), the quark/gluon benchmark's
window (R = 0.4, 500-550 GeV, |y| < 1.7) and determinism from the seed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import uproot
from tolerances import EXACT_RAPIDITY, FLOAT32_DERIVED, GENERATED_DELTA_R, GENERATED_RADIUS

from jetace.cli import main
from jetace.errors import JetaceError
from jetace.generate import LABELS, PROCESSES, QG_LABELS, generate, generate_jets, write_jets
from jetace.generate.processes import DEFAULT_OPTIONS, resolve_options
from jetace.generate.pythia import _rapidity

pytestmark = pytest.mark.slow

# the new processes, the label each must set (JetClass's names), and its label family
EXPECTED = {"hbb": ("label_Hbb", LABELS), "hcc": ("label_Hcc", LABELS),
            "hgg": ("label_Hgg", LABELS), "h4q": ("label_H4q", LABELS),
            "hqql": ("label_Hqql", LABELS), "tbl": ("label_Tbl", LABELS),
            "zq": ("label_q", QG_LABELS), "zg": ("label_g", QG_LABELS)}
N_JETS = 5
QUARKS, LEPTONS = {1, 2, 3, 4, 5}, {11, 13}


def _axis(p4: np.ndarray) -> tuple[float, float, float, float]:
    """(pT, eta, y, phi) of the sum of the constituents (px, py, pz, E)."""
    t = p4.sum(axis=0)
    pt = math.hypot(t[0], t[1])
    return pt, math.asinh(t[2] / pt), 0.5 * math.log((t[3] + t[2]) / (t[3] - t[2])), \
        math.atan2(t[1], t[0])


def _dphi(a, b):
    return (np.asarray(a) - b + np.pi) % (2 * np.pi) - np.pi


def _jets(res: dict):
    """(constituent p4, truth) of each generated jet."""
    offsets = np.concatenate([[0], np.cumsum(res["counts"])])
    return [(res["p4"][offsets[i]:offsets[i + 1]], res["truth"][i])
            for i in range(len(res["counts"]))]


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, tuple[dict, dict]]:
    """N_JETS jets of each new process with its default options, in memory and as read
    back from the file written for them."""
    base = tmp_path_factory.mktemp("processes")
    out = {}
    for k, process in enumerate(EXPECTED):
        res = generate_jets(process, N_JETS, seed=100 + k)
        path = write_jets(base / f"{process}.root", res, PROCESSES[process].label)
        tree = uproot.open(path)["tree"]
        out[process] = (res, {name: tree[name].array(library="np") for name in tree.keys()})
    return out


def test_process_defaults_and_overrides():
    qg = resolve_options("zq")
    assert qg == {"radius": 0.4, "pt_min": 500.0, "pt_max": 550.0, "eta_max": None,
                  "y_max": 1.7, "mpi": True}
    assert resolve_options("zg") == qg
    for process in ("hbb", "h4q", "tbl", "top", "qcd"):
        assert resolve_options(process) == DEFAULT_OPTIONS
    assert DEFAULT_OPTIONS == {"radius": 0.8, "pt_min": 550.0, "pt_max": 650.0,
                               "eta_max": 2.0, "y_max": None, "mpi": False}
    over = resolve_options("zq", radius=0.8, pt_min=None, eta_max=2.5, mpi=False)
    assert over == {**qg, "radius": 0.8, "eta_max": 2.5, "mpi": False}
    with pytest.raises(JetaceError, match="unknown generation option"):
        resolve_options("zq", r=0.4)
    with pytest.raises(JetaceError, match="known processes: top.*zq.*zg"):
        resolve_options("zqq")


def test_rapidity():
    # E = 5, pz = 3: y = 0.5 ln(8 / 2) = ln 2, while eta of (px, py) = (4, 0) is asinh(0.75)
    y = _rapidity(np.array([4.0, 0.0, 3.0, 5.0]))
    assert y == pytest.approx(math.log(2.0), rel=EXACT_RAPIDITY)
    assert _rapidity(np.array([0.0, 0.0, -1.0, 1.0])) == -math.inf


@pytest.mark.generate
@pytest.mark.parametrize("process", list(EXPECTED))
def test_labels_one_hot_and_correct(made, process):
    label, family = EXPECTED[process]
    assert PROCESSES[process].label == label and PROCESSES[process].labels == family
    _, stored = made[process]
    assert [b for b in stored if b.startswith("label_")] == list(family)
    onehot = np.stack([stored[name] for name in family], axis=1)
    assert onehot.dtype == bool and onehot.shape == (N_JETS, len(family))
    assert np.all(onehot.sum(axis=1) == 1) and np.all(stored[label])


@pytest.mark.generate
@pytest.mark.parametrize("process", list(EXPECTED))
def test_truth_matching_rule(made, process):
    """The matched particles are the right ones and all lie within Delta R < R."""
    res, _ = made[process]
    radius = resolve_options(process)["radius"]
    for p4, truth in _jets(res):
        _, eta, _, phi = _axis(p4)
        ids = truth[:, 2].astype(int).tolist()
        dr = np.hypot(truth[:, 0] - eta, _dphi(truth[:, 1], phi))
        assert np.all(dr < radius + GENERATED_DELTA_R), (process, ids, dr)
        head, rest = ids[0], sorted(abs(i) for i in ids[1:])
        if process in ("zq", "zg"):
            assert len(ids) == 1 and abs(head) in ({1, 2, 3} if process == "zq" else {21})
        elif process == "tbl":
            assert abs(head) == 6 and rest[0] == 5 and rest[1] in LEPTONS and len(rest) == 2
        else:
            assert head == 25
            want = {"hbb": [5, 5], "hcc": [4, 4], "hgg": [21, 21]}.get(process)
            if want is not None:
                assert rest == want
            elif process == "h4q":
                assert len(rest) == 4 and set(rest) <= QUARKS
            else:  # hqql: two quarks and a charged lepton
                assert len(rest) == 3 and set(rest[:2]) <= QUARKS and rest[2] in LEPTONS


@pytest.mark.generate
@pytest.mark.parametrize("process", list(EXPECTED))
def test_default_window(made, process):
    """Jets pass their process's default cuts, in memory and as stored (float32)."""
    res, stored = made[process]
    opt = resolve_options(process)
    for p4, _ in _jets(res):
        pt, eta, y, phi = _axis(p4)
        assert opt["pt_min"] <= pt <= opt["pt_max"], pt
        if opt["eta_max"] is not None:
            assert abs(eta) < opt["eta_max"]
        if opt["y_max"] is not None:
            assert abs(y) < opt["y_max"]
        # anti-kT of radius R: every constituent within R of the axis (rapidity-azimuth)
        cy = 0.5 * np.log((p4[:, 3] + p4[:, 2]) / (p4[:, 3] - p4[:, 2]))
        dr = np.hypot(cy - y, _dphi(np.arctan2(p4[:, 1], p4[:, 0]), phi))
        assert dr.max() <= opt["radius"] * (1 + GENERATED_RADIUS), dr.max()
    sums = {c: np.array([np.sum(np.asarray(x, np.float64)) for x in stored[f"part_{c}"]])
            for c in ("px", "py", "pz", "energy")}
    pt = np.hypot(sums["px"], sums["py"])
    assert np.all(pt >= opt["pt_min"] * (1 - FLOAT32_DERIVED))
    assert np.all(pt <= opt["pt_max"] * (1 + FLOAT32_DERIVED))
    if opt["y_max"] is not None:
        y = 0.5 * np.log((sums["energy"] + sums["pz"]) / (sums["energy"] - sums["pz"]))
        assert np.all(np.abs(y) < opt["y_max"] * (1 + FLOAT32_DERIVED))


@pytest.mark.generate
def test_qg_benchmark_settings(made):
    """zq/zg: pure Z (no photon) decaying to neutrinos, which never enter the jets."""
    for process in ("zq", "zg"):
        assert "WeakZ0:gmZmode = 2" in PROCESSES[process].settings
        assert "23:onIfAny = 12 14 16" in PROCESSES[process].settings
        pid = np.concatenate(list(made[process][1]["part_pid"]))
        assert not np.isin(np.abs(pid), [12, 14, 16]).any()
    assert PROCESSES["zq"].settings[0] == "WeakBosonAndParton:qg2gmZq = on"
    assert PROCESSES["zg"].settings[0] == "WeakBosonAndParton:qqbar2gmZg = on"


@pytest.mark.generate
def test_rapidity_cut_is_applied():
    res = generate_jets("zg", 3, seed=4, y_max=0.4)
    for p4, _ in _jets(res):
        assert abs(_axis(p4)[2]) < 0.4


@pytest.mark.generate
def test_higgs_jets_carry_the_higgs_mass(made):
    # all decay products inside R = 0.8: the jet mass sits near 125 GeV
    for process in ("hbb", "hcc", "hgg", "h4q"):
        mass = np.median(made[process][1]["jet_mass"])
        assert 100.0 < mass < 150.0, (process, mass)
    # one neutrino escapes: semi-leptonic jets are lighter than the particle
    assert np.median(made["hqql"][1]["jet_mass"]) < 125.0
    assert np.median(made["tbl"][1]["jet_mass"]) < 173.0


@pytest.mark.generate
def test_constituent_charge_and_pid(made):
    for process in ("hqql", "zq"):
        stored = made[process][1]
        pid = np.concatenate(list(stored["part_pid"]))
        charge = np.concatenate(list(stored["part_charge"]))
        assert pid.dtype == np.int32 and charge.dtype == np.float32
        for code, q in [(211, 1.0), (-211, -1.0), (22, 0.0), (130, 0.0), (321, 1.0)]:
            assert np.all(charge[pid == code] == q)
        assert (charge != 0).any() and (charge == 0).any()
    # the lepton of H -> l nu q q' and t -> b l nu is a constituent of its jet, and
    # leptons of both charges occur (no W charge is forced leptonic)
    signs = set()
    for process in ("hqql", "tbl"):
        for pid, (_, truth) in zip(made[process][1]["part_pid"], _jets(made[process][0]),
                                   strict=True):
            lepton = int(next(i for i in truth[1:, 2] if abs(i) in LEPTONS))
            assert lepton in set(pid.tolist())
            signs.add(np.sign(lepton))
    assert signs == {-1, 1}


@pytest.mark.generate
@pytest.mark.parametrize("process", ["zq", "hbb"])
def test_deterministic_from_seed(process):
    a = generate_jets(process, 3, seed=21)
    b = generate_jets(process, 3, seed=21)
    c = generate_jets(process, 3, seed=22)
    for key in ("p4", "pid", "charge", "counts", "jet"):
        assert np.array_equal(a[key], b[key]), key
    assert all(np.array_equal(x, y) for x, y in zip(a["truth"], b["truth"], strict=True))
    assert not np.array_equal(a["jet"], c["jet"])


@pytest.mark.generate
def test_cli_options_override_process_defaults(tmp_path):
    out = tmp_path / "cli.root"
    assert main(["generate", "zg", "-n", "2", "-o", str(out), "--seed", "6", "--radius", "0.8",
                 "--pt-min", "520", "--pt-max", "600", "--no-mpi", "--quiet"]) == 0
    ref = generate("zg", 2, tmp_path / "ref.root", seed=6, radius=0.8, pt_min=520.0,
                   pt_max=600.0, mpi=False, progress=False).files[0]
    got, want = uproot.open(out)["tree"], uproot.open(ref)["tree"]
    assert got.keys() == want.keys()
    for name in got.keys():
        assert got[name].array(library="ak").tolist() == want[name].array(library="ak").tolist()
    pt = got["jet_pt"].array(library="np")
    assert np.all(pt >= 520 * (1 - FLOAT32_DERIVED))
    assert np.all(pt <= 600 * (1 + FLOAT32_DERIVED))


def test_label_families_in_errors(tmp_path):
    jets = {"p4": np.zeros((0, 4)), "pid": np.zeros(0, np.int32),
            "charge": np.zeros(0, np.float32), "counts": np.zeros(0, np.int64),
            "jet": np.zeros((0, 5))}
    with pytest.raises(JetaceError, match="label_Tbl.*label_q, label_g"):
        write_jets(tmp_path / "x.root", jets, "label_Hxx")
    with pytest.raises(JetaceError, match=r"impossible generation options for zq: .*\|y\|"):
        generate("zq", 1, tmp_path / "x.root", y_max=0.0, progress=False)
