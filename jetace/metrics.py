"""Tagging metrics as the top-tagging community reports them.

All functions take a score per jet (larger = more signal-like) and a binary label per
jet (1 or True = signal), as numpy arrays or torch tensors of shape (n,), and optionally
a weight per jet (``sample_weight``, shape (n,): generator weights, pT reweighting).

Weights. Every efficiency is a ratio of weight sums: eps_S(cut) = (weight of signal jets
passing) / (weight of all signal jets), likewise eps_B; the accuracy is the weight of the
rightly classified jets over the total weight; unit weights give the unweighted numbers.
Negative weights (NLO generators) are accepted as they are, signed: each class's total
weight must be positive, but the cumulative sums, and so the ROC curve, may then step
backwards locally. The AUC stays the weighted probability that a signal jet outscores a
background jet (ties one half), ``sum_s sum_b w_s w_b [s_s > s_b] / (W_S W_B)`` (the
trapezoid rule on the signed curve computes exactly this sum; with non-negative weights
it equals ``sklearn.metrics.roc_auc_score(..., sample_weight=w)``, which refuses curves
that step backwards); the rejection at a signal efficiency is taken where the curve
first reaches that efficiency.

* :func:`roc_curve`: signal efficiency eps_S and background efficiency eps_B per cut.
* :func:`roc_auc`: area under the ROC curve (ties count one half), equal to
  ``sklearn.metrics.roc_auc_score``.
* :func:`rejection_at`: background rejection 1/eps_B at a fixed signal efficiency,
  linearly interpolated on the ROC curve; ``inf`` when no background survives.
* :func:`accuracy`, :func:`binary_metrics`, :func:`plot_roc`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jetace.errors import InputError
from jetace.numerics import to_numpy

__all__ = ["roc_curve", "roc_auc", "rejection_at", "accuracy", "binary_metrics", "plot_roc"]


def _as_numpy(x: Any, name: str) -> np.ndarray:
    arr = to_numpy(x)
    if arr.ndim != 1:
        raise InputError(f"{name} must be one-dimensional (one value per jet), "
                         f"got shape {arr.shape}")
    return arr


def _weights(sample_weight: Any, n: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    w = _as_numpy(sample_weight, "sample_weight").astype(np.float64)
    if len(w) != n:
        raise InputError(f"{n} scores but {len(w)} weights")
    if not np.isfinite(w).all():
        raise InputError(f"{int((~np.isfinite(w)).sum())} weights are NaN or infinite")
    return w


def _check(scores: Any, labels: Any, sample_weight: Any = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    s = _as_numpy(scores, "scores").astype(np.float64)
    y = _as_numpy(labels, "labels")
    if len(s) != len(y):
        raise InputError(f"{len(s)} scores but {len(y)} labels")
    if np.isnan(s).any():
        raise InputError(f"{int(np.isnan(s).sum())} scores are NaN")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise InputError("metrics need both signal and background jets "
                         f"(got {int(y.sum())} signal, {int((~y).sum())} background)")
    w = _weights(sample_weight, len(s))
    if w is not None and not (w[y].sum() > 0 and w[~y].sum() > 0):
        raise InputError("metrics need a positive total weight of signal and of background "
                         f"jets (got {w[y].sum():.6g} and {w[~y].sum():.6g})")
    return s, y, w


def roc_curve(scores: Any, labels: Any, sample_weight: Any = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve: efficiencies of the cut ``score >= threshold`` for every distinct score.

    Returns ``(eff_s, eff_b, thresholds)``, each of shape (n_cuts + 1,), starting at
    (0, 0) with threshold +inf and ending at (1, 1); eff_s and eff_b never decrease
    (unless some weights are negative: module docstring).
    """
    s, y, w = _check(scores, labels, sample_weight)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    w = np.ones(len(s)) if w is None else w[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    tp = np.cumsum(np.where(y, w, 0.0))[last]
    fp = np.cumsum(np.where(y, 0.0, w))[last]
    eff_s = np.r_[0.0, tp / tp[-1]]
    eff_b = np.r_[0.0, fp / fp[-1]]
    return eff_s, eff_b, np.r_[np.inf, s[last]]


def roc_auc(scores: Any, labels: Any, sample_weight: Any = None) -> float:
    """Area under the ROC curve: (weighted) probability that a signal jet outscores a
    background jet, ties counting one half."""
    eff_s, eff_b, _ = roc_curve(scores, labels, sample_weight)
    trapezoid = getattr(np, "trapezoid", None) or np.trapz
    return float(trapezoid(eff_s, eff_b))


def rejection_at(scores: Any, labels: Any, eff_s: float = 0.3,
                 sample_weight: Any = None) -> float:
    """Background rejection 1/eps_B at signal efficiency ``eff_s`` (0 < eff_s <= 1).

    eps_B is interpolated linearly between the ROC points around the first point that
    reaches ``eff_s``; the result is ``inf`` when eps_B is 0 there.
    """
    if not 0.0 < eff_s <= 1.0:
        raise InputError(f"signal efficiency must lie in (0, 1], got {eff_s}")
    es, eb, _ = roc_curve(scores, labels, sample_weight)
    # es is non-decreasing with plateaus; take the smallest eps_B reaching eff_s on the
    # right of the target (the standard "left-continuous" interpolation); with negative
    # weights es may step back, and the first point reaching eff_s is taken
    i = int(np.argmax(es >= eff_s))
    if es[i] == eff_s:
        b = eb[i]
    else:
        w = (eff_s - es[i - 1]) / (es[i] - es[i - 1])
        b = eb[i - 1] + w * (eb[i] - eb[i - 1])
    return float("inf") if b <= 0 else float(1.0 / b)


def accuracy(scores: Any, labels: Any, threshold: float = 0.0,
             sample_weight: Any = None) -> float:
    """(Weighted) fraction of jets classified right by the cut ``score > threshold``
    (signal above)."""
    s = _as_numpy(scores, "scores")
    y = _as_numpy(labels, "labels").astype(bool)
    if len(s) != len(y) or len(s) == 0:
        raise InputError("accuracy needs equally many scores and labels, "
                         f"got {len(s)} and {len(y)}")
    right = (s > threshold) == y
    w = _weights(sample_weight, len(s))
    if w is None:
        return float(np.mean(right))
    if not w.sum() > 0:
        raise InputError(f"accuracy needs a positive total weight, got {w.sum():.6g}")
    return float(w[right].sum() / w.sum())


def binary_metrics(scores: Any, labels: Any, threshold: float = 0.0,
                   sample_weight: Any = None) -> dict[str, float | int]:
    """The community's summary of a binary tagger.

    ``threshold`` is the cut for the accuracy, on the scale of ``scores`` (0 for the
    logit that supervised jetace taggers return, i.e. probability 0.5).
    Keys: auc, accuracy, rejection_at_0.3, rejection_at_0.5, n_signal, n_background;
    with ``sample_weight`` (n,) the metrics are weighted (module docstring) and
    ``sum_weight_signal``, ``sum_weight_background`` are added (the jet counts stay
    counts).
    """
    s, y, w = _check(scores, labels, sample_weight)
    out: dict[str, float | int] = {
        "auc": roc_auc(s, y, w),
        "accuracy": accuracy(s, y, threshold, w),
        "rejection_at_0.3": rejection_at(s, y, 0.3, w),
        "rejection_at_0.5": rejection_at(s, y, 0.5, w),
        "n_signal": int(y.sum()),
        "n_background": int((~y).sum()),
    }
    if w is not None:
        out["sum_weight_signal"] = float(w[y].sum())
        out["sum_weight_background"] = float(w[~y].sum())
    return out


def plot_roc(curves: dict[str, tuple[Any, Any]], path: str | None = None, ax=None):
    """Plot ROC curves as background rejection 1/eps_B (log scale) against eps_S.

    ``curves`` maps a legend label to ``(scores, labels)``. Saves to ``path`` when
    given (format from the suffix, Agg backend) and returns the matplotlib figure.
    """
    import matplotlib

    if ax is None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = ax.figure if ax is not None else plt.figure(figsize=(5, 4))
    ax = ax if ax is not None else fig.add_subplot()
    for name, (scores, labels) in curves.items():
        es, eb, _ = roc_curve(scores, labels)
        keep = (eb > 0) & (es > 0)
        auc = roc_auc(scores, labels)
        ax.plot(es[keep], 1.0 / eb[keep], label=f"{name} (AUC {auc:.4f})")
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel(r"signal efficiency $\varepsilon_S$")
    ax.set_ylabel(r"background rejection $1/\varepsilon_B$")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
