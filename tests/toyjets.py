"""Small synthetic jets and ROOT files for the tests (no generator, no ../shared).

Jets are sprays of massless (or slightly massive) constituents around a random axis,
with one to three hard prongs so that 'signal-like' and 'background-like' sets differ.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import uproot

__all__ = ["toy_jet", "toy_jets", "stored_demo_jets", "write_jetclass", "write_branches"]


def toy_jet(rng: np.random.Generator, n: int, n_prongs: int = 1, pt: float = 600.0,
            eta: float | None = None, phi: float | None = None, mass: float = 0.0) -> np.ndarray:
    """One jet: (n, 4) array of (E, px, py, pz) in GeV, constituents sorted by falling pT."""
    eta = rng.uniform(-2, 2) if eta is None else eta
    phi = rng.uniform(-np.pi, np.pi) if phi is None else phi
    prong_deta = rng.normal(0, 0.25, n_prongs) * (n_prongs > 1)
    prong_dphi = rng.normal(0, 0.25, n_prongs) * (n_prongs > 1)
    which = rng.integers(0, n_prongs, n)
    frac = rng.dirichlet(np.full(n, 0.3))
    c_pt = pt * frac
    spread = 0.02 + 0.15 * rng.random(n) * (frac < np.median(frac))
    c_eta = eta + prong_deta[which] + rng.normal(0, 1, n) * spread
    c_phi = phi + prong_dphi[which] + rng.normal(0, 1, n) * spread
    px, py, pz = c_pt * np.cos(c_phi), c_pt * np.sin(c_phi), c_pt * np.sinh(c_eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
    out = np.stack([e, px, py, pz], axis=1)
    return out[np.argsort(-c_pt)]


def toy_jets(n_jets: int, seed: int = 0, n_prongs: int = 1, min_particles: int = 5,
             max_particles: int = 60, **kw) -> list[np.ndarray]:
    """``n_jets`` toy jets with between min_particles and max_particles constituents."""
    rng = np.random.default_rng(seed)
    return [toy_jet(rng, int(rng.integers(min_particles, max_particles + 1)), n_prongs, **kw)
            for _ in range(n_jets)]


def write_jetclass(path: str | Path, jets: list[np.ndarray], labels: dict[str, bool] | None = None,
                   tree: str = "tree", rntuple: bool = False) -> Path:
    """Write jets in the JetClass branch layout (part_*, jet_*, label_*) to ``path``.

    ``labels`` maps label branch names to the value every jet gets, e.g. {"label_QCD": True}.
    """
    counts = np.array([len(j) for j in jets], dtype=np.int64)
    flat = np.concatenate(jets).astype(np.float32) if len(jets) else np.zeros((0, 4), np.float32)
    part = {name: ak.unflatten(flat[:, i], counts) for i, name in
            enumerate(["energy", "px", "py", "pz"])}
    tot = np.array([j.sum(axis=0) for j in jets]).reshape(-1, 4)
    pt = np.hypot(tot[:, 1], tot[:, 2])
    data = {
        "part": ak.zip(part),
        "jet_pt": pt.astype(np.float32),
        "jet_eta": np.arcsinh(tot[:, 3] / np.maximum(pt, 1e-12)).astype(np.float32),
        "jet_phi": np.arctan2(tot[:, 2], tot[:, 1]).astype(np.float32),
        "jet_energy": tot[:, 0].astype(np.float32),
        "jet_nparticles": counts.astype(np.int32),
    }
    for name, value in (labels or {"label_QCD": True}).items():
        data[name] = np.full(len(jets), value, dtype=bool)
    path = Path(path)
    with uproot.recreate(path) as f:
        if rntuple:
            f.mkrntuple(tree, {**{f"part_{k}": v for k, v in part.items()},
                               **{k: v for k, v in data.items() if k != "part"}})
        else:
            f.mktree(tree, {k: v.type if k == "part" else v.dtype for k, v in data.items()},
                     field_name=lambda outer, inner: f"{outer}_{inner}",
                     counter_name=lambda counted: "n" + counted)
            f[tree].extend(data)
    return path


def write_branches(path: str | Path, branches: dict, tree: str = "tree",
                   rntuple: bool = False) -> Path:
    """Write arbitrary branches (name -> numpy or awkward array) as a TTree or RNTuple.

    In a TTree every jagged branch gets its own counter ``n<name>``, so jagged branches
    may disagree in length (for the bad-input tests).
    """
    path = Path(path)
    with uproot.recreate(path) as f:
        if rntuple:
            f.mkrntuple(tree, branches)
        else:
            f.mktree(tree, {k: v.type if isinstance(v, ak.Array) else v.dtype
                            for k, v in branches.items()})
            f[tree].extend(branches)
    return path


def stored_demo_jets(rng: np.random.Generator, per_class: int):
    """``per_class`` random top and QCD jets of the shipped demo sample as stored (float32
    momenta, massless constituents slightly spacelike), padded to 128 in float64:
    (p4, mask) torch tensors. Asserts that some constituents are spacelike."""
    import torch

    import jetace
    from jetace.generate import demo_files

    jets = jetace.read_jets(list(demo_files()))
    pick = np.r_[rng.choice(4000, per_class, replace=False),
                 4000 + rng.choice(4000, per_class, replace=False)]
    p4, mask = jetace.to_padded(jets[pick], max_particles=128, dtype=torch.float64)
    m2 = p4[..., 0] ** 2 - (p4[..., 1:] ** 2).sum(-1)
    assert bool((m2[mask] < 0).any()), "the sample should hold spacelike constituents"
    return p4, mask
