"""Tests of jetace.metrics against scikit-learn and brute-force counting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from tolerances import METRIC_REFERENCE

from jetace.errors import InputError
from jetace.metrics import accuracy, binary_metrics, plot_roc, rejection_at, roc_auc, roc_curve


def _sample(seed: int, n: int = 2000, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    s = rng.normal(size=n) + 1.5 * y
    if ties:
        s = np.round(s, 1)
    return s, y


@pytest.mark.parametrize("ties", [False, True])
def test_auc_matches_sklearn(ties):
    s, y = _sample(1, ties=ties)
    assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=METRIC_REFERENCE["auc"])


def test_auc_brute_force_pairs():
    s, y = _sample(2, n=300, ties=True)
    sig, bkg = s[y], s[~y]
    diff = sig[:, None] - bkg[None, :]
    expected = ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size
    assert roc_auc(s, y) == pytest.approx(expected, abs=METRIC_REFERENCE["auc"])


def test_roc_curve_counts():
    s, y = _sample(3, n=500, ties=True)
    es, eb, thr = roc_curve(s, y)
    assert es[0] == 0 and eb[0] == 0 and es[-1] == 1 and eb[-1] == 1
    assert np.all(np.diff(es) >= 0) and np.all(np.diff(eb) >= 0)
    for i in (5, 40, len(thr) // 2):
        cut = thr[i]
        assert es[i] == pytest.approx(np.mean(s[y] >= cut))
        assert eb[i] == pytest.approx(np.mean(s[~y] >= cut))


@pytest.mark.parametrize("eff", [0.3, 0.5])
def test_rejection_brute_force(eff):
    s, y = _sample(4, n=4000)
    sig = np.sort(s[y])[::-1]
    k = int(round(eff * len(sig)))
    # choose the target efficiency exactly at a ROC point: k signal jets above the cut
    target = k / len(sig)
    cut = sig[k - 1]
    eps_b = np.mean(s[~y] >= cut)
    assert rejection_at(s, y, target) == pytest.approx(1 / eps_b, rel=METRIC_REFERENCE["rejection"])


def test_rejection_interpolates_and_is_inf_safe():
    s, y = _sample(5, n=1000)
    r1, r2 = rejection_at(s, y, 0.299), rejection_at(s, y, 0.301)
    r = rejection_at(s, y, 0.3)
    assert min(r1, r2) <= r <= max(r1, r2)
    perfect = np.r_[np.ones(50), np.zeros(50)]
    assert rejection_at(perfect + np.linspace(0, 0.1, 100), perfect, 0.5) == np.inf
    with pytest.raises(InputError):
        rejection_at(s, y, 0.0)


def test_accuracy_and_binary_metrics_keys():
    s, y = _sample(6)
    assert accuracy(s, y, 0.75) == pytest.approx(np.mean((s > 0.75) == y))
    m = binary_metrics(torch.as_tensor(s), torch.as_tensor(y))
    assert set(m) == {"auc", "accuracy", "rejection_at_0.3", "rejection_at_0.5",
                      "n_signal", "n_background"}
    assert m["n_signal"] == int(y.sum()) and m["n_background"] == int((~y).sum())
    assert m["rejection_at_0.3"] > m["rejection_at_0.5"] > 1


def test_bad_inputs():
    with pytest.raises(InputError, match="both signal and background"):
        roc_auc(np.arange(5.0), np.ones(5))
    with pytest.raises(InputError, match="scores but"):
        roc_auc(np.arange(5.0), np.ones(4))
    with pytest.raises(InputError, match="NaN"):
        roc_auc(np.array([0.0, np.nan]), np.array([0, 1]))


def test_plot_roc(tmp_path):
    s, y = _sample(7)
    path = tmp_path / "roc.png"
    fig = plot_roc({"a": (s, y), "b": (-s, y)}, path)
    assert path.stat().st_size > 1000
    assert fig.axes[0].get_yscale() == "log"
