"""Sample weights end to end: weighted metrics (against scikit-learn), weighted fits
(a weight of 2 is the jet given twice), and the weight branch of train and evaluate."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve
from tolerances import WEIGHT_EQUIVALENCE, WEIGHTED_METRIC

from jetace.errors import InputError
from jetace.metrics import accuracy, binary_metrics, rejection_at, roc_auc, roc_curve
from jetace.taggers.linear import LinearTagger
from jetace.taggers.mlp import MLPTagger


def _sample(n=600, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    s = rng.normal(size=n) + 1.2 * y
    if ties:
        s = np.round(s, 1)
    return s, y, rng.exponential(size=n)


@pytest.mark.parametrize("ties", [False, True])
def test_weighted_auc_and_curve_match_sklearn(ties):
    s, y, w = _sample(ties=ties)
    np.testing.assert_allclose(roc_auc(s, y, w), roc_auc_score(y, s, sample_weight=w),
                               **WEIGHTED_METRIC)
    fpr, tpr, thr = sk_roc_curve(y, s, sample_weight=w, drop_intermediate=False)
    es, eb, th = roc_curve(s, y, w)
    np.testing.assert_allclose(es, tpr, **WEIGHTED_METRIC)
    np.testing.assert_allclose(eb, fpr, **WEIGHTED_METRIC)
    np.testing.assert_array_equal(th[1:], thr[1:])
    # weights change the answer (the test can fail), unit weights do not
    assert abs(roc_auc(s, y, w) - roc_auc(s, y)) > 1e-4
    assert roc_auc(s, y, np.ones(len(s))) == roc_auc(s, y)


def test_integer_weights_equal_repeated_jets():
    s, y, _ = _sample(300, seed=1)
    k = np.random.default_rng(2).integers(1, 4, size=len(s))
    rep_s, rep_y = np.repeat(s, k), np.repeat(y, k)
    got = binary_metrics(s, y, sample_weight=k.astype(float))
    want = binary_metrics(rep_s, rep_y)
    for key in ("auc", "accuracy", "rejection_at_0.3", "rejection_at_0.5"):
        np.testing.assert_allclose(got[key], want[key], **WEIGHTED_METRIC, err_msg=key)
    assert got["n_signal"] == int(y.sum()) and got["sum_weight_signal"] == k[y].sum()


def test_negative_weights_documented_behaviour():
    """Signed weights: the AUC is the weighted pair statistic sum w_s w_b [s_s > s_b]
    (ties 1/2) / (W_S W_B), the rejection is read where the curve first reaches eps_S."""
    s, y, w = _sample(200, seed=3, ties=True)
    w = w * np.where(np.random.default_rng(4).random(len(w)) < 0.15, -1.0, 1.0)
    ss, sb, ws, wb = s[y], s[~y], w[y], w[~y]
    pair = (np.sign(ss[:, None] - sb[None, :]) + 1) / 2
    want = float(ws @ pair @ wb / (ws.sum() * wb.sum()))
    np.testing.assert_allclose(roc_auc(s, y, w), want, **WEIGHTED_METRIC)
    es, eb, _ = roc_curve(s, y, w)
    np.testing.assert_allclose([es[-1], eb[-1]], [1.0, 1.0], **WEIGHTED_METRIC)
    assert np.any(np.diff(es) < 0) or np.any(np.diff(eb) < 0)  # the curve steps back
    first = int(np.argmax(es >= 0.5))
    assert rejection_at(s, y, 0.5, w) >= 1.0 / max(eb[first - 1], eb[first])
    right = (s > 0) == y
    np.testing.assert_allclose(accuracy(s, y, 0.0, w), w[right].sum() / w.sum(),
                               **WEIGHTED_METRIC)
    with pytest.raises(InputError, match="positive total weight"):
        roc_auc(s, y, np.where(y, -1.0, 1.0))
    with pytest.raises(InputError, match="weights"):
        roc_auc(s, y, w[:-1])


def _blobs(n=400, seed=0):
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n // 2, int), np.ones(n - n // 2, int)]
    X = rng.normal(size=(n, 5)) + 0.8 * y[:, None] * np.r_[1.0, 0.5, 0.2, 0.0, 0.0]
    return X, y


@pytest.mark.parametrize("params", [{"tol": 1e-8, "max_iter": 5000},
                                    {"method": "lda", "shrinkage": 0.1}])
def test_linear_weight_two_is_the_jet_twice(params):
    X, y = _blobs()
    k = np.random.default_rng(5).integers(1, 3, size=len(y))
    weighted = LinearTagger(**params).fit(X, y, sample_weight=k.astype(float))
    repeated = LinearTagger(**params).fit(np.repeat(X, k, axis=0), np.repeat(y, k))
    np.testing.assert_allclose(weighted.decision_function(X), repeated.decision_function(X),
                               **WEIGHT_EQUIVALENCE)
    plain = LinearTagger(**params).fit(X, y)
    assert np.abs(plain.decision_function(X) - weighted.decision_function(X)).max() > 1e-3


def test_zero_weight_jets_do_not_count_in_the_linear_fit():
    X, y = _blobs()
    w = np.ones(len(y))
    w[::3] = 0.0
    a = LinearTagger(tol=1e-8, max_iter=5000).fit(X, y, sample_weight=w)
    b = LinearTagger(tol=1e-8, max_iter=5000).fit(X[w > 0], y[w > 0])
    np.testing.assert_allclose(a.decision_function(X), b.decision_function(X),
                               **WEIGHT_EQUIVALENCE)


def test_mlp_weights_enter_loss_and_early_stopping():
    X, y = _blobs(300)
    w = np.where(y == 1, 5.0, 1.0)
    a = MLPTagger(hidden=(8,), n_models=1, max_epochs=6, seed=0).fit(X, y)
    b = MLPTagger(hidden=(8,), n_models=1, max_epochs=6, seed=0).fit(X, y, sample_weight=w)
    # up-weighting signal raises the signal logits on average
    assert b.decision_function(X).mean() > a.decision_function(X).mean() + 0.1
    assert b.best_val_loss_ != a.best_val_loss_
    with pytest.raises(InputError, match="negative"):
        MLPTagger().fit(X, y, sample_weight=-w)
    with pytest.raises(InputError, match="zero"):
        LinearTagger().fit(X, y, sample_weight=np.zeros(len(y)))


def _weighted_file(path, n_prongs, seed, signal):
    """A JetClass-style file with per-jet weight branches ``gen_weight`` (10% negative,
    as from an NLO generator) and ``pt_weight`` (non-negative, for fits)."""
    import awkward as ak
    from toyjets import toy_jets, write_branches

    jets = toy_jets(120, seed=seed, n_prongs=n_prongs)
    counts = [len(j) for j in jets]
    flat = np.concatenate(jets).astype(np.float32)
    rng = np.random.default_rng(seed)
    pt_w = rng.exponential(size=len(jets))
    w = pt_w * np.where(rng.random(len(jets)) < 0.1, -1, 1)
    branches = {f"part_{k}": ak.unflatten(flat[:, i], counts)
                for i, k in enumerate(["energy", "px", "py", "pz"])}
    branches.update({"label_Tbqq": np.full(len(jets), signal),
                     "label_QCD": np.full(len(jets), not signal),
                     "gen_weight": w.astype(np.float64), "pt_weight": pt_w})
    return write_branches(path, branches), w


@pytest.mark.slow
def test_weight_branch_in_train_and_evaluate(tmp_path, capsys):
    import json

    from jetace.cli import main
    from jetace.model_file import load_model
    from jetace.scoring import evaluate_files

    sig, ws = _weighted_file(tmp_path / "sig.root", 3, 1, True)
    bkg, wb = _weighted_file(tmp_path / "bkg.root", 1, 2, False)
    feats = ["--order", "2", "--degree", "4", "--max-particles", "32", "--quiet"]
    plain, weighted = tmp_path / "plain.jetace", tmp_path / "weighted.jetace"
    assert main(["train", "--signal", str(sig), "--background", str(bkg), "-o", str(plain),
                 *feats]) == 0
    assert main(["train", "--signal", str(sig), "--background", str(bkg), "-o",
                 str(weighted), "--weight-branch", "pt_weight", *feats]) == 0
    assert main(["train", "--signal", str(sig), "--background", str(bkg), "-o",
                 str(weighted), "--weight-branch", "gen_weight", *feats]) != 0
    assert "negative" in capsys.readouterr().err  # fits take non-negative weights only
    model = load_model(weighted)
    assert model.metadata["weight_branch"] == "pt_weight"
    a = load_model(plain).tagger.coef_
    assert float((model.tagger.coef_ - a).abs().max()) > 1e-4  # the weights changed the fit
    assert main(["evaluate", str(weighted), "--signal", str(sig), "--background", str(bkg),
                 "--json", "--weight-branch", "gen_weight"]) == 0
    got = json.loads(capsys.readouterr().out)
    _, scores, labels = evaluate_files(model, [str(sig)], [str(bkg)], progress=False)
    w = np.r_[ws, wb]
    np.testing.assert_allclose(got["auc"], roc_auc(scores, labels, w), **WEIGHTED_METRIC)
    np.testing.assert_allclose(got["sum_weight_signal"], ws.sum(), **WEIGHTED_METRIC)
    assert got["n_signal"] == 120
    keep = w > 0  # scikit-learn's weighted AUC, on the positive-weight jets
    np.testing.assert_allclose(roc_auc(scores[keep], labels[keep], w[keep]),
                               roc_auc_score(labels[keep], scores[keep], sample_weight=w[keep]),
                               **WEIGHTED_METRIC)
    code = main(["evaluate", str(weighted), "--signal", str(sig), "--background", str(bkg),
                 "--weight-branch", "no_such_branch"])
    err = capsys.readouterr().err
    assert code != 0 and "no weight branch 'no_such_branch'" in err and "sig.root" in err
    code = main(["train", "--unsupervised", "gaussian", "--background", str(bkg), "-o",
                 str(tmp_path / "u.jetace"), "--weight-branch", "gen_weight", *feats])
    assert code != 0 and "does not take per-jet weights" in capsys.readouterr().err
