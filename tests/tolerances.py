"""The one table of numerical tolerances of the test suite; every test imports its
tolerances from here and states none of its own.

The first group is the library's reproducibility contract (jetace.reproducibility),
imported rather than restated, so a test checks exactly what the README promises. The
rest are properties of the tests themselves: how close a slow reference, a float32 run
or a transformed jet comes to the fast float64 computation.
"""

from __future__ import annotations

import torch

from jetace.reproducibility import FEATURE_RTOL, SCALE_FLOOR, SCORE_ATOL, deviation

__all__ = ["FEATURE_RTOL", "SCORE_ATOL", "SCALE_FLOOR", "deviation", "EXACT",
           "assert_reproduced"]

#: bit identity: only where it holds by construction (same process, same call; copies,
#: serialisation round trips, index bookkeeping)
EXACT = {"rtol": 0.0, "atol": 0.0}


def assert_reproduced(got: torch.Tensor, want: torch.Tensor, what: str = "") -> float:
    """Assert the contract: ``got`` equals ``want`` to FEATURE_RTOL of their dtype."""
    got, want = torch.as_tensor(got), torch.as_tensor(want)
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    dtype = want.dtype if want.dtype in FEATURE_RTOL else torch.float64
    err = deviation(want, got)
    assert err <= FEATURE_RTOL[dtype], (
        f"{what}: deviation {err:.3g} exceeds the contract's {FEATURE_RTOL[dtype]:.3g}")
    return err


# ---------------------------------------------------------------- issue 20: taggers and metrics
#: a weight of 2 against the jet given twice, for the iterative L-BFGS fit of a
#: LinearTagger (converged to tol=1e-8): the same minimiser up to the solver's stopping
#: point (scikit-learn's own check asks 1e-7, which only exact solvers meet)
WEIGHT_EQUIVALENCE = {"rtol": 1e-4, "atol": 1e-6}
#: jetace's weighted metrics against scikit-learn's weighted roc_auc_score / roc_curve
#: (both sum the same float64 weights, in another order)
WEIGHTED_METRIC = {"rtol": 1e-12, "atol": 1e-12}
#: ACETransformer output against the torch feature module on the same padded jets
#: (same float32 computation, same device)
TRANSFORMER_MATCH = EXACT

__all__ += ["WEIGHT_EQUIVALENCE", "WEIGHTED_METRIC", "TRANSFORMER_MATCH"]
