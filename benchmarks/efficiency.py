"""The economical frontier: AUC, R30 and R50 against trainable parameters and FLOPs per jet.

Training jets: the development samples (``../shared/data/{top,qcd}_train.root``, 25k per
class). Test jets: generated independently with the same settings (``jetace generate``,
seeds 9001 / 9002 that no shared file uses), so no test jet was ever seen in model
selection. Every choice of model is made on a seeded validation split of the training
jets (``select``); the chosen models are then refitted on all training jets and scored
once on the test jets (``final``). Uncertainties: a seeded bootstrap of the test jets
(resampling jets with replacement, per class sizes kept) of AUC, R30 = 1/eps_B at
eps_S = 0.3 and R50, and a paired bootstrap (the same resamples for both models) of
AUC differences to a reference model. Costs: :func:`jetace.cost.model_cost` (every
arithmetic aten operation counted, features included) at 60 constituents; the peers are
counted the same way (benchmarks/cost.py). ParticleNet-Lite (weaver-core) is trained on
the same training jets for a stated wall-time budget on one CPU thread (``pnlite``).

Steps (each writes under ``--work``, outside the repository, and results under
benchmarks/results)::

    python benchmarks/efficiency.py generate   # 10k top + 10k QCD test jets (~5 min / core)
    python benchmarks/efficiency.py check      # test jets vs training jets: pT, eta, mass, n
    python benchmarks/efficiency.py features   # feature matrices of every feature set
    python benchmarks/efficiency.py select     # validation-split study (efficiency_selection.json)
    python benchmarks/efficiency.py pnlite --budget-minutes 30
    python benchmarks/efficiency.py final      # refit on all training jets, score test jets
    python benchmarks/efficiency.py report     # efficiency.json, efficiency_pareto.png, table

Run with ``OMP_NUM_THREADS=1``: every step uses one torch thread.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import REPO, RESULTS, default_files, machine, read_json, write_json
from tqdm import tqdm

import jetace
from jetace.metrics import binary_metrics

WORK = REPO.parent / "efficiency_work"
TEST_SEEDS = {"top": 9001, "qcd": 9002}
MULTIPLICITY = 60
MAX_PARTICLES = 128

#: feature sets: name -> (family, keyword arguments)
FEATURES: dict[str, tuple[str, dict[str, Any]]] = {
    "bip(3,6)m": ("bip", {"order": 3, "degree": 6, "mirror": True}),
    "bip(4,7)m": ("bip", {"order": 4, "degree": 7, "mirror": True}),
    "bip(4,8)m": ("bip", {"order": 4, "degree": 8, "mirror": True}),
    "lorentz": ("lorentz", {}),
    "bip(3,6)m species r=3": ("bip", {"order": 3, "degree": 6, "mirror": True,
                                      "species": "default", "rank": 3}),
    "bip(4,7)m species r=2": ("bip", {"order": 4, "degree": 7, "mirror": True,
                                      "species": "default", "rank": 2}),
}


def feature_module(name: str) -> torch.nn.Module:
    family, kw = FEATURES[name]
    return jetace.BIPFeatures(**kw) if family == "bip" else jetace.LorentzACEFeatures(**kw)


def test_files(work: Path) -> tuple[list[str], list[str]]:
    return [str(work / "top_test.root")], [str(work / "qcd_test.root")]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


# ---------------------------------------------------------------------------- generate


def cmd_generate(args) -> None:
    args.work.mkdir(parents=True, exist_ok=True)
    for process, seed in TEST_SEEDS.items():
        out = args.work / f"{process}_test.root"
        if out.exists():
            print(f"{out} exists, kept")
            continue
        subprocess.run([sys.executable, "-m", "jetace", "generate", process, "-n",
                        str(args.n_jets), "-o", str(out), "--seed", str(seed)], check=True)


# ------------------------------------------------------------------------------- check


def _jet_columns(path: str) -> dict[str, np.ndarray]:
    import uproot

    with uproot.open(path) as f:
        a = f["tree"].arrays(["jet_pt", "jet_eta", "jet_mass", "jet_nparticles"],
                             library="np")
    return {k: v.astype(np.float64) for k, v in a.items()}


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov distance."""
    grid = np.sort(np.concatenate([a, b]))
    fa = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    fb = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def cmd_check(args) -> None:
    """The test jets against the training jets: ranges, quantiles and KS distances."""
    sig, bkg = default_files()
    tsig, tbkg = test_files(args.work)
    out = {}
    for process, train, test in (("top", sig[0], tsig[0]), ("qcd", bkg[0], tbkg[0])):
        a, b = _jet_columns(train), _jet_columns(test)
        rows = {}
        for key in a:
            # KS of n independent samples: ~1.36 sqrt(1/n1 + 1/n2) at 95%
            crit = 1.36 * np.sqrt(1 / len(a[key]) + 1 / len(b[key]))
            rows[key] = {
                "train_quantiles_5_50_95": np.quantile(a[key], [0.05, 0.5, 0.95]).tolist(),
                "test_quantiles_5_50_95": np.quantile(b[key], [0.05, 0.5, 0.95]).tolist(),
                "train_range": [float(a[key].min()), float(a[key].max())],
                "test_range": [float(b[key].min()), float(b[key].max())],
                "ks_distance": _ks(a[key], b[key]), "ks_95_critical": float(crit)}
        rows["fraction_mass_150_200"] = {
            "train": float(np.mean((a["jet_mass"] > 150) & (a["jet_mass"] < 200))),
            "test": float(np.mean((b["jet_mass"] > 150) & (b["jet_mass"] < 200)))}
        out[process] = {"train_file": train, "test_file": test, "n_train": len(a["jet_pt"]),
                        "n_test": len(b["jet_pt"]), "columns": rows}
        for key, r in rows.items():
            print(process, key, {k: (np.round(v, 3) if not isinstance(v, dict) else v)
                                 for k, v in r.items()})
    (args.work / "check.json").write_text(json.dumps(out, indent=1))


# ---------------------------------------------------------------------------- data


def _load(files_sig: list[str], files_bkg: list[str]):
    """All jets of both classes (signal first), labels, with a fixed seeded shuffle."""
    import awkward as ak

    parts, labels = [], []
    for label, files in ((1, files_sig), (0, files_bkg)):
        jets = jetace.read_jets(files)
        parts.append(jets)
        labels.append(np.full(len(jets), label, dtype=np.int64))
    jets, y = ak.concatenate(parts), np.concatenate(labels)
    order = np.random.default_rng(0).permutation(len(y))
    return jets[order], y[order]


def _features(module: torch.nn.Module, jets, batch: int = 2048) -> torch.Tensor:
    species = getattr(module, "species", ())
    out = []
    for s in range(0, len(jets), batch):
        p4, mask = jetace.to_padded(jets[s:s + batch], max_particles=MAX_PARTICLES,
                                    species=species)
        with torch.no_grad():
            out.append(module(p4, mask))
    return torch.cat(out)


def cmd_features(args) -> None:
    """Feature matrices (float32) of the training and the test jets, per feature set."""
    sig, bkg = default_files()
    sets = {"train": _load(sig, bkg), "test": _load(*test_files(args.work))}
    cache = args.work / "features"
    cache.mkdir(parents=True, exist_ok=True)
    times = {}
    for name in tqdm([n for n in FEATURES if not args.only or n in args.only],
                     desc="feature sets"):
        module = feature_module(name)
        t0 = time.perf_counter()
        for part, (jets, y) in sets.items():
            x = _features(module, jets)
            torch.save({"x": x, "y": torch.as_tensor(y), "spec": module.spec},
                       cache / f"{_slug(name)}_{part}.pt")
        times[name] = time.perf_counter() - t0
        tqdm.write(f"{name}: {module.num_features} features, {times[name]:.1f} s")


def load_features(work: Path, name: str, part: str) -> tuple[torch.Tensor, np.ndarray]:
    d = torch.load(work / "features" / f"{_slug(name)}_{part}.pt")
    return d["x"], d["y"].numpy()


def cmd_pnlite(args) -> None:
    """ParticleNet-Lite on all training jets for ``--budget-minutes``, scored on the
    test jets; writes its scores and result row."""
    from common import padded
    from particlenet import MAX_PARTICLES as PN_PARTICLES
    from particlenet import train_and_evaluate

    torch.set_num_threads(1)
    sig, bkg = default_files()
    tr, y_tr = _load(sig, bkg)
    te, y_te = _load(*test_files(args.work))
    p4_tr, m_tr = padded(tr, PN_PARTICLES)
    p4_te, m_te = padded(te, PN_PARTICLES)
    row = train_and_evaluate(p4_tr, m_tr, y_tr, p4_te, m_te, y_te, "pnlite",
                             args.budget_minutes, seed=0, keep_scores=True)
    scores = np.asarray(row.pop("scores"))
    (args.work / "scores").mkdir(parents=True, exist_ok=True)
    np.save(args.work / "scores" / "pnlite.npy", scores)
    np.save(args.work / "scores" / "labels.npy", y_te)
    row.pop("roc", None)
    (args.work / "pnlite.json").write_text(json.dumps(row, indent=1, default=float))
    print(f"ParticleNet-Lite: AUC {row['auc']:.5f} R30 {row['rejection_at_0.3']:.0f} "
          f"epochs {row['training']['epochs_completed']}")


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["generate", "check", "features", "select", "pnlite",
                                     "final", "report"])
    ap.add_argument("--work", type=Path, default=WORK,
                    help="folder of the test jets, feature matrices and scores")
    ap.add_argument("--n-jets", type=int, default=10000, help="generate: test jets per class")
    ap.add_argument("--budget-minutes", type=float, default=30.0, help="pnlite: wall time")
    ap.add_argument("--only", nargs="*", help="features/select/final: names to run")
    ap.add_argument("--bootstrap", type=int, default=200, help="report: resamples")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    {"generate": cmd_generate, "check": cmd_check, "features": cmd_features, "pnlite": cmd_pnlite}[args.step](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
