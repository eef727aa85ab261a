"""Anomaly detectors trained on background only: ranking, reproducibility, state, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from symmetry import pad
from tolerances import LINALG, SKLEARN, TAIL_CALIBRATION, TORCH_ENTRY_POINTS
from toyjets import toy_jets

from jetace import BIPFeatures
from jetace.errors import InputError
from jetace.metrics import roc_auc
from jetace.taggers import tagger_from_state
from jetace.taggers.anomaly import (
    AutoencoderAnomaly,
    EnsembleAnomaly,
    FeatureTransform,
    GaussianAnomaly,
    GMMAnomaly,
    fit_gaussian_mixture,
    kmeans,
)


def toy_features(n: int, n_prongs: int, seed: int) -> np.ndarray:
    """BIP(2, 4) features (n, 30) of toy jets with ``n_prongs`` hard prongs."""
    jets = toy_jets(n, seed=seed, n_prongs=n_prongs, min_particles=20, max_particles=40)
    with torch.no_grad():
        return BIPFeatures(2, 4)(*pad(jets)).numpy()


def synthetic(n_bkg: int = 1500, n_sig: int = 300, d: int = 12, shift: float = 1.0,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correlated Gaussian background with features on very different scales; signal
    shifted along a random direction. Returns (train background, test X, test labels)."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d))
    scales = 10.0 ** rng.uniform(-3, 3, d)

    def draw(n, offset):
        return (rng.normal(size=(n, d)) + offset) @ mix * scales

    direction = rng.normal(size=d)
    direction *= shift * 3 / np.linalg.norm(direction)
    test = np.r_[draw(n_sig, 0.0), draw(n_sig, direction)]
    return draw(n_bkg, 0.0), test, np.r_[np.zeros(n_sig), np.ones(n_sig)]


def fast(kind: str, seed: int = 0):
    """Small, quick configurations of each detector."""
    if kind == "gaussian":
        return GaussianAnomaly(n_components=8, seed=seed)
    if kind == "gmm":
        return GMMAnomaly(n_mix=2, n_components=6, seed=seed)
    if kind == "ensemble":
        return EnsembleAnomaly([("gaussian", {"n_components": 8}),
                                ("gmm", {"n_mix": 2, "n_components": 6})], seed=seed)
    return AutoencoderAnomaly(hidden=(16,), latent=3, lr=3e-3, max_epochs=10, patience=3,
                              seed=seed)


KINDS = ["gaussian", "gmm", "autoencoder", "ensemble"]


@pytest.fixture(scope="module")
def toy():
    bkg = toy_features(600, 1, seed=1)
    test = np.r_[toy_features(150, 1, seed=2), toy_features(150, 3, seed=3)]
    return bkg, test, np.r_[np.zeros(150), np.ones(150)]


@pytest.mark.parametrize("kind", KINDS)
def test_synthetic_signal_ranked_above_background(kind):
    bkg, X, y = synthetic()
    det = fast(kind).fit(bkg)
    assert det.kind == kind
    assert roc_auc(det.decision_function(X), y) > 0.8
    # background-only check: held-out background is not flagged
    assert roc_auc(det.decision_function(X[y == 0]), np.r_[np.zeros(150), np.ones(150)]) < 0.7


@pytest.mark.parametrize("kind", KINDS)
def test_toy_three_prong_jets_are_anomalous(toy, kind):
    bkg, X, y = toy
    scores = fast(kind).fit(bkg).decision_function(X)
    assert scores.shape == (len(X),)
    assert roc_auc(scores, y) > 0.9


@pytest.mark.parametrize("kind", KINDS)
def test_reproducible_and_round_trip(kind):
    bkg, X, _ = synthetic(n_bkg=600)
    a = fast(kind, seed=3).fit(bkg)
    b = fast(kind, seed=3).fit(bkg)
    np.testing.assert_array_equal(a.decision_function(X), b.decision_function(X))
    state = a.get_state()

    def check_values(obj):  # JSON values, arrays and tensors only: no pickled objects
        if isinstance(obj, dict):
            assert all(isinstance(k, str) for k in obj)
            for v in obj.values():
                check_values(v)
        elif isinstance(obj, list | tuple):
            for v in obj:
                check_values(v)
        elif not isinstance(obj, torch.Tensor | np.ndarray):
            json.dumps(obj)

    check_values(state)
    c = tagger_from_state(kind, state)
    np.testing.assert_array_equal(c.decision_function(X), a.decision_function(X))
    np.testing.assert_array_equal(c.score_samples(X), -a.decision_function(X))


def test_autoencoder_seed_matters_and_early_stopping():
    X = np.random.default_rng(0).normal(size=(80, 12))  # pure noise: a wide net overfits
    kw = {"hidden": (64,), "latent": 8, "lr": 1e-2, "max_epochs": 300, "patience": 3}
    a = AutoencoderAnomaly(**kw, seed=0).fit(X)
    b = AutoencoderAnomaly(**kw, seed=1).fit(X)
    assert not np.array_equal(a.decision_function(X[:5]), b.decision_function(X[:5]))
    n_epochs = len(a.history_["val"])
    assert n_epochs < 300 and a.best_epoch_ == n_epochs - 1 - 3
    assert a.history_["val"][a.best_epoch_] == min(a.history_["val"])


@pytest.mark.parametrize("kind", KINDS)
def test_torch_in_torch_out_numpy_in_numpy_out(kind):
    bkg, X, _ = synthetic(n_bkg=400)
    det = fast(kind).fit(torch.tensor(bkg))
    out_t = det.decision_function(torch.tensor(X))
    out_n = det.decision_function(X)
    assert isinstance(out_t, torch.Tensor) and isinstance(out_n, np.ndarray)
    np.testing.assert_allclose(out_t.numpy(), out_n, rtol=TORCH_ENTRY_POINTS["anomaly"])
    mod = det.as_module()
    with torch.no_grad():
        np.testing.assert_allclose(mod(torch.tensor(X)).numpy(), out_n,
                                   rtol=TORCH_ENTRY_POINTS["anomaly"])


def test_gaussian_distance_matches_numpy_without_shrinkage():
    bkg, X, _ = synthetic(n_bkg=500, d=6)
    det = GaussianAnomaly(n_components=None, shrinkage=0.0).fit(bkg)
    z = (bkg - bkg.mean(0)) / bkg.std(0)
    cov = np.cov(z, rowvar=False, bias=True)
    zt = (X - bkg.mean(0)) / bkg.std(0)
    expect = np.sqrt(np.einsum("ni,ij,nj->n", zt, np.linalg.inv(cov), zt))
    np.testing.assert_allclose(det.decision_function(X), expect, rtol=LINALG["mahalanobis"])


def test_feature_transform_pca_and_whitening():
    bkg, _, _ = synthetic(n_bkg=800, d=10)
    x = torch.tensor(bkg)
    tr = FeatureTransform.fit(x, n_components=4, whiten=True)
    z = tr(x)
    assert z.shape == (800, 4)
    np.testing.assert_allclose(torch.cov(z.T, correction=0).numpy(), np.eye(4),
                               atol=LINALG["whitened_cov"])
    comps = tr.components
    np.testing.assert_allclose((comps.T @ comps).numpy(), np.eye(4), atol=LINALG["orthonormal"])
    frac = FeatureTransform.fit(x, n_components=0.9)
    evals = torch.linalg.eigvalsh(torch.cov(FeatureTransform.fit(x)(x).T, correction=0)).flip(0)
    need = int((torch.cumsum(evals, 0) / evals.sum() < 0.9).sum()) + 1
    assert frac.num_outputs == need
    again = FeatureTransform.from_state(tr.get_state())
    np.testing.assert_array_equal(again(x).numpy(), z.numpy())


def test_mixture_fit_agrees_with_scikit_learn():
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(4)
    z = np.r_[rng.normal(size=(700, 3)), rng.normal(size=(300, 3)) * 0.5 + 4.0]
    ours = fit_gaussian_mixture(torch.tensor(z), 2, reg_covar=1e-6, tol=1e-8)
    ref = GaussianMixture(2, reg_covar=1e-6, tol=1e-8, random_state=0).fit(z)
    assert ours["log_likelihood"] == pytest.approx(ref.score(z), abs=SKLEARN["gaussian_mixture"])
    np.testing.assert_allclose(np.sort(ours["log_weights"].exp().numpy()),
                               np.sort(ref.weights_), atol=SKLEARN["gaussian_mixture"])


def test_kmeans_finds_separated_blobs():
    rng = np.random.default_rng(5)
    z = np.r_[rng.normal(size=(200, 2)), rng.normal(size=(100, 2)) + 10]
    _, labels, inertia = kmeans(torch.tensor(z), 2, seed=1)
    labels = labels.numpy()
    assert len(set(labels[:200])) == 1 and len(set(labels[200:])) == 1
    assert labels[0] != labels[-1]
    within = ((z[:200] - z[:200].mean(0)) ** 2).sum() + ((z[200:] - z[200:].mean(0)) ** 2).sum()
    assert inertia == pytest.approx(within / len(z), rel=LINALG["kmeans_inertia"])


@pytest.mark.parametrize("kind", KINDS)
def test_input_errors(kind):
    det = fast(kind)
    with pytest.raises(InputError, match="empty"):
        det.fit(np.zeros((0, 5)))
    with pytest.raises(InputError, match="constant"):
        det.fit(np.ones((50, 4)) * np.arange(4))
    bad = np.random.default_rng(0).normal(size=(50, 4))
    bad[7, 2] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        det.fit(bad)
    with pytest.raises(InputError, match="not fitted"):
        det.decision_function(bad)
    det.fit(np.random.default_rng(1).normal(size=(200, 6)))
    with pytest.raises(InputError, match="6"):
        det.decision_function(np.zeros((3, 5)))


def test_parameter_errors():
    X = np.random.default_rng(0).normal(size=(100, 5))
    with pytest.raises(InputError, match="shrinkage"):
        GaussianAnomaly(shrinkage=2.0).fit(X)
    with pytest.raises(InputError, match="n_components"):
        GaussianAnomaly(n_components=0).fit(X)
    with pytest.raises(InputError, match="activation"):
        AutoencoderAnomaly(activation="swish")
    with pytest.raises(InputError, match="val_fraction"):
        AutoencoderAnomaly(val_fraction=1.0)


def test_ensemble_tail_calibration():
    """Member scores become background tail scores -log(1 - F): about log 2 at the
    training median, about log(n) at the training maximum, still increasing beyond."""
    bkg, X, y = synthetic(n_bkg=1000)
    ens = EnsembleAnomaly([("gaussian", {"n_components": 8})], n_knots=64).fit(bkg)
    single = GaussianAnomaly(n_components=8).fit(bkg)
    s_train = ens.decision_function(bkg)
    assert np.median(s_train) == pytest.approx(np.log(2), abs=TAIL_CALIBRATION["median"])
    top = np.log(1000)
    assert top - TAIL_CALIBRATION["max_below"] < s_train.max() < top + TAIL_CALIBRATION["max_above"]
    # a monotone map of the single detector: same ranking, same AUC
    raw = single.decision_function(X)
    assert roc_auc(ens.decision_function(X), y) == pytest.approx(roc_auc(raw, y),
                                                                 abs=TAIL_CALIBRATION["auc"])
    far = single.decision_function(bkg).max() * np.r_[1.5, 2.0, 4.0]
    cal = ens.module_.calibrations[0](torch.as_tensor(far))
    assert (cal[0] > np.log(1000)) and bool((cal.diff() > 0).all())


def test_ensemble_members_seeded_and_validated():
    bkg, X, _ = synthetic(n_bkg=500)
    members = [("autoencoder", {"hidden": [8], "latent": 2, "max_epochs": 3}),
               ("gaussian", {"n_components": 4})]
    a = EnsembleAnomaly(members, seed=1).fit(bkg)
    assert [m.kind for m in a.members_] == ["autoencoder", "gaussian"]
    assert all(m.seed == 1 for m in a.members_)
    b = EnsembleAnomaly(members, seed=2).fit(bkg)
    assert not np.array_equal(a.decision_function(X), b.decision_function(X))
    with pytest.raises(InputError, match="anomaly kinds"):
        EnsembleAnomaly([("cluster", {})])
    with pytest.raises(InputError, match="at least one"):
        EnsembleAnomaly([])


def test_ensemble_member_seed_offsets_and_default():
    """A member's own ``seed`` is an offset on the ensemble's seed, so copies of one
    detector differ; the default averages three autoencoders (offsets 0, 1, 2) and a GMM."""
    bkg, X, _ = synthetic(n_bkg=400)
    ae = {"hidden": [8], "latent": 2, "max_epochs": 3}
    ens = EnsembleAnomaly([("autoencoder", ae), ("autoencoder", {**ae, "seed": 1}),
                           ("autoencoder", {**ae, "seed": 2})], seed=5).fit(bkg)
    assert [m.seed for m in ens.members_] == [5, 6, 7]
    s = [m.decision_function(X) for m in ens.members_]
    assert not np.array_equal(s[0], s[1]) and not np.array_equal(s[1], s[2])
    # an offset-0 member equals the detector fitted alone with the ensemble's seed
    alone = AutoencoderAnomaly(hidden=(8,), latent=2, max_epochs=3, seed=5).fit(bkg)
    np.testing.assert_array_equal(s[0], alone.decision_function(X))
    default = EnsembleAnomaly(seed=4)
    kinds = [k for k, _ in default.members]
    assert kinds == ["autoencoder", "autoencoder", "autoencoder", "gmm"]
    assert sorted(default._member(k, p).seed for k, p in default.members[:3]) == [4, 5, 6]
    assert all(p["latent"] == 4 and list(p["hidden"]) == [128] for _, p in default.members[:3])


def test_ensemble_state_without_member_seeds_still_loads():
    """Model files written before seed offsets (members without ``seed``) load and score
    exactly as saved."""
    bkg, X, _ = synthetic(n_bkg=400)
    old = EnsembleAnomaly([("autoencoder", {"hidden": [8], "latent": 2, "max_epochs": 3}),
                           ("gmm", {"n_mix": 2, "n_components": 4, "n_init": 1})],
                          seed=3).fit(bkg)
    state = old.get_state()
    state["params"] = json.loads(json.dumps(state["params"]))  # as read back from a file
    assert all("seed" not in p for _, p in state["params"]["members"])
    new = tagger_from_state("ensemble", state)
    assert [m.seed for m in new.members_] == [3, 3]
    np.testing.assert_array_equal(new.decision_function(X), old.decision_function(X))
