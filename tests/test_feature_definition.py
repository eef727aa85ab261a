"""The feature definition is pinned: golden values of fixed jets, the definition number
recorded in model files, and the rule for models trained on an older definition.

A change of ``jetace/features`` or ``jetace/frames.py`` that moves feature values beyond
rounding fails ``test_golden_feature_values_unchanged``. If the change is deliberate:
raise ``jetace.features.FEATURE_DEFINITION``, describe it in docs/definition.md, and
regenerate the file with ``python scripts/make_golden_features.py``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from tolerances import COLUMN_SCALE, EXACT, FLOAT32_VS_FLOAT64, assert_reproduced, deviation

import jetace
from jetace.errors import ModelFileError
from jetace.features import FEATURE_DEFINITION, definition_change, features_from_spec
from jetace.model_file import JetaceModel
from jetace.taggers.linear import LinearTagger

GOLDEN = Path(__file__).parent / "data" / "golden_features.npz"


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as data:
        return {k: data[k] for k in data.files}


def _settings(golden) -> dict:
    return json.loads(str(golden["specs"]))


def test_golden_file_is_of_the_current_definition(golden):
    assert int(golden["feature_definition"]) == FEATURE_DEFINITION, (
        "tests/data/golden_features.npz was written for another feature definition: "
        "regenerate it with scripts/make_golden_features.py")
    assert set(_settings(golden)) == {"bip_3_6", "bip_4_7", "bip_4_7_mirror", "bip_4_7_complete",
                                      "lorentz_default", "lorentz_irc_safe"}


def test_golden_jets_are_the_demo_jets(golden):
    """The stored inputs are what reading the demo sample gives (float32 copied exactly)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
    from make_golden_features import golden_jets

    p4, mask = golden_jets()
    torch.testing.assert_close(p4, torch.from_numpy(golden["p4"]), **EXACT)
    assert torch.equal(mask, torch.from_numpy(golden["mask"]))


@pytest.mark.parametrize("name", ["bip_3_6", "bip_4_7", "bip_4_7_mirror", "bip_4_7_complete",
                                  "lorentz_default", "lorentz_irc_safe"])
def test_golden_feature_values_unchanged(golden, name):
    spec = _settings(golden)[name]
    p4, mask = torch.from_numpy(golden["p4"]), torch.from_numpy(golden["mask"])
    got = features_from_spec(spec)(p4, mask)
    want = torch.from_numpy(golden[name])
    assert got.shape == want.shape, f"{name}: {got.shape[1]} features, golden {want.shape[1]}"
    assert_reproduced(got, want, f"{name} against tests/data/golden_features.npz")
    # float32 from the same float32-exact inputs, to the suite's float32 tolerance
    got32 = features_from_spec(spec)(p4.float(), mask)
    assert deviation(want, got32, floor=COLUMN_SCALE) <= FLOAT32_VS_FLOAT64[spec["family"]], name


def test_golden_values_are_physical(golden):
    """A sanity check of the golden numbers themselves: finite, and top jets (the first
    four) differ from QCD jets (the last four)."""
    for name in _settings(golden):
        x = golden[name]
        assert np.isfinite(x).all() and x.shape[0] == 8, name
        assert not np.allclose(x[:4].mean(0), x[4:].mean(0)), name


# ------------------------------------------------------------------ definition numbers

def _saved(tmp_path, spec, definition):
    f = features_from_spec(spec)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, f.num_features))
    tagger = LinearTagger().fit(X, rng.integers(0, 2, 40))
    model = JetaceModel(f, tagger, ["background", "signal"], max_particles=16)
    data = model.to_dict()
    assert data["feature_definition"] == FEATURE_DEFINITION
    if definition is None:
        del data["feature_definition"]  # as written before the number was recorded
    else:
        data["feature_definition"] = definition
    path = tmp_path / "m.model"
    torch.save(data, path)
    return path


def test_model_files_record_the_definition(tmp_path):
    path = _saved(tmp_path, {"family": "bip", "order": 2, "degree": 3}, FEATURE_DEFINITION)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jetace.model_file.load_model(path)  # the current definition loads without a word


def test_definition_1_bip_model_is_migrated_with_a_warning(tmp_path):
    path = _saved(tmp_path, {"family": "bip", "order": 2, "degree": 3}, None)
    with pytest.warns(UserWarning, match="feature definition 1.*spacelike"):
        model = jetace.model_file.load_model(path)
    assert model.num_features == features_from_spec({"family": "bip", "order": 2,
                                                      "degree": 3}).num_features


def test_changed_definitions_are_refused(tmp_path):
    spec = {"family": "lorentz", "irc_safe": True, "degree": 8}
    assert definition_change(spec, 1) is not None and definition_change(spec, 2) is None
    with pytest.raises(ModelFileError, match="feature definition 1.*definition 2.*l = 1"):
        jetace.model_file.load_model(_saved(tmp_path, spec, 1))
    with pytest.raises(ModelFileError, match="definition 99 is not known"):
        jetace.model_file.load_model(_saved(tmp_path, {"family": "bip", "order": 2,
                                                       "degree": 3}, 99))
