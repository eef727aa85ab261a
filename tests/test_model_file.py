"""Tests of jetace.model_file (save/load, errors, ONNX export) and of scoring its jets
(jetace.scoring.score, score_jets, signal_score)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from tolerances import FLOAT32_SCORES_REBATCHED, LOG_ODDS, ONNX_VS_TORCH
from toyjets import toy_jets, write_jetclass

import jetace
from jetace.errors import InputError, ModelFileError
from jetace.metrics import roc_auc
from jetace.model_file import JetaceModel, _decode, _encode, load_model
from jetace.scoring import score, score_jets, signal_score
from jetace.taggers.base import Tagger, register
from jetace.taggers.linear import LinearTagger
from jetace.taggers.mlp import MLPTagger

SPEC = {"order": 2, "degree": 4}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Features of toy 3-prong (signal) and 1-prong (background) jets, train and test."""
    d = tmp_path_factory.mktemp("toy")
    files = {}
    for name, seed, prongs in (("sig", 1, 3), ("bkg", 2, 1), ("sig_test", 3, 3),
                               ("bkg_test", 4, 1)):
        files[name] = write_jetclass(d / f"{name}.root", toy_jets(300, seed=seed, n_prongs=prongs))
    f = jetace.BIPFeatures(**SPEC)

    def feats(*names):
        jets = jetace.read_jets([files[n] for n in names])
        p4, mask = jetace.to_padded(jets, max_particles=64)
        return jets, p4, mask, f(p4, mask)

    _, _, _, X = feats("bkg", "sig")
    y = np.r_[np.zeros(300), np.ones(300)]
    jets_te, p4_te, mask_te, _ = feats("bkg_test", "sig_test")
    return {"features": f, "X": X, "y": y, "jets": jets_te, "p4": p4_te, "mask": mask_te,
            "y_test": y.copy()}


def _model(toy, tagger=None, classes=("background", "signal")) -> JetaceModel:
    tagger = tagger or LinearTagger().fit(toy["X"], toy["y"])
    return JetaceModel(toy["features"], tagger, list(classes), max_particles=64,
                       metadata={"n_jets": len(toy["y"])})


def test_tagger_beats_chance_on_toy_jets(toy):
    m = _model(toy)
    auc = roc_auc(score(m, toy["p4"], toy["mask"]), toy["y_test"])
    assert auc > 0.9


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_save_load_scores_equal(toy, tmp_path, kind):
    tagger = LinearTagger() if kind == "linear" else MLPTagger(max_epochs=5)
    tagger.fit(toy["X"], toy["y"])
    m = _model(toy, tagger)
    path = m.save(tmp_path / "m.jetace")
    back = load_model(path)
    assert back.tagger.kind == kind and back.classes == ["background", "signal"]
    assert back.spec == m.spec and back.metadata["n_jets"] == len(toy["y"])
    assert back.metadata["jetace_version"] == jetace.__version__
    np.testing.assert_array_equal(score(back, toy["p4"], toy["mask"]).numpy(),
                                  score(m, toy["p4"], toy["mask"]).numpy())
    # raw jets, without the training data: same scores as the padded path, up to float32
    # rounding (batch composition changes the padded width, so the summation order)
    np.testing.assert_allclose(score_jets(back, toy["jets"], batch_size=100),
                               score(m, toy["p4"], toy["mask"]).numpy(), **FLOAT32_SCORES_REBATCHED)


def test_multiclass_scores_and_signal_score(toy):
    y3 = np.arange(len(toy["y"])) % 3
    m = _model(toy, LinearTagger().fit(toy["X"], y3), classes=("a", "b", "c"))
    s = score(m, toy["p4"], toy["mask"])
    assert s.shape == (len(toy["p4"]), 3)
    logit_b = signal_score(m, s.numpy(), "b")
    p = torch.softmax(s.double(), 1)[:, 1].numpy()
    np.testing.assert_allclose(logit_b, np.log(p / (1 - p)), **LOG_ODDS["signal_score"])


def test_version_mismatch_and_corruption(toy, tmp_path):
    m = _model(toy)
    data = m.to_dict()
    data["format_version"] = 999
    torch.save(data, tmp_path / "future.jetace")
    with pytest.raises(ModelFileError, match="format version 999"):
        load_model(tmp_path / "future.jetace")

    good = m.save(tmp_path / "good.jetace").read_bytes()
    (tmp_path / "cut.jetace").write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelFileError, match="corrupted"):
        load_model(tmp_path / "cut.jetace")
    (tmp_path / "text.jetace").write_text("not a model")
    with pytest.raises(ModelFileError, match="not a jetace model"):
        load_model(tmp_path / "text.jetace")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="not a jetace model"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "missing.jetace")
    data = m.to_dict()
    data["tagger_kind"] = "no_such_tagger"
    torch.save(data, tmp_path / "kind.jetace")
    with pytest.raises(ModelFileError, match="no_such_tagger"):
        load_model(tmp_path / "kind.jetace")


def test_encode_decode_round_trip():
    state = {"a": np.arange(5.0), "b": [np.float32(2.5), (1, 2)], "c": torch.ones(2), "d": None}
    back = _decode(_encode(state))
    np.testing.assert_array_equal(back["a"], state["a"])
    assert back["b"] == [2.5, [1, 2]] and torch.equal(back["c"], state["c"]) and back["d"] is None
    with pytest.raises(ModelFileError):
        _encode({"f": object()})


@register("test_centroid_distance")
class _CentroidDistance(Tagger):
    """A minimal unsupervised tagger with numpy state, to check generic storage."""

    def fit(self, X, y=None):
        self.center_ = np.asarray(X, dtype=np.float64).mean(0)
        return self

    def decision_function(self, X):
        X = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
        return np.linalg.norm(X - self.center_, axis=1)

    def get_state(self):
        return {"center": self.center_, "note": "numpy state"}

    @classmethod
    def from_state(cls, state):
        out = cls()
        out.center_ = state["center"]
        return out


def test_any_registered_tagger_is_stored(toy, tmp_path):
    m = _model(toy, _CentroidDistance().fit(toy["X"].double()), classes=["score"])
    back = load_model(m.save(tmp_path / "u.jetace"))
    assert isinstance(back.tagger.center_, np.ndarray)
    np.testing.assert_allclose(score(back, toy["p4"], toy["mask"]).numpy(),
                               score(m, toy["p4"], toy["mask"]).numpy())


@pytest.mark.parametrize("kind", ["linear", "mlp", "lorentz"])
def test_onnx_agrees_with_torch(toy, tmp_path, kind):
    """One ONNX file (weights inside) whose float64 graph gives the torch scores, batch
    and particle axes dynamic; "lorentz": a linear tagger on Lorentz features."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    if kind == "linear":
        tagger = LinearTagger().fit(toy["X"], toy["y"])
    elif kind == "mlp":
        tagger = MLPTagger(max_epochs=5).fit(toy["X"], np.arange(len(toy["y"])) % 3)
    if kind == "lorentz":
        f = jetace.LorentzACEFeatures(order=3)
        X = f(toy["p4"], toy["mask"])
        m = JetaceModel(f, LinearTagger().fit(X, toy["y_test"]), ["background", "signal"],
                        max_particles=64)
    else:
        m = _model(toy, tagger, classes="abc" if kind == "mlp" else ("background", "signal"))
    path = m.to_onnx(tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    sess = ort.InferenceSession(str(path))
    for b, p in ((37, 64), (5, 50)):  # batch and particle axes are dynamic
        p4 = toy["p4"][:b, :p].contiguous()
        mask = toy["mask"][:b, :p].contiguous()
        (out,) = sess.run(None, {"p4": p4.numpy(), "mask": mask.numpy()})
        ref = score(m, p4.double(), mask).numpy()  # the graph computes in float64 inside
        assert out.shape == ref.shape and out.dtype == np.float32
        np.testing.assert_allclose(out, ref, **ONNX_VS_TORCH)


def test_onnx_export_refuses_a_graph_of_fixed_batch_size():
    """torch's exporter falls back, without an error, to a fixed size where the code
    specialises it (len(p4) is a Python int under torch.export); to_onnx refuses that."""
    pytest.importorskip("onnxscript")
    from jetace.model_file import _check_dynamic_axes

    class Sized(torch.nn.Module):
        def __init__(self, fixed: bool):
            super().__init__()
            self.fixed = fixed

        def forward(self, p4, mask):
            b = len(p4) if self.fixed else p4.shape[0]
            return p4.reshape(b, -1).sum(1) * mask.sum(1)

    axes = {0: torch.export.Dim("batch"), 1: torch.export.Dim("particles")}
    example = (torch.ones(2, 5, 4), torch.ones(2, 5, dtype=torch.bool))
    for fixed in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the exporter's note on axis names
            warnings.simplefilter("ignore", FutureWarning)  # and torch's own deprecations
            program = torch.onnx.export(Sized(fixed), example, dynamo=True, verbose=False,
                                        dynamic_shapes=(axes, axes))
        if fixed:
            with pytest.raises(InputError, match="fixed the batch axis"):
                _check_dynamic_axes(program)
        else:
            _check_dynamic_axes(program)
