"""CWoLa (classification without labels) and mixed samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_anomaly import toy_features
from tolerances import PROBABILITY_BOUNDS, TORCH_ENTRY_POINTS

from jetace.errors import InputError
from jetace.metrics import roc_auc
from jetace.taggers import tagger_from_state
from jetace.taggers.linear import LinearTagger
from jetace.taggers.weak import CWoLaTagger, make_mixture


def synthetic(n_sig: int, n_bkg: int, d: int = 10, seed: int = 0):
    """Signal and background Gaussians that overlap (supervised AUC about 0.85)."""
    rng = np.random.default_rng(seed)
    shift = np.zeros(d)
    shift[:3] = 0.8
    scales = 10.0 ** rng.uniform(-2, 2, d)
    return (rng.normal(size=(n_sig, d)) + shift) * scales, rng.normal(size=(n_bkg, d)) * scales


def test_make_mixture_counts_and_no_duplicates():
    S, B = np.arange(100.0)[:, None], -np.arange(1, 401.0)[:, None]
    X, truth = make_mixture(S, B, 0.2, 250, rng=1)
    assert X.shape == (250, 1) and truth.dtype == bool
    assert truth.sum() == 50
    np.testing.assert_array_equal(X[truth, 0] >= 0, True)
    np.testing.assert_array_equal(X[~truth, 0] < 0, True)
    assert len(np.unique(X[:, 0])) == 250
    assert not np.all(np.diff(truth.astype(int)) <= 0)  # shuffled, not blocked
    X2, truth2 = make_mixture(S, B, 0.2, 250, rng=1)
    np.testing.assert_array_equal(X, X2)
    Xt, _ = make_mixture(torch.tensor(S), torch.tensor(B), 0.5, 10, rng=2)
    assert isinstance(Xt, torch.Tensor)
    with pytest.raises(InputError, match="needs 150 signal"):
        make_mixture(S, B, 0.5, 300)
    with pytest.raises(InputError, match="fraction"):
        make_mixture(S, B, 1.5, 10)


def cwola_vs_supervised(S, B, fa=0.2, fb=0.05, n=2500, seed=0, **kw):
    rng = np.random.default_rng(seed)
    n_test = 500
    St, Bt = S[-n_test:], B[-n_test:]
    half_s, half_b = (len(S) - n_test) // 2, (len(B) - n_test) // 2
    Xa, _ = make_mixture(S[:half_s], B[:half_b], fa, n, rng)
    Xb, _ = make_mixture(S[half_s:2 * half_s], B[half_b:2 * half_b], fb, n, rng)
    X_test = np.r_[St, Bt]
    y_test = np.r_[np.ones(n_test), np.zeros(n_test)]
    cw = CWoLaTagger(**kw).fit_mixtures(Xa, Xb)
    m = min(1500, len(S) - n_test, len(B) - n_test)
    sup = LinearTagger().fit(np.r_[S[:m], B[:m]], np.r_[np.ones(m), np.zeros(m)])
    return (roc_auc(cw.decision_function(X_test), y_test),
            roc_auc(sup.decision_function(X_test), y_test), cw)


def test_cwola_recovers_supervised_tagger_synthetic():
    S, B = synthetic(2000, 7000)
    auc_cw, auc_sup, cw = cwola_vs_supervised(S, B)
    assert auc_sup > 0.8
    assert auc_cw > auc_sup - 0.03
    assert cw.classifier_.kind == "linear"


def test_cwola_on_toy_jets_at_fractions_020_vs_005():
    S = toy_features(1100, 3, seed=21)
    B = toy_features(3300, 1, seed=22)
    auc_cw, auc_sup, _ = cwola_vs_supervised(S, B, n=1400)
    assert auc_cw > 0.9 and auc_cw > auc_sup - 0.05


def test_mixture_labels_swapped_flip_the_tagger():
    S, B = synthetic(1500, 7000, seed=1)
    rng = np.random.default_rng(0)
    Xa, _ = make_mixture(S[:700], B[:3000], 0.25, 2500, rng)
    Xb, _ = make_mixture(S[700:1400], B[3000:6000], 0.05, 2500, rng)
    X_test, y_test = np.r_[S[-100:], B[-500:]], np.r_[np.ones(100), np.zeros(500)]
    right = CWoLaTagger().fit_mixtures(Xa, Xb).decision_function(X_test)
    wrong = CWoLaTagger().fit_mixtures(Xb, Xa).decision_function(X_test)
    assert roc_auc(right, y_test) > 0.75 > 0.25 > roc_auc(wrong, y_test)


def test_balancing_oversamples_the_smaller_mixture(monkeypatch):
    seen = {}
    orig = LinearTagger.fit

    def spy(self, X, y=None, **kw):
        seen["y"] = np.asarray(y)
        seen["X"] = np.asarray(X)
        return orig(self, X, y, **kw)

    monkeypatch.setattr(LinearTagger, "fit", spy)
    S, B = synthetic(300, 2000, seed=2)
    Xa, Xb = np.r_[S[:100], B[:400]], B[400:1700]  # 500 vs 1300 jets
    CWoLaTagger(seed=3).fit_mixtures(Xa, Xb)
    assert (seen["y"] == 1).sum() == (seen["y"] == 0).sum() == 1300
    a_rows = seen["X"][seen["y"] == 1]
    # every jet of A appears 2 or 3 times (1300 = 2 * 500 + 300)
    _, counts = np.unique(a_rows, axis=0, return_counts=True)
    assert set(counts) == {2, 3} and counts.sum() == 1300
    CWoLaTagger(balance=False).fit_mixtures(Xa, Xb)
    assert (seen["y"] == 1).sum() == 500


@pytest.mark.parametrize("classifier", ["linear", "mlp"])
def test_reproducible_and_round_trip(classifier):
    S, B = synthetic(400, 2000, seed=4)
    rng = np.random.default_rng(0)
    Xa, _ = make_mixture(S[:200], B[:1000], 0.2, 800, rng)
    Xb, _ = make_mixture(S[200:], B[1000:], 0.05, 600, rng)
    params = {"hidden": (8,), "max_epochs": 5} if classifier == "mlp" else {}
    a = CWoLaTagger(classifier, params, seed=7).fit_mixtures(Xa, Xb)
    b = CWoLaTagger(classifier, params, seed=7).fit_mixtures(Xa, Xb)
    X = np.r_[Xa[:50], Xb[:50]]
    np.testing.assert_array_equal(a.decision_function(X), b.decision_function(X))
    c = tagger_from_state("cwola", a.get_state())
    assert c.classifier_.kind == classifier
    np.testing.assert_array_equal(c.decision_function(X), a.decision_function(X))
    assert c.predict_proba(X).shape == (100, 2)
    with torch.no_grad():
        mod_out = a.as_module()(torch.as_tensor(X, dtype=torch.float32))
    np.testing.assert_allclose(mod_out.numpy(), a.decision_function(X.astype(np.float32)),
                               rtol=TORCH_ENTRY_POINTS["cwola"])


def test_errors():
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(InputError, match="mixture"):
        CWoLaTagger().fit(X)
    with pytest.raises(InputError, match="both mixtures"):
        CWoLaTagger().fit(X, np.ones(20))
    with pytest.raises(InputError, match="labels 1"):
        CWoLaTagger().fit(X, np.arange(20))
    with pytest.raises(InputError, match=r"shape \(20,\)"):
        CWoLaTagger().fit(X, np.ones(5))
    with pytest.raises(InputError, match="supervised classifier"):
        CWoLaTagger("gaussian").fit(X, np.r_[np.ones(10), np.zeros(10)])
    with pytest.raises(InputError, match="not fitted"):
        CWoLaTagger().decision_function(X)
    with pytest.raises(InputError, match="empty"):
        CWoLaTagger().fit(np.zeros((0, 3)), np.zeros(0))
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        CWoLaTagger().fit_mixtures(bad, X)


def test_mix_command_writes_mixture_with_truth(tmp_path):
    import uproot
    from toyjets import toy_jets, write_jetclass

    from jetace.cli import main
    from jetace.io import read_jets
    from jetace.mix import MIX_TRUTH

    sig = write_jetclass(tmp_path / "sig.root", toy_jets(60, seed=1, n_prongs=3),
                         {"label_Tbqq": True, "label_QCD": False})
    bkg = write_jetclass(tmp_path / "bkg.root", toy_jets(200, seed=2),
                         {"label_Tbqq": False, "label_QCD": True})
    out = tmp_path / "mix.root"
    assert main(["mix", str(sig), "--background", str(bkg), "--fraction", "0.25", "-n", "160",
                 "-o", str(out), "--seed", "4"]) == 0
    jets = read_jets(out)
    assert len(jets) == 160
    truth = uproot.open(out)["tree"][MIX_TRUTH].array(library="np")
    assert truth.sum() == 40
    np.testing.assert_array_equal(truth, np.asarray(jets["label_Tbqq"]))
    assert not np.all(np.diff(truth.astype(int)) <= 0)  # shuffled
    # constituents are copied unchanged: every mixed jet's energies occur in an input jet
    energies = {tuple(np.round(j[:, 0].astype(np.float32), 3)) for j in
                toy_jets(60, seed=1, n_prongs=3) + toy_jets(200, seed=2)}
    for e in jets["constituents"]["energy"][:20]:
        assert tuple(np.round(np.asarray(e), 3)) in energies
    assert main(["mix", str(sig), "--background", str(bkg), "--fraction", "0.5", "-n", "160",
                 "-o", str(out)]) == 1  # needs 80 signal jets, the file holds 60


def test_mixture_link_beats_logistic_link_at_low_signal_fraction():
    """Fitting the saturating A-vs-B curve (mixture link) instead of a straight logit
    recovers more of the supervised tagger when the mixtures hold little signal."""
    rng = np.random.default_rng(5)  # well separated classes (supervised AUC 0.96)
    scales, shift = 10.0 ** rng.uniform(-2, 2, 20), np.r_[np.full(4, 1.2), np.zeros(16)]
    S = (rng.normal(size=(2000, 20)) + shift) * scales
    B = rng.normal(size=(12000, 20)) * scales
    aucs = {}
    for link in ("logistic", "mixture"):
        auc_cw, auc_sup, cw = cwola_vs_supervised(S, B, fa=0.1, fb=0.025, n=5000, seed=1,
                                                  link=link)
        aucs[link] = auc_cw
        assert cw.link_ == link
    assert cw.link_n_iter_ > 0 and cw.link_C_ in cw.link_C_grid
    assert set(cw.link_scan_) == set(cw.link_C_grid)
    assert aucs["mixture"] > aucs["logistic"] + 0.015
    assert aucs["mixture"] > auc_sup - 0.015


def test_mixture_link_probabilities_and_old_model_files():
    S, B = synthetic(400, 2000, seed=4)
    rng = np.random.default_rng(0)
    Xa, _ = make_mixture(S[:200], B[:1000], 0.2, 800, rng)
    Xb, _ = make_mixture(S[200:], B[1000:], 0.05, 600, rng)
    cw = CWoLaTagger(ratio=5.0).fit_mixtures(Xa, Xb)
    assert cw.link_ == "mixture"
    p = cw.predict_proba(np.r_[Xa, Xb])
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    # P(A | x) lies between 1/2 (background-like) and ratio / (1 + ratio)
    slack = PROBABILITY_BOUNDS
    assert p[:, 1].min() >= 0.5 - slack and p[:, 1].max() <= 5 / 6 + slack
    pt = cw.predict_proba(torch.as_tensor(Xa[:5]))
    assert isinstance(pt, torch.Tensor)
    state = cw.get_state()
    for k in ("link", "ratio", "link_C", "link_C_grid", "val_fraction"):
        del state["params"][k]  # as in a model file written before the mixture link
    for k in ("link", "link_n_iter", "link_C_used", "link_scan"):
        del state[k]
    old = tagger_from_state("cwola", state)
    assert old.link_ == "logistic"
    np.testing.assert_array_equal(old.decision_function(Xa), cw.decision_function(Xa))


def test_link_parameter_errors():
    with pytest.raises(InputError, match="unknown link"):
        CWoLaTagger(link="probit")
    with pytest.raises(InputError, match="linear"):
        CWoLaTagger("mlp", link="mixture")
    with pytest.raises(InputError, match="ratio"):
        CWoLaTagger(ratio=1.0)
    with pytest.raises(InputError, match="link_C"):
        CWoLaTagger(link_C=0)
    with pytest.raises(InputError, match="val_fraction"):
        CWoLaTagger(val_fraction=1.0)
    assert CWoLaTagger("mlp")._link() == "logistic"
