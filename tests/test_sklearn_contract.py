"""Every tagger is a scikit-learn estimator: scikit-learn's own estimator checks, clone,
Pipeline, cross-validation, grid search, and the outlier sign convention.

The checks that cannot apply to a tagger are listed in :data:`EXPECTED_FAILURES` with
the reason (pytest reports them as expected failures, and as failures once they pass).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.ensemble import IsolationForest
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from tolerances import CONTAMINATION_RATE

from jetace.metrics import roc_auc
from jetace.taggers.anomaly import (
    AutoencoderAnomaly,
    EnsembleAnomaly,
    GaussianAnomaly,
    GMMAnomaly,
)
from jetace.taggers.base import NotFittedError
from jetace.taggers.cluster import ClusterTagger
from jetace.taggers.linear import LinearTagger
from jetace.taggers.mlp import MLPTagger
from jetace.taggers.weak import CWoLaTagger

#: one instance per tagger kind and mode, small enough for the checks' toy data
TAGGERS = [
    LinearTagger(),
    LinearTagger(method="lda"),
    MLPTagger(hidden=(16,), n_models=2, max_epochs=20),
    GaussianAnomaly(),
    GMMAnomaly(n_mix=2, n_init=1),
    AutoencoderAnomaly(hidden=(8,), latent=2, max_epochs=5),
    EnsembleAnomaly(members=(("gaussian", {}), ("gmm", {"n_mix": 2, "n_init": 1}))),
    ClusterTagger(n_init=1),
    ClusterTagger(method="kmeans", n_init=1),
    CWoLaTagger(),
    CWoLaTagger(link="logistic"),
]

_NOT_REPEATS = ("fitting with weight 2 is not exactly fitting the jet twice: ")
_ONE_CLUSTER = ("scikit-learn's generic checks set n_clusters=1; a cluster tagger needs "
                "a signal-like cluster and at least one other (n_clusters >= 2)")

#: check name -> reason, per tagger (selected by :func:`expected_failures`)
EXPECTED_FAILURES = {
    "logistic": {"check_sample_weight_equivalence_on_dense_data":
                 _NOT_REPEATS + "the iterative L-BFGS fit agrees to ~1e-5, not to the "
                 "check's 1e-7 (tests/test_weights.py checks it at WEIGHT_EQUIVALENCE)"},
    "lda": {"check_sample_weight_equivalence_on_dense_data":
            _NOT_REPEATS + "the Ledoit-Wolf shrinkage depends on the number of jets, "
            "not only on the weighted moments"},
    "mlp": {"check_sample_weight_equivalence_on_dense_data":
            _NOT_REPEATS + "the seeded validation split and minibatches depend on the "
            "number of rows"},
    "autoencoder": {"check_methods_subset_invariance":
                    "the network runs in float32: a jet's reconstruction error changes "
                    "with the batch it is scored in at float32 rounding (~1e-7)"},
    "cluster": {name: _ONE_CLUSTER for name in (
        "check_dont_overwrite_parameters", "check_methods_subset_invariance",
        "check_fit2d_1sample", "check_fit2d_1feature", "check_fit2d_predict1d")},
    "cwola-mixture": {
        "check_sample_weight_equivalence_on_dense_data":
            _NOT_REPEATS + "oversampling of the smaller mixture and the seeded "
            "validation split of link_C='auto' depend on the number of rows",
        "check_classifiers_train":
            "the mixture link models mixtures of small signal fractions (a bounded "
            "A-versus-B likelihood ratio); on the check's fully separable blobs it is "
            "the wrong model (link='logistic' passes this check)"},
    "cwola-logistic": {"check_sample_weight_equivalence_on_dense_data":
                       _NOT_REPEATS + "oversampling of the smaller mixture and the "
                       "seeded validation split depend on the number of rows"},
}


def _key(est) -> str:
    if isinstance(est, LinearTagger):
        return est.method
    if isinstance(est, CWoLaTagger):
        return f"cwola-{est.link or 'mixture'}"
    return est.kind


def expected_failures(est) -> dict[str, str]:
    return EXPECTED_FAILURES.get(_key(est), {})


@pytest.mark.slow
@parametrize_with_checks(TAGGERS, expected_failed_checks=expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_every_expected_failure_names_a_tagger_and_a_reason():
    keys = {_key(t) for t in TAGGERS}
    assert set(EXPECTED_FAILURES) <= keys
    assert all(len(reason) > 40 for d in EXPECTED_FAILURES.values() for reason in d.values())


def _blobs(n=300, seed=0, shift=1.5):
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n // 2, int), np.ones(n - n // 2, int)]
    X = rng.normal(size=(n, 4)) + shift * y[:, None] * np.r_[1.0, 0.5, 0.0, 0.0]
    return X, y


@pytest.mark.parametrize("tagger", TAGGERS, ids=_key)
def test_clone_keeps_parameters_and_drops_the_fit(tagger):
    X, y = _blobs(120)
    fitted = clone(tagger).fit(X, y)
    again = clone(fitted)
    assert again.get_params() == tagger.get_params()
    with pytest.raises(NotFittedError):
        again.signal_score(X)
    assert fitted.signal_score(X).shape == (len(X),)


def test_constructors_store_arguments_as_given():
    t = MLPTagger(hidden=[8, 4], n_models=2.0)  # checked and converted in fit, not here
    assert t.hidden == [8, 4] and t.n_models == 2.0
    t.set_params(schedule="nope")
    X, y = _blobs(60)
    with pytest.raises(ValueError, match="schedule"):
        t.fit(X, y)


def test_pipeline_cross_validation_and_grid_search():
    X, y = _blobs(400)
    pipe = make_pipeline(StandardScaler(), LinearTagger())
    scores = cross_val_score(pipe, X, y, cv=3, scoring="roc_auc")
    assert scores.shape == (3,) and scores.min() > 0.8
    grid = GridSearchCV(pipe, {"lineartagger__C": [0.01, 10.0],
                               "lineartagger__method": ["logistic", "lda"]},
                        cv=3, scoring="roc_auc").fit(X, y)
    assert set(grid.best_params_) == {"lineartagger__C", "lineartagger__method"}
    assert roc_auc(grid.decision_function(X), y) > 0.8


@pytest.mark.slow
def test_anomaly_sign_convention_matches_isolation_forest():
    """score_samples and decision_function are larger for normal jets, predict is -1 for
    outliers, as in IsolationForest; signal_score (what evaluate uses) is the anomaly."""
    rng = np.random.default_rng(3)
    background = rng.normal(size=(400, 5))
    test = np.r_[rng.normal(size=(100, 5)), rng.normal(size=(100, 5)) + 4.0]
    is_anomaly = np.r_[np.zeros(100), np.ones(100)]
    forest = IsolationForest(random_state=0).fit(background)
    for det in (GaussianAnomaly(), GMMAnomaly(n_mix=2), AutoencoderAnomaly(max_epochs=20),
                EnsembleAnomaly(members=(("gaussian", {}), ("gmm", {"n_mix": 2})))):
        det.fit(background)
        for name in ("score_samples", "decision_function"):
            ours, ref = getattr(det, name)(test), getattr(forest, name)(test)
            assert roc_auc(ours, is_anomaly) < 0.1 and roc_auc(ref, is_anomaly) < 0.1, name
        assert roc_auc(det.signal_score(test), is_anomaly) > 0.9
        np.testing.assert_array_equal(det.signal_score(test), -det.score_samples(test))
        pred = det.predict(test)
        assert set(np.unique(pred)) <= {-1, 1}
        assert (pred[100:] == -1).mean() > 0.9
        # the offset makes predict flag `contamination` of the training jets
        assert (det.predict(background) == -1).mean() == pytest.approx(
            det.contamination, abs=CONTAMINATION_RATE)


@pytest.mark.parametrize("kind, tagger", [("linear", LinearTagger(scaling="signed_log")),
                                          ("gaussian", GaussianAnomaly(scaling="signed_log"))])
def test_states_with_the_old_transform_argument_still_load(kind, tagger):
    """Model files written before ``transform`` was renamed ``scaling`` (it made every
    tagger look like a scikit-learn transformer) load and score as saved; old anomaly
    states have no outlier offset: they score, and say so when asked to predict."""
    from jetace.taggers import tagger_from_state

    X, y = _blobs(100)
    tagger.fit(X, y)
    state = tagger.get_state()
    state["params"] = {("transform" if k == "scaling" else k): v
                       for k, v in state["params"].items()}
    state.pop("offset", None)
    old = tagger_from_state(kind, state)
    assert old.scaling == "signed_log"
    np.testing.assert_array_equal(old.signal_score(X), tagger.signal_score(X))
    if kind == "gaussian":
        with pytest.raises(ValueError, match="outlier offset"):
            old.predict(X)
