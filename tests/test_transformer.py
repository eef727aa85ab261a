"""ACETransformer: jets in every accepted form -> the feature module's matrix, and the
scikit-learn pipeline around it (fit, predict, cross-validation, grid search, pickle)."""

from __future__ import annotations

import pickle

import awkward as ak
import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from tolerances import TRANSFORMER_MATCH
from toyjets import toy_jets, write_jetclass

import jetace
from jetace.errors import InputError
from jetace.formats import p4_from_ptyphi


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    d = tmp_path_factory.mktemp("tr")
    qcd, top = toy_jets(60, seed=1, n_prongs=1), toy_jets(60, seed=2, n_prongs=3)
    jets = jetace.read_jets([write_jetclass(d / "q.root", qcd), write_jetclass(d / "t.root", top)])
    return jets, np.r_[np.zeros(60, int), np.ones(60, int)], qcd + top


def test_every_input_form_gives_the_module_features(sample):
    jets, _, arrays = sample
    t = jetace.ACETransformer(order=2, degree=4, max_particles=32).fit()
    want = t.features_(*jetace.to_padded(jets, 32))
    got = t.transform(jets)
    assert isinstance(got, np.ndarray) and got.shape == (len(jets), t.n_features_out_)
    np.testing.assert_allclose(got, want.numpy(), **TRANSFORMER_MATCH)
    # per-jet (n, 4) float32 arrays as stored in the file, (E, px, py, pz)
    rows = [np.asarray(a, np.float32) for a in arrays]
    np.testing.assert_allclose(t.transform(rows), got, **TRANSFORMER_MATCH)
    padded = np.zeros((len(rows), max(map(len, rows)) + 3, 4), np.float32)
    for i, r in enumerate(rows):
        padded[i, :len(r)] = r[::-1]  # any order, zero padding
    np.testing.assert_allclose(t.transform(padded), got, **TRANSFORMER_MATCH)
    np.testing.assert_allclose(t.transform(list(jets)), got, **TRANSFORMER_MATCH)
    # energyflow's (pt, y, phi) rows, converted with the stated massless convention
    ptyphi = []
    for r in arrays:
        e, px, py, pz = (r[:, k].astype(np.float64) for k in range(4))
        pt = np.hypot(px, py)
        y = 0.5 * np.log((e + pz) / (e - pz))
        ptyphi.append(np.c_[pt, y, np.arctan2(py, px)])
    t64 = jetace.ACETransformer(order=2, degree=4, max_particles=32, columns="ptyphi",
                                dtype="float64").fit()
    conv = [np.stack(p4_from_ptyphi(r[:, 0], r[:, 1], r[:, 2]), axis=1) for r in ptyphi]
    ref = t64.features_(*jetace.to_padded(ak.zip({k: ak.Array([c[:, i] for c in conv])
                                                  for i, k in enumerate(
                                                      ["energy", "px", "py", "pz"])}),
                                          32, dtype=torch.float64))
    np.testing.assert_allclose(t64.transform(ptyphi), ref.numpy(), **TRANSFORMER_MATCH)
    assert t.get_feature_names_out().shape == (t.n_features_out_,)


@pytest.mark.slow
def test_pipeline_cross_validation_grid_search_and_pickle(sample):
    jets, y, _ = sample
    pipe = make_pipeline(jetace.ACETransformer(order=2, degree=4, max_particles=32),
                         jetace.LinearTagger())
    pipe.fit(jets, y)
    assert (pipe.predict(jets) == y).mean() > 0.9
    scores = cross_val_score(pipe, jets, y, cv=3, scoring="roc_auc")
    assert scores.shape == (3,) and scores.min() > 0.8
    grid = GridSearchCV(pipe, {"acetransformer__degree": [3, 4],
                               "lineartagger__C": [0.1, 10.0]}, cv=2,
                        scoring="roc_auc").fit(jets, y)
    assert grid.best_params_["acetransformer__degree"] in (3, 4)
    back = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(back.decision_function(jets), pipe.decision_function(jets))


def test_bad_settings_and_inputs_are_named():
    with pytest.raises(InputError, match="mirror applies to the bip family"):
        jetace.ACETransformer(family="lorentz").fit()
    with pytest.raises(InputError, match="columns"):
        jetace.ACETransformer(columns="xyz").fit()
    t = jetace.ACETransformer(order=2, degree=3, max_particles=8).fit()
    with pytest.raises(InputError, match=r"jet 1: expected an array of shape"):
        t.transform([np.ones((3, 4)), np.ones((3, 2))])
    with pytest.raises(InputError, match="n_jets, n_particles, 4"):
        t.transform(np.ones((3, 4)))
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        jetace.ACETransformer().transform([np.ones((3, 4))])
