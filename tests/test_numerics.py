"""Tests of jetace.numerics, the shared numerics of the taggers, and of who imports it."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from tolerances import EXACT

import jetace.training
from jetace import numerics
from jetace.errors import InputError
from jetace.taggers.linear import LinearTagger

pytestmark = pytest.mark.usefixtures("one_thread")

PACKAGE = Path(numerics.__file__).parent
#: modules above the taggers, which no tagger imports
UPPER = [["jetace", m] for m in ("metrics", "scoring", "model_file", "cli", "training")]


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import statement of a source file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


def test_numerics_imports_nothing_above_it():
    modules = {m for m, _ in _imports(PACKAGE / "numerics.py")}
    assert modules <= {"__future__", "typing", "numpy", "torch", "jetace.errors"}


def test_taggers_use_no_metrics_and_no_private_names_of_other_taggers():
    for path in sorted((PACKAGE / "taggers").glob("*.py")):
        for module, names in _imports(path):
            assert module.split(".")[:2] not in UPPER, (path.name, module)
            if module.startswith("jetace.taggers."):
                assert not [n for n in names if n.startswith("_")], (path.name, module, names)


def test_split_indices():
    tr, va = numerics.split_indices(100, 0.25, seed=3)
    assert len(va) == 25 and len(tr) == 75
    np.testing.assert_array_equal(np.sort(np.r_[tr, va]), np.arange(100))
    assert (np.diff(tr) > 0).all() and (np.diff(va) > 0).all()
    again = numerics.split_indices(100, 0.25, seed=3)
    np.testing.assert_array_equal(va, again[1])
    assert len(numerics.split_indices(10, 0.0, 0)[1]) == 0
    assert len(numerics.split_indices(10, 0.0, 0, min_val=1)[1]) == 1
    with pytest.raises(InputError, match="validation fraction"):
        numerics.split_indices(10, 1.0, 0)
    assert jetace.training.split_indices is numerics.split_indices  # kept importable


def test_permutation_split_continues_the_generator():
    g = torch.Generator().manual_seed(5)
    tr, va = numerics.permutation_split(50, numerics.holdout_size(50, 0.2), g)
    assert len(va) == 10 and len(tr) == 40
    assert sorted(torch.cat([tr, va]).tolist()) == list(range(50))
    ref = torch.Generator().manual_seed(5)
    perm = torch.randperm(50, generator=ref)
    assert torch.equal(va, perm[:10]) and torch.equal(tr, perm[10:])
    assert torch.equal(torch.randperm(7, generator=g), torch.randperm(7, generator=ref))
    assert numerics.holdout_size(3, 0.01) == 1


def test_conversions():
    t = torch.arange(6.0).reshape(2, 3)
    assert isinstance(numerics.to_numpy(t), np.ndarray)
    assert numerics.to_numpy([1, 2]).tolist() == [1, 2]
    a = np.arange(6.0).reshape(3, 2).T  # not contiguous
    a.flags.writeable = False
    out = numerics.from_numpy(a)
    assert out.is_contiguous() and torch.equal(out, torch.as_tensor(a.copy()))
    assert numerics.like_input(t, t) is t
    assert isinstance(numerics.like_input(t, np.zeros(2)), np.ndarray)


def test_shrunk_covariance():
    rng = np.random.default_rng(0)
    X = torch.as_tensor(rng.normal(size=(200, 4)) * [1.0, 2.0, 3.0, 0.5])
    Xc = X - X.mean(0)
    cov = Xc.T @ Xc / 200
    torch.testing.assert_close(numerics.shrunk_covariance(Xc, 0.0), cov)
    full = numerics.shrunk_covariance(Xc, 1.0)
    torch.testing.assert_close(full, torch.eye(4, dtype=full.dtype) * torch.trace(cov) / 4)
    a = numerics.ledoit_wolf_shrinkage(Xc)
    assert 0.0 <= a <= 1.0


def test_fit_logistic_is_the_linear_taggers_fit():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 5))
    y = (X[:, 0] - X[:, 2] + rng.normal(size=400) > 0).astype(np.int64)
    tagger = LinearTagger(C=2.0).fit(X, y)
    Z = tagger.scaler_(torch.as_tensor(X))
    w, n_iter = numerics.fit_logistic(Z, torch.as_tensor(y), 2, 2.0)
    torch.testing.assert_close(w[:, :-1], tagger.coef_)
    torch.testing.assert_close(w[:, -1], tagger.intercept_)
    assert n_iter == tagger.n_iter_


def test_with_coefficients_leaves_the_tagger_unchanged():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 4))
    y = (X[:, 1] > 0).astype(int)
    tagger = LinearTagger().fit(X, y)
    before = tagger.decision_function(X)
    coef = torch.zeros_like(tagger.coef_)
    coef[0, 0] = 1.0
    other = tagger.with_coefficients(coef, torch.tensor([0.5], dtype=coef.dtype))
    np.testing.assert_array_equal(tagger.decision_function(X), before)
    z = tagger.scaler_(torch.as_tensor(X))[:, 0].numpy()
    # weights (1, 0, 0, 0): the affine map adds exact zeros to z, then 0.5
    np.testing.assert_allclose(other.decision_function(X), z + 0.5, **EXACT)
    assert other.scaler_ is not tagger.scaler_
    with pytest.raises(InputError, match="do not fit"):
        tagger.with_coefficients(coef[:, :2], tagger.intercept_)
