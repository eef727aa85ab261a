"""Tests of jetace.presets: the training modes' defaults, decided once and read by
jetace.training and `jetace train`; and the model file holding no scoring code."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from jetace import presets, training
from jetace.cli import build_parser
from jetace.errors import InputError


def test_default_specs_of_each_mode():
    assert presets.default_spec("supervised", "mlp") == dict(presets.SUPERVISED_SPEC)
    assert presets.default_spec("weak") == dict(presets.WEAK_SPEC)
    anomaly = presets.default_spec("anomaly", "cluster")
    assert (anomaly["order"], anomaly["degree"], anomaly["max_particles"]) == (3, 6, 32)
    anomaly["order"] = 5  # a fresh copy: the preset itself is unchanged
    assert presets.ANOMALY_SPEC["order"] == 3
    with pytest.raises(TypeError):
        presets.SUPERVISED_SPEC["order"] = 5  # read-only
    with pytest.raises(InputError, match="no model 'gmm'"):
        presets.default_spec("supervised", "gmm")
    with pytest.raises(InputError, match="unknown training mode"):
        presets.default_spec("semi")
    assert [presets.mode_of(m) for m in ("linear", "cwola-mlp", "ensemble")] == [
        "supervised", "weak", "anomaly"]


def test_complete_spec_fills_only_what_is_unset():
    assert presets.complete_spec("anomaly", {"family": "bip", "mirror": True}) == {
        "family": "bip", "mirror": True, "order": 3, "degree": 6, "max_particles": 32}
    # an explicit order keeps the family's degree default; explicit max_particles stays
    assert presets.complete_spec("weak", {"family": "bip", "order": 2,
                                          "max_particles": 64}) == {
        "family": "bip", "order": 2, "max_particles": 64}
    assert presets.complete_spec("supervised", {"family": "lorentz"}) == {
        "family": "lorentz", "max_particles": 128}


def test_training_and_cli_read_the_presets():
    defaults = {name: {k: p.default for k, p in inspect.signature(fn).parameters.items()}
                for name, fn in (("supervised", training.train_model),
                                 ("weak", training.train_cwola),
                                 ("anomaly", training.train_unsupervised))}
    for mode, params in defaults.items():
        assert params["val_fraction"] == presets.preset(mode).val_fraction
    assert defaults["supervised"]["model"] == presets.SUPERVISED.model
    assert defaults["weak"]["model"] == presets.WEAK.model
    assert defaults["anomaly"]["method"] == presets.ANOMALY.model
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    actions = {a.dest: a for a in train._actions}
    assert tuple(actions["unsupervised"].choices) == presets.UNSUPERVISED
    assert tuple(actions["model"].choices) == presets.SUPERVISED.models
    assert actions["model"].default == presets.SUPERVISED.model
    assert actions["method"].default == presets.SUPERVISED.tagger_params["linear"]["method"]
    assert f"{presets.ANOMALY_SPEC['max_particles']} for train --unsupervised" in \
        actions["max_particles"].help


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_model_file_and_presets_import_no_higher_layer():
    root = Path(presets.__file__).parent
    higher = {"jetace.extract", "jetace.scoring", "jetace.training", "jetace.io",
              "jetace.cli"}
    assert not _imports(root / "model_file.py") & higher
    assert {n for n in _imports(root / "presets.py") if n.startswith("jetace")} == {
        "jetace.errors", "jetace.errors.InputError"}
