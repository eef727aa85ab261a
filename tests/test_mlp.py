"""Tests of jetace.taggers.mlp."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tolerances import DIFFERS, MLP_ENSEMBLE, PROBABILITY_SUM

from jetace.cost import trainable_parameters
from jetace.errors import InputError
from jetace.metrics import roc_auc
from jetace.taggers import tagger_from_state
from jetace.taggers.linear import LinearTagger
from jetace.taggers.mlp import DEFAULT_MAX_PARAMETERS, ENSEMBLE, MLPTagger

pytestmark = pytest.mark.usefixtures("one_thread")


def _xor(seed=0, n=3000, f=8):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(int)  # no linear model separates this
    return X, y


def test_beats_linear_on_nonlinear_problem():
    X, y = _xor(n=2000)
    Xte, yte = _xor(1, n=1000)
    mlp = MLPTagger(hidden=(16,), lr=1e-2, batch_size=256, max_epochs=25, patience=5).fit(X, y)
    lin = LinearTagger().fit(X, y)
    assert roc_auc(mlp.decision_function(Xte), yte) > 0.9
    assert roc_auc(lin.decision_function(Xte), yte) < 0.65
    assert 1 <= mlp.best_epoch_ <= mlp.n_epochs_ <= 25
    assert len(mlp.history_) == mlp.n_epochs_


def test_seeded_and_early_stopping():
    X, y = _xor(2, n=400)
    a = MLPTagger(seed=3, hidden=(16,), max_epochs=4).fit(X, y).decision_function(X)
    b = MLPTagger(seed=3, hidden=(16,), max_epochs=4).fit(X, y).decision_function(X)
    c = MLPTagger(seed=4, hidden=(16,), max_epochs=4).fit(X, y).decision_function(X)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > DIFFERS["seeds"]
    noise = np.random.default_rng(5).integers(0, 2, len(X))
    t = MLPTagger(hidden=(16,), lr=1e-2, patience=3, max_epochs=200).fit(X, noise)
    assert t.n_epochs_ < 200 and t.n_epochs_ - t.best_epoch_ == 3


def test_multiclass_and_state_round_trip():
    X, _ = _xor(6, n=1000)
    y = np.digitize(X[:, 0] + X[:, 1] ** 2, [0.0, 1.5])
    t = MLPTagger(hidden=(16, 8), max_epochs=25, lr=1e-2, batch_size=128).fit(torch.as_tensor(X), y)
    p = t.predict_proba(X)
    assert p.shape == (len(X), 3) and np.allclose(p.sum(1), 1, atol=PROBABILITY_SUM[torch.float32])
    assert t.decision_function(X).shape == (len(X), 3)
    assert np.mean(t.predict(X) == y) > 0.7
    back = tagger_from_state("mlp", t.get_state())
    np.testing.assert_array_equal(back.decision_function(X), t.decision_function(X))


def test_bad_parameters():
    """Constructors only store their arguments (scikit-learn's rule); fit checks them."""
    X = np.random.default_rng(0).normal(size=(20, 3))
    y = np.r_[np.zeros(10), np.ones(10)]
    for params, match in [({"hidden": (8, 8, 8, 8)}, "hidden"),
                          ({"val_fraction": 1.0}, "val_fraction"),
                          ({"schedule": "step"}, "schedule"), ({"n_models": 0}, "n_models"),
                          ({"linear_blend": 1.0}, "linear_blend"),
                          ({"linear_C": 0.0}, "linear_C"),
                          ({"max_parameters": 0}, "max_parameters")]:
        t = MLPTagger(**params)
        assert t.get_params()[next(iter(params))] == next(iter(params.values()))
        with pytest.raises(InputError, match=match):
            t.fit(X, y)
    with pytest.raises(InputError, match="not fitted"):
        MLPTagger().predict(np.zeros((2, 3)))


def test_ensemble_averages_seeded_members():
    X, y = _xor(7, n=600)
    kw = dict(hidden=(16,), lr=1e-2, max_epochs=6, linear_blend=0.0)
    ens = MLPTagger(n_models=3, seed=5, **kw).fit(X, y)
    assert ens.net_.linear is None
    assert len(ens.net_.members) == 3 and len(ens.members_) == 3
    assert [m["n_epochs"] for m in ens.members_][0] == ens.n_epochs_
    Z = ens.net_.scaler(torch.as_tensor(X))
    with torch.no_grad():
        logits = torch.stack([m(Z)[:, 0] for m in ens.net_.members])
    np.testing.assert_allclose(ens.decision_function(X), logits.mean(0).numpy(),
                               atol=MLP_ENSEMBLE["mean"])
    assert (logits[0] - logits[1]).abs().max() > DIFFERS["ensemble_members"]
    # member i is the network a single-model fit with seed + i would train
    one = MLPTagger(n_models=1, seed=6, **kw).fit(X, y)
    np.testing.assert_allclose(one.decision_function(X), logits[1].numpy(),
                               atol=MLP_ENSEMBLE["member_refit"])
    back = tagger_from_state("mlp", ens.get_state())
    np.testing.assert_array_equal(back.decision_function(X), ens.decision_function(X))
    assert back.members_ == ens.members_


def test_plateau_schedule_and_linear_start():
    X, y = _xor(8, n=600)
    t = MLPTagger(hidden=(8,), skip=True, linear_start=3.0, schedule="plateau", n_models=2,
                  max_epochs=3).fit(X, y)
    for m in t.net_.members:  # the frozen skip of every member is the logistic solution
        assert not m.skip.weight.requires_grad
    torch.testing.assert_close(t.net_.members[0].skip.weight, t.net_.members[1].skip.weight)


def test_loads_single_network_state_of_earlier_files():
    X, y = _xor(9, n=400)
    t = MLPTagger(hidden=(8,), n_models=1, max_epochs=3, linear_blend=0.0).fit(X, y)
    state = t.get_state()
    state["weights"] = {k.removeprefix("members.0."): v for k, v in state["weights"].items()}
    for key in ("n_models", "schedule", "linear_blend", "linear_C"):
        del state["params"][key]
    del state["members"]
    back = tagger_from_state("mlp", state)
    np.testing.assert_array_equal(back.decision_function(X), t.decision_function(X))


def test_linear_blend_mixes_in_the_logistic_logit():
    X, y = _xor(10, n=600)
    X[:, 2] += 0.8 * y  # some linear signal too
    t = MLPTagger(hidden=(8,), n_models=2, max_epochs=3, linear_blend=0.4, linear_C=2.0,
                  seed=1).fit(X, y)
    assert not any(p.requires_grad for p in t.net_.linear.parameters())
    Z = t.net_.scaler(torch.as_tensor(X))
    with torch.no_grad():
        nets = torch.stack([m(Z)[:, 0] for m in t.net_.members]).mean(0).numpy()
    lin = LinearTagger(C=2.0).fit(X, y).decision_function(X)
    np.testing.assert_allclose(t.decision_function(X), 0.6 * nets + 0.4 * lin,
                               atol=MLP_ENSEMBLE["linear_blend"])
    back = tagger_from_state("mlp", t.get_state())
    assert back.linear_blend == 0.4 and back.linear_C == 2.0
    np.testing.assert_array_equal(back.decision_function(X), t.decision_function(X))
    # multi-class: one logistic logit per class
    y3 = np.digitize(X[:, 0] + X[:, 1] ** 2, [0.0, 1.5])
    t3 = MLPTagger(hidden=(8,), n_models=1, max_epochs=2, linear_blend=0.25).fit(X, y3)
    assert t3.net_.linear.weight.shape == (3, X.shape[1])
    assert t3.decision_function(X).shape == (len(X), 3)


@pytest.mark.parametrize("n_features,n_classes", [(178, 2), (694, 2), (1198, 2), (694, 3)])
def test_default_network_is_the_widest_within_the_parameter_budget(n_features, n_classes):
    """The default (hidden=None) is one hidden layer, as wide as the budget allows: the
    fitted model has at most DEFAULT_MAX_PARAMETERS trainable parameters (blended linear
    model included), one unit more would exceed it, and a model file keeps the width."""
    rng = np.random.default_rng(n_features)
    X = rng.normal(size=(200, n_features)).astype(np.float32)
    y = rng.integers(0, n_classes, len(X))
    t = MLPTagger(max_epochs=1).fit(X, y)
    n = trainable_parameters(t)
    assert n <= DEFAULT_MAX_PARAMETERS and len(t.hidden_) == 1
    params = {k: v for k, v in t.get_params().items() if k != "hidden"}
    wider = MLPTagger(**{**params, "hidden": (t.hidden_[0] + 1,)}).fit(X, y)
    assert trainable_parameters(wider) > DEFAULT_MAX_PARAMETERS
    back = tagger_from_state("mlp", t.get_state())
    assert back.hidden_ == t.hidden_ and trainable_parameters(back) == n
    np.testing.assert_array_equal(back.decision_function(X), t.decision_function(X))
    smaller = MLPTagger(max_parameters=DEFAULT_MAX_PARAMETERS // 2, max_epochs=1).fit(X, y)
    assert trainable_parameters(smaller) <= DEFAULT_MAX_PARAMETERS // 2


def test_ensemble_preset_is_the_earlier_large_default():
    X, y = _xor(11, n=300)
    X = np.concatenate([X] * 4, axis=1)  # wide enough to be well over the budget
    t = MLPTagger(**ENSEMBLE, max_epochs=1).fit(X, y)
    assert len(t.net_.members) == ENSEMBLE["n_models"] and t.hidden_ == ENSEMBLE["hidden"]
    assert trainable_parameters(t) > DEFAULT_MAX_PARAMETERS
