"""End-to-end tests of `jetace train / evaluate / predict / export-onnx` on toy files."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from tolerances import FLOAT32_ROUNDING, PROBABILITY_SUM
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
    assert 0.5 < m["accuracy"] <= 1 and m["accuracy_threshold"] == 0  # probability 0.5
    from jetace.cost import model_cost
    from jetace.model_file import load_model

    model = load_model(trained)
    cost = model_cost(model.features, model.tagger, m["flops_multiplicity"],
                      dtype=model.feature_dtype)
    assert m["parameters"] == cost.parameters > 0 and m["features"] == cost.features
    assert m["flops_per_jet"] == cost.flops_per_jet > cost.feature_flops > 0
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
    np.testing.assert_allclose(t["jet_pt"], np.asarray(jets.jet.pt), rtol=FLOAT32_ROUNDING)
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
    np.testing.assert_allclose(t["score_Tbqq"] + t["score_QCD"] + t["score_Wqq"], 1,
                               rtol=PROBABILITY_SUM[torch.float32])
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


# -- unsupervised and weakly supervised training -----------------------------------------
UNSUP = {"gaussian": ["--n-components", "10"],
         "gmm": ["--n-mix", "2", "--n-components", "6"],
         "autoencoder": ["--hidden", "16", "--latent", "3", "--max-epochs", "15"]}


def _auc(capsys, model, files):
    code, out, _ = _run(capsys, "evaluate", model, "--signal", files["sig_te"], "--background",
                        files["bkg_te"], "--json")
    assert code == 0
    return json.loads(out)


@pytest.mark.parametrize("method", sorted(UNSUP))
def test_unsupervised_train_evaluate_predict(files, capsys, tmp_path, method):
    """Fitted on 1-prong (background) jets only, 3-prong jets come out anomalous."""
    model = tmp_path / f"{method}.jetace"
    code, out, _ = _run(capsys, "train", "--unsupervised", method, "--background", files["bkg"],
                        "-o", model, "--val-fraction", "0.2", "--quiet", *UNSUP[method],
                        *FEATURES)
    assert code == 0, out
    assert f"trained {method} tagger on 200 jets" in out
    assert "background score quantiles" in out
    m = _auc(capsys, model, files)
    assert m["n_signal"] == 120 and m["auc"] > 0.85
    # anomaly scores have no cut at probability 0.5: the accuracy is taken where as
    # many jets are called signal as there are signal jets
    assert m["accuracy"] > 0.75 and m["accuracy_threshold"] != 0
    pred = tmp_path / "scores.parquet"
    assert _run(capsys, "predict", model, files["sig_te"], files["bkg_te"], "-o", pred)[0] == 0
    scores = np.asarray(pq.read_table(pred).to_pydict()["score"])
    assert len(scores) == 240 and scores[:120].mean() > scores[120:].mean()


def test_unsupervised_is_reproducible_from_seed(files, capsys, tmp_path):
    from jetace.model_file import load_model

    outs = []
    for i, seed in enumerate(["5", "5", "6"]):
        model = tmp_path / f"ae{i}.jetace"
        assert main(["train", "--unsupervised", "autoencoder", "--background", files["bkg"],
                     "-o", str(model), "--seed", seed, "--quiet", *UNSUP["autoencoder"],
                     *FEATURES]) == 0
        outs.append(load_model(model).tagger.module_.net[0].weight.detach().numpy())
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.allclose(outs[0], outs[2])


def _mix(files, out, fraction, n, seed):
    # run through main, its printout is then dropped by the caller's next _run
    assert main(["mix", files["sig"], "--background", files["bkg"], "--fraction", str(fraction),
                 "-n", str(n), "-o", str(out), "--seed", str(seed)]) == 0
    return str(out)


def test_cluster_on_unlabelled_mixture(files, capsys, tmp_path):
    sample = _mix(files, tmp_path / "unlabelled.root", 0.2, 250, seed=1)
    model = tmp_path / "cluster.jetace"
    code, out, _ = _run(capsys, "train", "--unsupervised", "cluster", "--inputs", sample,
                        "-o", model, "--n-components", "5", "--quiet", *FEATURES)
    assert code == 0 and "input 250" in out
    assert _auc(capsys, model, files)["auc"] > 0.85


@pytest.mark.parametrize("inner", ["linear", "mlp"])
def test_cwola_from_mix_outputs(files, capsys, tmp_path, inner):
    """CWoLa on two `jetace mix` mixtures (0.5 vs 0.1 signal) tags 3-prong jets."""
    a = _mix(files, tmp_path / "a.root", 0.5, 240, seed=1)
    b = _mix(files, tmp_path / "b.root", 0.1, 240, seed=2)
    model = tmp_path / "cwola.jetace"
    extra = ["--hidden", "16"] if inner == "mlp" else []
    code, out, _ = _run(capsys, "train", "--mixture-a", a, "--mixture-b", b, "-o", model,
                        "--model", inner, "--quiet", *extra, *FEATURES)
    assert code == 0
    assert f"cwola-{inner}" in out and "mixture A vs B AUC" in out
    m = _auc(capsys, model, files)
    assert m["auc"] > 0.85 and m["accuracy"] > 0.75
    # swapping the mixtures flips the tagger: A must be the signal-richer one
    swapped = tmp_path / "swapped.jetace"
    assert _run(capsys, "train", "--mixture-a", b, "--mixture-b", a, "-o", swapped, "--model",
                inner, "--quiet", *extra, *FEATURES)[0] == 0
    assert _auc(capsys, swapped, files)["auc"] < 0.3


def test_train_skip_bad(files, capsys, tmp_path):
    bad = tmp_path / "bad.root"
    bad.write_bytes(b"not a ROOT file")
    model = tmp_path / "g.jetace"
    argv = ["train", "--unsupervised", "gaussian", "--background", files["bkg"], str(bad),
            "-o", model, "--quiet", *FEATURES]
    code, _, err = _run(capsys, *argv)
    assert code == 1 and "bad.root" in err and not model.exists()
    code, out, _ = _run(capsys, *argv, "--skip-bad")
    assert code == 0 and "background 250" in out and model.exists()


@pytest.mark.parametrize("case", ["no-background", "empty", "constant", "both", "one-mixture",
                                  "same-mixture", "signal"])
def test_unsupervised_and_cwola_errors(files, capsys, tmp_path, case):
    out = tmp_path / "x.jetace"
    if case == "no-background":
        argv, expect = ["--unsupervised", "gaussian"], "needs background jets"
    elif case == "empty":
        argv = ["--unsupervised", "gmm", "--background", files["empty"]]
        expect = "no jets in the background files"
    elif case == "constant":
        jet = toy_jets(1, seed=7)[0]
        const = write_jetclass(tmp_path / "const.root", [jet] * 30, QCD)
        argv, expect = ["--unsupervised", "gaussian", "--background", str(const)], "constant"
    elif case == "both":
        argv = ["--unsupervised", "gaussian", "--background", files["bkg"], "--mixture-a",
                files["sig"], "--mixture-b", files["bkg"]]
        expect = "either --unsupervised or --mixture"
    elif case == "one-mixture":
        argv, expect = ["--mixture-a", files["sig"]], "--mixture-b"
    elif case == "same-mixture":
        argv = ["--mixture-a", files["bkg"], "--mixture-b", files["bkg"]]
        expect = "same file"
    else:
        argv = ["--unsupervised", "gaussian", "--signal", files["sig"], "--background",
                files["bkg"]]
        expect = "--signal"
    code, _, err = _run(capsys, "train", *argv, "-o", out, "--quiet", *FEATURES)
    assert code == 1
    assert expect in err
    assert not out.exists()


def test_train_uses_mirror_features_by_default(files, trained, capsys):
    from jetace import BIPFeatures
    from jetace.model_file import load_model

    model = load_model(trained)
    assert model.spec["mirror"] is True
    assert model.num_features == BIPFeatures(2, 4, mirror=True).num_features
    plain = f"{files['dir']}/plain.jetace"
    code, _, _ = _run(capsys, "train", "--signal", files["sig"], "--background", files["bkg"],
                      "-o", plain, "--no-mirror", "--quiet", *FEATURES)
    assert code == 0 and not load_model(plain).spec.get("mirror")
    assert load_model(plain).num_features == BIPFeatures(2, 4).num_features
    for extra, message in ((["--complete", "--mirror"], "cannot be combined"),
                           (["--family", "lorentz", "--mirror"], "bip family only")):
        code, _, err = _run(capsys, "train", "--signal", files["sig"], "--background",
                            files["bkg"], "-o", plain, "--quiet", *extra)
        assert code == 1 and message in err


def test_unsupervised_training_defaults_to_fewer_features(files, capsys):
    from jetace.model_file import load_model
    from jetace.presets import WEAK_SPEC

    model = f"{files['dir']}/gauss.jetace"
    code, _, _ = _run(capsys, "train", "--unsupervised", "gaussian", "--background",
                      files["bkg"], "-o", model, "--quiet")
    assert code == 0
    spec = load_model(model).spec
    assert (spec["order"], spec["degree"], spec["mirror"]) == (
        WEAK_SPEC["order"], WEAK_SPEC["degree"], True)
    # anomaly detectors see the 32 hardest constituents unless told otherwise
    assert spec["max_particles"] == load_model(model).max_particles == 32
    code, _, _ = _run(capsys, "train", "--unsupervised", "gaussian", "--background",
                      files["bkg"], "-o", model, "--quiet", "--max-particles", "64")
    assert code == 0 and load_model(model).max_particles == 64


def test_quiet_silences_progress_bars_of_every_reading_command(files, trained, capsys, tmp_path):
    runs = [("features", files["sig"], "-o", tmp_path / "f.parquet", *FEATURES),
            ("evaluate", trained, "--signal", files["sig_te"], "--background", files["bkg_te"]),
            ("predict", trained, files["sig_te"], "-o", tmp_path / "p.parquet")]
    for argv in runs:
        code, _, loud = _run(capsys, *argv)
        assert code == 0 and "jets/s" in loud  # tqdm's rate
        code, _, err = _run(capsys, *argv, "--quiet")
        assert code == 0 and "jets/s" not in err


def test_default_mlp_keeps_the_parameter_budget(files, capsys, tmp_path):
    """`jetace train --model mlp` on the default features trains a network of at most
    DEFAULT_MAX_PARAMETERS trainable parameters; --ensemble is the earlier large one."""
    from jetace.cost import trainable_parameters
    from jetace.model_file import load_model
    from jetace.taggers.mlp import DEFAULT_MAX_PARAMETERS, ENSEMBLE

    small, two = tmp_path / "small.jetace", tmp_path / "ensemble.jetace"
    base = ["train", "--signal", files["sig"], "--background", files["bkg"], "--model", "mlp",
            "--val-fraction", "0", "--quiet"]
    assert _run(capsys, *base, "-o", small)[0] == 0
    model = load_model(small)
    assert model.spec["order"] == 4 and model.spec["degree"] == 7  # the default features
    assert trainable_parameters(model.tagger) <= DEFAULT_MAX_PARAMETERS
    assert _run(capsys, *base, "-o", two, "--ensemble", *FEATURES)[0] == 0
    tagger = load_model(two).tagger
    assert len(tagger.net_.members) == ENSEMBLE["n_models"]
    assert tagger.hidden_ == ENSEMBLE["hidden"] and tagger.lr == ENSEMBLE["lr"]
    assert trainable_parameters(tagger) > DEFAULT_MAX_PARAMETERS
