"""ClusterTagger: signal-like cluster rules, purity/AUC report, state, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_anomaly import toy_features
from tolerances import LOG_ODDS, PROBABILITY_SUM

from jetace.errors import InputError
from jetace.taggers import tagger_from_state
from jetace.taggers.cluster import ClusterTagger, cluster_report

METHODS = ["gmm", "kmeans"]


def blobs(n_bulk: int = 1200, n_small: int = 200, d: int = 8, seed: int = 0):
    """A large and a small Gaussian blob, features on different scales; labels 1 = small."""
    rng = np.random.default_rng(seed)
    scales = 10.0 ** rng.uniform(-2, 2, d)
    X = np.r_[rng.normal(size=(n_bulk, d)), rng.normal(size=(n_small, d)) + 2.0] * scales
    return X, np.r_[np.zeros(n_bulk), np.ones(n_small)]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("rule", ["smallest", "farthest"])
def test_minority_blob_is_found(method, rule):
    X, y = blobs()
    tag = ClusterTagger(method=method, rule=rule, n_components=4).fit(X)
    rep = cluster_report(tag, X, y)
    assert rep["auc"] > 0.97
    assert rep["purity"] > 0.9
    assert rep["signal_cluster_purity"] > 0.8 and rep["signal_cluster_efficiency"] > 0.8
    assert rep["n_signal"] == 200 and rep["n_background"] == 1200
    w = tag.weights_.numpy()
    assert w.sum() == pytest.approx(1.0) and w[tag.signal_cluster_] < 0.3


def test_rules_follow_their_definitions():
    # three clusters: bulk, a small cluster near the bulk, a medium cluster far away
    rng = np.random.default_rng(2)
    X = np.r_[rng.normal(size=(1000, 2)) * 0.5, rng.normal(size=(100, 2)) * 0.3 + [2, 0],
              rng.normal(size=(300, 2)) * 0.3 + [12, 12]]
    small = ClusterTagger(3, rule="smallest", n_components=None).fit(X)
    far = ClusterTagger(3, rule="farthest", n_components=None).fit(X)
    assert small.signal_cluster_ == int(np.argmin(small.weights_.numpy()))
    assert far.signal_cluster_ == int(np.argmax(far.distances_.numpy()))
    labels_small, labels_far = small.predict(X), far.predict(X)
    assert np.mean(labels_small[1000:1100] == small.signal_cluster_) > 0.9
    assert np.mean(labels_far[1100:] == far.signal_cluster_) > 0.9


@pytest.mark.parametrize("method", METHODS)
def test_decision_function_is_log_odds_of_posterior(method):
    X, _ = blobs(seed=1)
    tag = ClusterTagger(method=method, n_components=3).fit(X)
    p = tag.predict_proba(X)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=PROBABILITY_SUM[torch.float64])
    s = tag.decision_function(X)
    ps = p[:, tag.signal_cluster_]
    ok = (ps > 1e-6) & (ps < 1 - 1e-6)
    np.testing.assert_allclose(s[ok], np.log(ps[ok] / (1 - ps[ok])), **LOG_ODDS["cluster"])
    np.testing.assert_array_equal(tag.predict(X), p.argmax(1))
    t = tag.decision_function(torch.tensor(X))
    assert isinstance(t, torch.Tensor)


def test_toy_jets_three_prong_cluster():
    X = np.r_[toy_features(500, 1, seed=11), toy_features(100, 3, seed=12)]
    y = np.r_[np.zeros(500), np.ones(100)]
    rep = cluster_report(ClusterTagger(n_components=5).fit(X), X, y)
    assert rep["auc"] > 0.9


@pytest.mark.parametrize("method", METHODS)
def test_reproducible_and_round_trip(method):
    X, _ = blobs(seed=3)
    a = ClusterTagger(method=method, seed=5).fit(X)
    b = ClusterTagger(method=method, seed=5).fit(X)
    np.testing.assert_array_equal(a.decision_function(X), b.decision_function(X))
    c = tagger_from_state("cluster", a.get_state())
    np.testing.assert_array_equal(c.decision_function(X), a.decision_function(X))
    assert c.signal_cluster_ == a.signal_cluster_


def test_errors():
    with pytest.raises(InputError, match="n_clusters"):
        ClusterTagger(n_clusters=1)
    with pytest.raises(InputError, match="method"):
        ClusterTagger(method="dbscan")
    with pytest.raises(InputError, match="rule"):
        ClusterTagger(rule="largest")
    with pytest.raises(InputError, match="empty"):
        ClusterTagger().fit(np.zeros((0, 3)))
    with pytest.raises(InputError, match="constant"):
        ClusterTagger().fit(np.full((30, 3), 2.0))
    for method in METHODS:
        with pytest.raises(InputError, match="at least 3 jets"):
            ClusterTagger(3, method=method, n_components=None).fit([[0.0, 1.0], [1.0, 0.0]])
    X, y = blobs()
    tag = ClusterTagger().fit(X)
    with pytest.raises(InputError, match="labels"):
        cluster_report(tag, X, y[:10])
