"""End-to-end tests of `jetace train / evaluate / predict / export-onnx` on toy files."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from toyjets import toy_jets, write_jetclass

from jetace.cli import main

FEATURES = ["--order", "2", "--degree", "4", "--max-particles", "64"]
TOP = {"label_Tbqq": True, "label_QCD": False}
QCD = {"label_Tbqq": False, "label_QCD": True}
LABELS3 = ["label_QCD", "label_Wqq", "label_Tbqq"]  # 1, 2 and 3 prongs


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    out = {
        "sig": write_jetclass(d / "sig.root", toy_jets(250, seed=1, n_prongs=3), TOP),
        "bkg": write_jetclass(d / "bkg.root", toy_jets(250, seed=2, n_prongs=1), QCD),
        "sig_te": write_jetclass(d / "sig_te.root", toy_jets(120, seed=3, n_prongs=3), TOP),
        "bkg_te": write_jetclass(d / "bkg_te.root", toy_jets(120, seed=4, n_prongs=1), QCD),
        "empty": write_jetclass(d / "empty.root", [], QCD),
        # three classes, every file with all three label branches
        **{f"multi{i}": write_jetclass(d / f"multi{i}.root", toy_jets(150, seed=10 + i,
                                                                      n_prongs=i + 1),
                                       {lab: lab == name for lab in LABELS3})
           for i, name in enumerate(LABELS3)},
        "dir": d,
    }
    return {k: str(v) for k, v in out.items()}


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def trained(files):
    model = f"{files['dir']}/linear.jetace"
    assert main(["train", "--signal", files["sig"], "--background", files["bkg"], "-o", model,
                 "--quiet", *FEATURES]) == 0
    return model


def test_train_prints_time_and_auc(files, capsys):
    model = f"{files['dir']}/mlp.jetace"
    code, out, _ = _run(capsys, "train", "--signal", files["sig"], "--background", files["bkg"],
                        "-o", model, "--model", "mlp", "--hidden", "16", "--seed", "3",
                        "--val-fraction", "0.25", "--quiet", *FEATURES)
    assert code == 0
    assert "validation: AUC" in out and " s on cpu" in out


def test_evaluate_json_and_plot(files, trained, capsys, tmp_path):
    plot = tmp_path / "roc.png"
    code, out, _ = _run(capsys, "evaluate", trained, "--signal", files["sig_te"], "--background",
                        files["bkg_te"], "--json", "--plot", plot)
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1
    m = json.loads(lines[0])
    assert {"auc", "accuracy", "rejection_at_0.3", "rejection_at_0.5", "n_signal",
            "n_background"} <= m.keys()
    assert m["n_signal"] == 120 and m["n_background"] == 120
    assert m["auc"] > 0.9  # 3-prong vs 1-prong toy jets are clearly separable
    assert plot.stat().st_size > 1000
    code, out, _ = _run(capsys, "evaluate", trained, "--signal", files["sig_te"], "--background",
                        files["bkg_te"])
    assert code == 0 and "rejection_at_0.5" in out and "auc" in out


def test_predict_keeps_every_jet_in_order(files, trained, capsys, tmp_path):
    out_file = tmp_path / "scores.parquet"
    code, _, _ = _run(capsys, "predict", trained, files["sig_te"], files["bkg_te"], "-o", out_file)
    assert code == 0
    t = pq.read_table(out_file).to_pydict()
    assert len(t["score"]) == 240 and len(t["jet_pt"]) == 240
    import jetace

    jets = jetace.read_jets([files["sig_te"], files["bkg_te"]])
    np.testing.assert_allclose(t["jet_pt"], np.asarray(jets.jet.pt), rtol=1e-6)
    scores = np.asarray(t["score"])
    assert scores[:120].mean() > scores[120:].mean()


def test_multiclass_train_and_predict(files, capsys, tmp_path):
    model = tmp_path / "multi.jetace"
    code, out, _ = _run(capsys, "train", "--inputs", files["multi0"], files["multi1"],
                        files["multi2"], "--labels", ",".join(LABELS3), "-o", model, "--quiet",
                        *FEATURES)
    assert code == 0 and "validation: accuracy" in out
    out_file = tmp_path / "multi.root"
    code, _, _ = _run(capsys, "predict", model, files["multi2"], files["multi0"], "-o", out_file,
                      "--step-size", "50")
    assert code == 0
    import uproot

    with uproot.open(out_file) as f:
        t = f["features"].arrays(library="np")
    assert len(t["score_Tbqq"]) == 300
    np.testing.assert_allclose(t["score_Tbqq"] + t["score_QCD"] + t["score_Wqq"], 1, rtol=1e-5)
    assert t["score_Tbqq"][:150].mean() > t["score_Tbqq"][150:].mean()
    code, out, _ = _run(capsys, "evaluate", model, "--signal", files["multi2"], "--background",
                        files["multi0"], "--signal-class", "label_Tbqq", "--json")
    assert code == 0 and json.loads(out)["auc"] > 0.8


def test_export_onnx(files, trained, capsys, tmp_path):
    pytest.importorskip("onnx")
    path = tmp_path / "m.onnx"
    code, _, _ = _run(capsys, "export-onnx", trained, "-o", path)
    assert code == 0
    import onnx

    names = [i.name for i in onnx.load(str(path)).graph.input]
    assert names == ["p4", "mask"]


@pytest.mark.parametrize("case", ["same", "empty", "label", "model"])
def test_clear_errors(files, trained, capsys, tmp_path, case):
    out = tmp_path / "x.jetace"
    if case == "same":
        argv = ["train", "--signal", files["sig"], "--background", files["sig"], "-o", out]
        expect = "same file"
    elif case == "empty":
        argv = ["train", "--signal", files["empty"], "--background", files["bkg"], "-o", out]
        expect = "no jets in the signal files"
    elif case == "label":
        argv = ["train", "--inputs", files["sig"], "--labels", "label_Tbqq,label_Hbb", "-o", out]
        expect = "label_Hbb"
    else:
        bad = tmp_path / "bad.jetace"
        bad.write_bytes(b"garbage")
        argv = ["evaluate", bad, "--signal", files["sig"], "--background", files["bkg"]]
        expect = "not a jetace model"
    code, _, err = _run(capsys, *argv, *(FEATURES + ["--quiet"] if argv[0] == "train" else []))
    assert code == 1
    assert expect in err
    assert not out.exists()
