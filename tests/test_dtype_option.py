"""``--dtype float64`` on every command that computes features (issue 18 point 7)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from tolerances import DTYPE_SCORE, FLOAT32_FEATURE_DEVIATION, deviation
from toyjets import toy_jets, write_jetclass

from jetace.cli import main
from jetace.model_file import load_model

FEATURES = ["--order", "2", "--degree", "3", "--max-particles", "16", "--quiet"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("dtype")
    return {"sig": str(write_jetclass(d / "sig.root", toy_jets(40, seed=1, n_prongs=3),
                                      {"label_Tbqq": True, "label_QCD": False})),
            "bkg": str(write_jetclass(d / "bkg.root", toy_jets(40, seed=2),
                                      {"label_Tbqq": False, "label_QCD": True})),
            "dir": d}


def _columns(path, prefix):
    table = pq.read_table(path)
    names = [c for c in table.column_names if c.startswith(prefix)]
    return np.stack([table.column(c).to_numpy() for c in names], 1)


def test_features_in_float64(files, tmp_path):
    for dtype in ("float32", "float64"):
        assert main(["features", files["sig"], "-o", str(tmp_path / f"{dtype}.parquet"),
                     "--dtype", dtype, *FEATURES]) == 0
    f32, f64 = _columns(tmp_path / "float32.parquet", "bip_"), \
        _columns(tmp_path / "float64.parquet", "bip_")
    assert f32.dtype == np.float32 and f64.dtype == np.float64
    err = deviation(torch.from_numpy(f64), torch.from_numpy(f32.astype(np.float64)))
    assert 0 < err <= FLOAT32_FEATURE_DEVIATION  # computed in float64, not converted


@pytest.mark.slow
def test_train_predict_evaluate_in_float64(files, tmp_path, capsys):
    model = tmp_path / "m64.jetace"
    assert main(["train", "--signal", files["sig"], "--background", files["bkg"], "-o",
                 str(model), "--dtype", "float64", *FEATURES]) == 0
    assert str(load_model(model).feature_dtype) == "torch.float64"
    model32 = tmp_path / "m32.jetace"
    assert main(["train", "--signal", files["sig"], "--background", files["bkg"], "-o",
                 str(model32), *FEATURES]) == 0
    scores = {}
    for dtype in ("float32", "float64"):
        out = tmp_path / f"s{dtype}.parquet"
        assert main(["predict", str(model32), files["bkg"], "-o", str(out), "--dtype", dtype,
                     "--quiet"]) == 0
        scores[dtype] = _columns(out, "score")[:, 0]
        assert main(["evaluate", str(model32), "--signal", files["sig"], "--background",
                     files["bkg"], "--dtype", dtype, "--json", "--quiet"]) == 0
    np.testing.assert_allclose(scores["float32"], scores["float64"], **DTYPE_SCORE)
    capsys.readouterr()
