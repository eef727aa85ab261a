"""jetace.scoring: metrics and per-jet scores of files, without the command line."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from tolerances import FLOAT32_SCORES_REBATCHED
from toyjets import toy_jets, write_jetclass

from jetace.errors import InputError
from jetace.metrics import binary_metrics
from jetace.scoring import evaluate_files, predict_to_file, rate_matched_threshold
from jetace.training import train_model


@pytest.fixture(scope="module")
def files_and_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("scoring")
    sig = write_jetclass(d / "sig.root", toy_jets(120, seed=1, n_prongs=3),
                         {"label_Tbqq": True, "label_QCD": False})
    bkg = write_jetclass(d / "bkg.root", toy_jets(150, seed=2, n_prongs=1),
                          {"label_Tbqq": False, "label_QCD": True})
    model, _ = train_model(signal=[str(sig)], background=[str(bkg)], model="linear",
                           spec={"family": "bip", "order": 2, "degree": 3, "max_particles": 64},
                           progress=False)
    return sig, bkg, model


def test_evaluate_files_scores_every_jet_with_truth(files_and_model):
    sig, bkg, model = files_and_model
    metrics, scores, labels = evaluate_files(model, [str(sig)], [str(bkg)], progress=False)
    assert (metrics["n_signal"], metrics["n_background"]) == (120, 150)
    assert scores.shape == labels.shape == (270,) and labels[:120].all() and not labels[120:].any()
    assert metrics == {**binary_metrics(scores, labels), "accuracy_threshold": 0.0}
    assert metrics["auc"] > 0.8


def test_predict_to_file_keeps_every_jet_in_order(files_and_model, tmp_path):
    sig, bkg, model = files_and_model
    out = tmp_path / "scores.parquet"
    assert predict_to_file(model, [str(bkg), str(sig)], out, progress=False) == 270
    table = pq.read_table(out)
    scores = table.column("score").to_numpy()
    _, direct, _ = evaluate_files(model, [str(sig)], [str(bkg)], progress=False)
    np.testing.assert_allclose(scores, np.r_[direct[120:], direct[:120]],
                               **FLOAT32_SCORES_REBATCHED)
    assert table.column("label_QCD").to_numpy()[:150].all()


def test_predict_to_file_rejects_empty_input(files_and_model, tmp_path):
    _, _, model = files_and_model
    empty = write_jetclass(tmp_path / "empty.root", [], {"label_QCD": True})
    with pytest.raises(InputError, match="no jets"):
        predict_to_file(model, [str(empty)], tmp_path / "out.parquet", progress=False)
    assert not (tmp_path / "out.parquet").exists()


def test_rate_matched_threshold_calls_as_many_jets_signal_as_there_are():
    rng = np.random.default_rng(3)
    for n_signal in (1, 37, 199):
        labels = np.zeros(200, bool)
        labels[rng.choice(200, n_signal, replace=False)] = True
        scores = rng.normal(size=200) + 2 * labels
        t = rate_matched_threshold(scores, labels)
        assert np.sum(scores > t) == n_signal
    scores = rng.normal(size=10)
    assert not np.any(scores > rate_matched_threshold(scores, np.zeros(10, bool)))
    assert np.all(scores > rate_matched_threshold(scores, np.ones(10, bool)))
