"""Tests of jetace.features.fused: a linear map folded into the BIP product tree."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from symmetry import pad
from tolerances import EXACT, FUSED, absolute
from toyjets import toy_jets

from jetace import BIPFeatures
from jetace.features.fused import FusedLinear
from jetace.features.lorentz import LorentzACEFeatures
from jetace.model_file import JetaceModel
from jetace.scoring import fused_module, score
from jetace.taggers.linear import LinearTagger
from jetace.taggers.mlp import MLPTagger


def _random_affine(f: BIPFeatures, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(k, f.num_features, generator=g, dtype=torch.float64),
            torch.randn(k, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("kw", [{}, {"mirror": True}, {"complete": True}],
                         ids=["default", "mirror", "complete"])
@pytest.mark.parametrize("k", [1, 3])
def test_fused_equals_features_times_weights(monkeypatch, kw, k):
    """float64: the folded map equals features @ W.T + b to rounding, padded and packed,
    whole batches and multiplicity-sorted sub-batches alike."""
    import jetace.features.bip as bip

    jets = toy_jets(13, seed=5)
    p4, mask = pad(jets)
    f = BIPFeatures(3, 5, **kw)
    w, b = _random_affine(f, k, seed=k)
    x = f(p4, mask)
    # an independent reference: the map on the features, term by term, in float64
    ref = torch.stack([(x * w[j]).sum(dim=1) + b[j] for j in range(k)], dim=1)
    fused = FusedLinear(f, w, b)
    assert fused.num_features == k and fused.spec == f.spec
    within = absolute(FUSED["float64"] * float(ref.abs().max()))
    torch.testing.assert_close(fused(p4, mask), ref, **within)
    flat, counts = torch.tensor(np.concatenate(jets)), torch.tensor([len(j) for j in jets])
    monkeypatch.setattr(bip, "CPU_CHUNK", 4)  # several sub-batches
    torch.testing.assert_close(fused.forward_packed(flat, counts), ref, **within)
    torch.testing.assert_close(fused(p4, mask), ref, **within)


def test_fused_float32_tolerance():
    """float32: within 1e-5 (relative to the largest score) of the map taken in float64
    on the float32 features (the rounding of the features themselves is common to both)."""
    jets = toy_jets(40, seed=6, max_particles=80)
    p4, mask = pad(jets, dtype=torch.float32)
    f = BIPFeatures(4, 7, mirror=True)
    x = f(p4, mask).double()
    # standardised weights, as a tagger's: each feature's weight over its spread
    w, b = _random_affine(f, 1, seed=1)
    w = w / x.std(dim=0).clamp_min(1e-300)
    ref = x @ w.T + b
    out = FusedLinear(f, w, b)(p4, mask)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref,
                               **absolute(FUSED["float32"] * float(ref.abs().max())))


def test_level_weights_checks_shape():
    f = BIPFeatures(2, 3)
    with pytest.raises(ValueError, match="weights"):
        f.level_weights(torch.zeros(1, f.num_features + 1))
    with pytest.raises(TypeError, match="BIPFeatures"):
        FusedLinear(LorentzACEFeatures(), torch.zeros(1, 3),
                    torch.zeros(1))


def _toy_features(f: BIPFeatures) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, torch.Tensor]:
    sig, bkg = toy_jets(150, seed=1, n_prongs=3), toy_jets(150, seed=2, n_prongs=1)
    p4, mask = pad(sig + bkg, dtype=torch.float32)
    return f(p4, mask), np.r_[np.ones(150), np.zeros(150)], p4, mask


@pytest.mark.parametrize("transform,fused", [("standard", True), ("signed_log", False)])
def test_model_scores_through_the_fused_path(transform, fused):
    """A linear tagger on standardised features scores through FusedLinear (same scores
    as the tagger on the features); after signed_log (not affine) it does not."""
    f = BIPFeatures(3, 6, mirror=True)
    X, y, p4, mask = _toy_features(f)
    tagger = LinearTagger(scaling=transform).fit(X, y)
    model = JetaceModel(f, tagger, ["background", "signal"])
    assert (fused_module(model) is not None) is fused
    expected = torch.as_tensor(tagger.decision_function(X))
    got = score(model, p4, mask)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected,
                               **absolute(FUSED["tagger"] * float(expected.abs().max())))


def test_mlp_and_multiclass_models():
    """An MLP is not affine: no fused path. A multi-class linear tagger gives (n, K)."""
    f = BIPFeatures(2, 4)
    X, y, p4, mask = _toy_features(f)
    mlp = JetaceModel(f, MLPTagger(max_epochs=2).fit(X, y), ["background", "signal"])
    assert fused_module(mlp) is None
    y3 = np.arange(len(y)) % 3
    lin = LinearTagger().fit(X, y3)
    model = JetaceModel(f, lin, ["a", "b", "c"])
    assert fused_module(model) is not None
    expected = torch.as_tensor(lin.decision_function(X))
    torch.testing.assert_close(score(model, p4, mask), expected,
                               **absolute(FUSED["tagger"] * float(expected.abs().max())))


def test_fused_pickles_for_spawned_workers():
    """Spawned worker processes get the module pickled: the copy scores the same."""
    import pickle

    p4, mask = pad(toy_jets(6, seed=8))
    f = BIPFeatures(3, 5, mirror=True)
    fused = FusedLinear(f, *_random_affine(f, 2, seed=3))
    copy = pickle.loads(pickle.dumps(fused))
    torch.testing.assert_close(copy(p4, mask), fused(p4, mask), **EXACT)
