"""Tests of jetace.taggers.linear (logistic regression and shrinkage LDA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.covariance import ledoit_wolf_shrinkage as sk_shrinkage
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from tolerances import SKLEARN

from jetace.errors import InputError
from jetace.metrics import roc_auc
from jetace.numerics import ledoit_wolf_shrinkage
from jetace.taggers import tagger_from_state
from jetace.taggers.linear import LinearTagger

pytestmark = pytest.mark.usefixtures("one_thread")


def _data(seed=0, n=3000, f=30, classes=2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f)) * np.exp(rng.normal(size=f)) + rng.normal(size=f)
    X[:, 1] = X[:, 0] * 3 + 0.01 * rng.normal(size=n)  # collinear pair, as ACE products are
    t = X @ rng.normal(size=f)
    t = (t - t.mean()) / t.std() + 0.7 * rng.normal(size=n)
    y = np.digitize(t, np.quantile(t, np.linspace(0, 1, classes + 1)[1:-1]))
    return X, y


def test_logistic_matches_sklearn():
    X, y = _data()
    ours = LinearTagger(C=0.5, tol=1e-7).fit(X, y)
    Z = StandardScaler().fit_transform(X)
    ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=10000).fit(Z, y)
    assert np.abs(ours.decision_function(X) - ref.decision_function(Z)).max() < SKLEARN["logistic"]
    assert ours.coef_.shape == (1, X.shape[1]) and ours.intercept_.shape == (1,)


def test_multiclass_matches_sklearn_and_shapes():
    X, y = _data(1, classes=3)
    labels = np.array(["qcd", "top", "w"])[y]
    ours = LinearTagger(C=0.2, tol=1e-7).fit(X, labels)
    Z = StandardScaler().fit_transform(X)
    ref = LogisticRegression(C=0.2, tol=1e-10, max_iter=10000).fit(Z, y)
    p = ours.predict_proba(X)
    assert p.shape == (len(X), 3) and np.allclose(p.sum(1), 1)
    assert np.abs(p - ref.predict_proba(Z)).max() < SKLEARN["logistic"]
    assert ours.decision_function(X).shape == (len(X), 3)
    assert list(ours.classes_) == ["qcd", "top", "w"]
    assert set(ours.predict(X)) <= {"qcd", "top", "w"}
    assert np.mean(ours.predict(X) == labels) > 0.6


def test_c_auto_scans_the_grid():
    X, y = _data(2)
    t = LinearTagger(C="auto", C_grid=(1e-4, 1e-2, 1.0)).fit(X, y)
    assert set(t.scan_) == {1e-4, 1e-2, 1.0}
    assert t.C_ == min(t.scan_, key=t.scan_.get)
    assert t.scan_[1e-4] > t.scan_[t.C_]  # far too strong regularisation is worse


def test_lda_and_shrinkage():
    X, y = _data(3)
    t = LinearTagger(method="lda").fit(X, y)
    assert 0 <= t.shrinkage_ <= 1
    assert roc_auc(t.decision_function(X), y) > 0.8
    Z = StandardScaler().fit_transform(X)
    assert ledoit_wolf_shrinkage(torch.as_tensor(Z)) == pytest.approx(
        sk_shrinkage(Z, assume_centered=True), rel=SKLEARN["ledoit_wolf"])
    multi = LinearTagger(method="lda", shrinkage=0.1).fit(*_data(4, classes=3))
    assert multi.predict_proba(X).shape == (len(X), 3)


@pytest.mark.parametrize("kwargs", [{}, {"method": "lda"}, {"scaling": "signed_log"}])
def test_state_round_trip(kwargs):
    X, y = _data(5, classes=3 if kwargs.get("method") == "lda" else 2)
    t = LinearTagger(**kwargs).fit(X, y)
    back = tagger_from_state("linear", t.get_state())
    assert isinstance(back, LinearTagger)
    np.testing.assert_array_equal(back.decision_function(X), t.decision_function(X))
    np.testing.assert_array_equal(back.classes_, t.classes_)


def test_torch_in_torch_out_float32():
    X, y = _data(6)
    Xt = torch.as_tensor(X, dtype=torch.float32)
    t = LinearTagger().fit(Xt, torch.as_tensor(y))
    out = t.decision_function(Xt)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (len(X),)
    assert t.predict_proba(Xt).shape == (len(X), 2)


def test_bad_inputs():
    X, y = _data(7)
    with pytest.raises(InputError, match="one class"):
        LinearTagger().fit(X, np.zeros(len(X)))
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        LinearTagger().fit(bad, y)
    with pytest.raises(InputError, match="inconsistent numbers of samples"):
        LinearTagger().fit(X, y[:-1])
    with pytest.raises(InputError, match="not fitted"):
        LinearTagger().decision_function(X)
    t = LinearTagger().fit(X, y)
    with pytest.raises(InputError, match="features"):
        t.decision_function(X[:, :-1])
    with pytest.raises(InputError):
        LinearTagger(method="svm").fit(X, y)
    with pytest.raises(InputError):
        LinearTagger(C=-1).fit(X, y)
