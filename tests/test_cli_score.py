"""`jetace evaluate` and `jetace predict` with --skip-bad on a mix of good and bad files."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from toyjets import toy_jets, write_jetclass

from jetace.cli import main

FEATURES = ["--order", "2", "--degree", "4", "--max-particles", "64"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("score")
    sig = write_jetclass(d / "sig.root", toy_jets(150, seed=1, n_prongs=3),
                         {"label_Tbqq": True, "label_QCD": False})
    bkg = write_jetclass(d / "bkg.root", toy_jets(130, seed=2, n_prongs=1),
                         {"label_Tbqq": False, "label_QCD": True})
    bad = d / "bad.root"
    bad.write_bytes(b"not a ROOT file")
    notree = write_jetclass(d / "notree.root", toy_jets(20, seed=3), tree="other")
    model = d / "m.jetace"
    assert main(["train", "--signal", str(sig), "--background", str(bkg), "-o", str(model),
                 "--quiet", *FEATURES]) == 0
    return {"sig": str(sig), "bkg": str(bkg), "bad": str(bad), "notree": str(notree),
            "model": str(model), "dir": d}


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_evaluate_skip_bad(setup, capsys):
    s = setup
    base = ["evaluate", s["model"], "--json"]
    code, out, _ = _run(capsys, *base, "--signal", s["sig"], "--background", s["bkg"])
    assert code == 0
    clean = json.loads(out)
    mixed = ["--signal", s["sig"], s["bad"], "--background", s["notree"], s["bkg"]]
    code, _, err = _run(capsys, *base, *mixed)
    assert code != 0 and "bad.root" in err
    code, out, err = _run(capsys, *base, *mixed, "--skip-bad")
    assert code == 0
    assert json.loads(out) == clean  # the bad files left out, nothing else changed
    assert "bad.root" in err and "notree.root" in err
    # nothing readable on one side is still an error
    code, _, err = _run(capsys, *base, "--signal", s["bad"], "--background", s["bkg"],
                        "--skip-bad")
    assert code != 0 and "none of the input files" in err


def test_predict_skip_bad(setup, capsys):
    s = setup
    out_file = s["dir"] / "scores.parquet"
    argv = ["predict", s["model"], s["bad"], s["sig"], s["notree"], s["bkg"], "-o", out_file]
    code, _, err = _run(capsys, *argv)
    assert code != 0 and "bad.root" in err and not out_file.exists()
    code, out, err = _run(capsys, *argv, "--skip-bad")
    assert code == 0 and "notree.root" in err
    table = pq.read_table(out_file)
    assert table.num_rows == 150 + 130
    assert table.column("label_Tbqq").to_pylist()[:150] == [True] * 150
