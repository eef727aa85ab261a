"""The observables physicists tag with today, computed on the same jets as jetace.

* :class:`EFPFeatures`: energyflow's Energy Flow Polynomials (``EFPSet``, hadronic
  measure, normalised, angular exponent ``beta``), all graphs with ``d <= dmax``;
  ``forward(p4, mask)`` has the same interface as jetace's feature modules, so feature
  throughput is measured by the same harness on the same jets.
* :func:`nsubjettiness`: tau_1, tau_2, tau_3 (beta = 1, R0 = 0.8, normalised by the
  scalar pT sum) with exclusive-kT axes from FastJet (Python ``fastjet``: the kT
  algorithm run to exactly N exclusive jets, as ``ExclusiveJetAxes`` in fjcontrib's
  Nsubjettiness; the contrib itself is not in the ``fastjet`` wheel, so the distances
  are computed here in numpy).
* :func:`jet_mass`: invariant mass of the constituent sum, GeV.
* :class:`HistRatio`: a one-dimensional classifier: log ratio of the binned signal and
  background densities of one variable (the best "cut" any single variable allows).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import awkward as ak
import numpy as np
import torch
from tqdm import tqdm

__all__ = ["EFPFeatures", "nsubjettiness", "jet_mass", "HistRatio", "cached"]

CACHE = Path(__file__).resolve().parent.parent / ".jetace-cache" / "bench"


def cached(key: str, compute, enabled: bool = True) -> np.ndarray:
    """``compute()`` stored as ``.jetace-cache/bench/<hash of key>.npy`` and reused."""
    if not enabled:
        return compute()
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / (hashlib.sha1(key.encode()).hexdigest()[:16] + ".npy")
    if path.is_file():
        return np.load(path)
    out = compute()
    np.save(path, out)
    return out


class EFPFeatures(torch.nn.Module):
    """Energy Flow Polynomials with ``d <= dmax`` from energyflow, one jet at a time.

    ``forward(p4, mask)``: p4 (B, P, 4) as (E, px, py, pz) in GeV, mask (B, P) bool;
    returns (B, num_features) float64 (CPU, numpy inside; the constant d = 0 graph is
    dropped). ``max_complexity`` keeps graphs whose variable-elimination cost is at most
    O(M^c) in the multiplicity M: 3 (default) keeps every graph with d <= 5 and all but one
    of d <= 6 (312 EFPs instead of 313), whose O(M^4) cost would dominate everything.
    ``compute(p4, mask, n_jobs)`` is the same with energyflow's own
    multiprocessing ``batch_compute`` for bulk feature tables.
    """

    def __init__(self, dmax: int = 5, beta: float = 0.5, max_complexity: int | None = 3):
        super().__init__()
        import energyflow as ef

        self.dmax, self.beta = int(dmax), float(beta)
        select = [("d<=", self.dmax)] + ([("c<=", max_complexity)] if max_complexity else [])
        self.efpset = ef.EFPSet(*select, measure="hadr", beta=self.beta,
                                normed=True, coords="epxpypz", check_input=False)
        self.degrees = np.asarray(self.efpset.specs)[:, 2]  # spec columns n, e, d, ...
        self.keep = np.nonzero(self.degrees > 0)[0]
        self.num_features = len(self.keep)

    @staticmethod
    def _events(p4: torch.Tensor, mask: torch.Tensor) -> list[np.ndarray]:
        x = p4.detach().cpu().to(torch.float64).numpy()
        m = mask.detach().cpu().numpy()
        return [x[i][m[i]] for i in range(x.shape[0])]

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        rows = [self.efpset.compute(ev) for ev in self._events(p4, mask)]
        return torch.from_numpy(np.asarray(rows)[:, self.keep])

    def columns(self, dmax: int) -> np.ndarray:
        """Indices of this module's output columns that belong to graphs with d <= dmax
        (the EFPs of a smaller ``EFPFeatures(dmax)``, in the same order)."""
        return np.nonzero(self.degrees[self.keep] <= dmax)[0]

    def compute(self, p4: torch.Tensor, mask: torch.Tensor, n_jobs: int = 2,
                desc: str = "EFP") -> np.ndarray:
        events = self._events(p4, mask)
        out, step = [], 2000
        for i in tqdm(range(0, len(events), step), desc=f"{desc} d<={self.dmax}", unit="chunk"):
            out.append(np.asarray(self.efpset.batch_compute(events[i:i + step], n_jobs=n_jobs)))
        return np.concatenate(out)[:, self.keep]


def _rap_phi(px, py, pz, e):
    pt = np.hypot(px, py)
    rap = 0.5 * np.log(np.maximum(e + pz, 1e-12) / np.maximum(e - pz, 1e-12))
    return pt, rap, np.arctan2(py, px)


def nsubjettiness(jets: ak.Array, n_max: int = 3, r0: float = 0.8) -> np.ndarray:
    """tau_1..tau_{n_max} per jet, shape (n_jets, n_max).

    tau_N = sum_i pT_i min_k dR(i, a_k) / (R0 sum_i pT_i), with dR in (rapidity, phi)
    and axes a_k the N exclusive kT jets of the constituents (all of them). Jets with
    fewer than N constituents get tau_N = 0.
    """
    import fastjet
    import vector

    vector.register_awkward()
    c = jets["constituents"] if "constituents" in ak.fields(jets) else jets
    arr = ak.zip({"px": c.px, "py": c.py, "pz": c.pz, "E": c.energy}, with_name="Momentum4D")
    counts = ak.to_numpy(ak.num(arr, axis=1))
    px, py, pz, e = (ak.to_numpy(ak.flatten(c[f])).astype(np.float64)
                     for f in ("px", "py", "pz", "energy"))
    pt, rap, phi = _rap_phi(px, py, pz, e)
    jet_of = np.repeat(np.arange(len(counts)), counts)
    pt_sum = np.bincount(jet_of, weights=pt, minlength=len(counts))
    cs = fastjet.ClusterSequence(arr, fastjet.JetDefinition(fastjet.kt_algorithm, 10.0))
    taus = np.zeros((len(counts), n_max))
    for n in range(1, n_max + 1):
        ok = counts >= n
        axes = cs.exclusive_jets(n_jets=n) if ok.all() else None
        if axes is None:  # clustering to N jets needs N constituents: do it where possible
            kt = fastjet.JetDefinition(fastjet.kt_algorithm, 10.0)
            axes = fastjet.ClusterSequence(arr[ok], kt).exclusive_jets(n_jets=n)
        ax_px, ax_py, ax_pz, ax_e = (ak.to_numpy(axes[f]).astype(np.float64)
                                     for f in ("px", "py", "pz", "E"))
        _, ax_rap, ax_phi = _rap_phi(ax_px, ax_py, ax_pz, ax_e)  # (n_ok, n)
        full_rap = np.zeros((len(counts), n))
        full_phi = np.zeros((len(counts), n))
        full_rap[ok], full_phi[ok] = ax_rap, ax_phi
        dphi = np.abs(phi[:, None] - full_phi[jet_of]) % (2 * np.pi)
        dphi = np.minimum(dphi, 2 * np.pi - dphi)
        dr = np.sqrt((rap[:, None] - full_rap[jet_of]) ** 2 + dphi**2).min(axis=1)
        tau = np.bincount(jet_of, weights=pt * dr, minlength=len(counts)) / (r0 * pt_sum)
        taus[:, n - 1] = np.where(ok, tau, 0.0)
    return taus


def jet_mass(jets: ak.Array) -> np.ndarray:
    """Invariant mass of the summed constituents, GeV, shape (n_jets,)."""
    c = jets["constituents"] if "constituents" in ak.fields(jets) else jets
    tot = [ak.to_numpy(ak.sum(c[f], axis=1)).astype(np.float64)
           for f in ("energy", "px", "py", "pz")]
    m2 = tot[0] ** 2 - tot[1] ** 2 - tot[2] ** 2 - tot[3] ** 2
    return np.sqrt(np.maximum(m2, 0.0))


class HistRatio:
    """Binned likelihood ratio of one variable: ``fit(x, y)`` (y = 1 signal), then
    ``decision_function(x)`` = log(p_S(x) / p_B(x)) with quantile bins and add-one
    smoothing; any monotonic cut on it is the best cut on x alone. Parameters: the
    2 * n_bins bin contents (stored as ``log_ratio_`` and ``edges_``)."""

    def __init__(self, n_bins: int = 50):
        self.n_bins = n_bins

    def fit(self, x: np.ndarray, y: np.ndarray) -> HistRatio:
        self.edges_ = np.unique(np.quantile(x, np.linspace(0, 1, self.n_bins + 1)))
        idx = np.clip(np.searchsorted(self.edges_, x, side="right") - 1, 0, len(self.edges_) - 2)
        nb = len(self.edges_) - 1
        s = np.bincount(idx[y == 1], minlength=nb) + 1.0
        b = np.bincount(idx[y == 0], minlength=nb) + 1.0
        self.log_ratio_ = np.log(s / s.sum()) - np.log(b / b.sum())
        self.num_parameters_ = 2 * nb
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        idx = np.clip(np.searchsorted(self.edges_, x, side="right") - 1, 0, len(self.edges_) - 2)
        return self.log_ratio_[idx]
