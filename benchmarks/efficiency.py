"""The economical frontier: AUC, R30 and R50 against trainable parameters and FLOPs per jet.

Training jets: the development samples (``../shared/data/{top,qcd}_train.root``, 25k per
class). Test jets: generated independently with the same settings (``jetace generate``:
10k top with seed 9001, 10k + 40k QCD with seeds 9002 and 9003, which no shared file
uses), so no test jet was ever seen in model selection. Every choice of model is made on
a seeded validation split of the training jets (``select``); the chosen models are then
refitted on all training jets and scored once on the test jets (``final``).
Uncertainties: a seeded bootstrap of the test jets (resampling jets with replacement,
per class sizes kept) of AUC, R30 = 1/eps_B at eps_S = 0.3 and R50, and a paired
bootstrap (the same resamples for both models) of AUC differences to a reference model.
Costs: :func:`jetace.cost.model_cost` (every arithmetic aten operation counted, features
included) at 60 constituents; the peers are
counted the same way (benchmarks/cost.py). ParticleNet-Lite (weaver-core) is trained on
the same training jets for a stated wall-time budget on one CPU thread (``pnlite``).

Steps (each writes under ``--work``, outside the repository, and results under
benchmarks/results)::

    python benchmarks/efficiency.py generate   # 10k top + 50k QCD test jets (~17 min / core)
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
from jetace.taggers.mlp import ENSEMBLE

WORK = REPO.parent / "efficiency_work"
#: test file -> (process, seed, jets as a multiple of --n-jets): 10k top and 50k QCD, so
#: that R30 (1/eps_B at eps_S = 0.3, about 1,000) rests on about 50 background jets
TEST_FILES = {"top_test": ("top", 9001, 1), "qcd_test": ("qcd", 9002, 1),
              "qcd_test_extra": ("qcd", 9003, 4)}
TEST_SEEDS = {name: seed for name, (_, seed, _) in TEST_FILES.items()}
MULTIPLICITY = 60
MAX_PARTICLES = 128


def _mirrored(order: int, degree: int, species: Any = None, rank: int | None = None
              ) -> tuple[str, dict[str, Any]]:
    """A mirrored BIP feature set, with species channels at a rank when given."""
    kw: dict[str, Any] = {"order": order, "degree": degree, "mirror": True}
    if species is not None:
        kw.update(species=species, rank=rank)
    return "bip", kw


#: feature sets: name -> (family, keyword arguments)
FEATURES: dict[str, tuple[str, dict[str, Any]]] = {
    "bip(3,6)m": _mirrored(3, 6),
    "bip(4,7)m": _mirrored(4, 7),
    "bip(4,8)m": _mirrored(4, 8),
    "lorentz": ("lorentz", {}),
    "bip(3,6)m species r=3": _mirrored(3, 6, "default", 3),
    "bip(4,7)m species r=2": _mirrored(4, 7, "default", 2),
    "bip(3,6)m species r=2": _mirrored(3, 6, "default", 2),
    "bip(3,6)m species r=4": _mirrored(3, 6, "default", 4),
    "bip(3,6)m species r=5": _mirrored(3, 6, "default", 5),
    "bip(3,6)m charge r=2": _mirrored(3, 6, ["charge"], 2),
    "bip(3,6)m charge,photon r=3": _mirrored(3, 6, ["charge", "photon"], 3),
    "bip(3,6)m charge,hadron,photon r=3": _mirrored(3, 6, ["charge", "charged_hadron",
                                                           "photon"], 3),
    "bip(4,7)m charge,photon r=2": _mirrored(4, 7, ["charge", "photon"], 2),
    "bip(3,6)m lepton r=2": _mirrored(3, 6, ["lepton"], 2),
    "bip(3,6)m neutral r=2": _mirrored(3, 6, ["neutral_hadron"], 2),
    "bip(3,6)m lepton,neutral r=3": _mirrored(3, 6, ["lepton", "neutral_hadron"], 3),
    "bip(3,6)m lepton,charge r=3": _mirrored(3, 6, ["lepton", "charge"], 3),
    "bip(4,7)m lepton r=2": _mirrored(4, 7, ["lepton"], 2),
    "bip(4,6)m lepton r=2": _mirrored(4, 6, ["lepton"], 2),
    "bip(3,7)m lepton r=2": _mirrored(3, 7, ["lepton"], 2),
    "bip(3,8)m lepton r=2": _mirrored(3, 8, ["lepton"], 2),
    "bip(3,7)m lepton,neutral r=3": _mirrored(3, 7, ["lepton", "neutral_hadron"], 3),
    "efp d<=5": ("efp", {"dmax": 5}),
}

SP3 = "bip(3,6)m species r=3"
#: the single-network MLP settings the study varies around (the old ensemble's settings
#: per network: dropout 0.3, weight decay 1e-2, one-cycle cosine over 60 epochs)
ONE = {"n_models": 1, "linear_blend": 0.0}

#: candidates of the validation study: name -> (feature set, tagger, tagger parameters)
CANDIDATES: dict[str, tuple[str, str, dict[str, Any]]] = {
    **{f"linear {f}": (f, "linear", {}) for f in FEATURES},
    "linear efp d<=5 signed_log": ("efp d<=5", "linear", {"scaling": "signed_log"}),
    "lda efp d<=5": ("efp d<=5", "linear", {"method": "lda"}),
    "linear bip(3,6)m species r=3 C=1": (SP3, "linear", {"C": 1.0}),
    "linear bip(3,6)m species r=3 C=100": (SP3, "linear", {"C": 100.0}),
    "linear bip(3,6)m species r=3 signed_log": (SP3, "linear", {"scaling": "signed_log"}),
    "mlp bip(3,6)m h5": ("bip(3,6)m", "mlp", {**ONE, "hidden": (5,)}),
    "mlp bip(4,7)m h4": ("bip(4,7)m", "mlp", {**ONE, "hidden": (4,)}),
    "mlp bip(4,7)m h13": ("bip(4,7)m", "mlp", {**ONE, "hidden": (13,)}),
    "mlp bip(4,7)m budget blend": ("bip(4,7)m", "mlp", {"hidden": None, "n_models": 1,
                                                        "linear_blend": 0.25}),
    "mlp bip(4,7)m budget": ("bip(4,7)m", "mlp", {"hidden": None, **ONE}),
    "mlp bip(4,7)m h12 skip": ("bip(4,7)m", "mlp", {**ONE, "hidden": (12,), "skip": True,
                                                    "linear_start": 10.0}),
    "mlp bip(4,7)m h43": ("bip(4,7)m", "mlp", {**ONE, "hidden": (43,)}),
    "mlp sp3 h4": (SP3, "mlp", {**ONE, "hidden": (4,)}),
    "mlp sp3 h16": (SP3, "mlp", {**ONE, "hidden": (16,)}),
    "mlp sp3 h16 d0.1": (SP3, "mlp", {**ONE, "hidden": (16,), "dropout": 0.1}),
    "mlp sp3 h16 signed_log": (SP3, "mlp", {**ONE, "hidden": (16,), "scaling": "signed_log"}),
    "mlp sp3 budget blend": (SP3, "mlp", {"hidden": None, "n_models": 1,
                                          "linear_blend": 0.25}),
    "mlp sp3 budget": (SP3, "mlp", {"hidden": None, **ONE}),
    "mlp sp3 h15 skip": (SP3, "mlp", {**ONE, "hidden": (15,), "skip": True,
                                      "linear_start": 10.0}),
    "mlp sp3 2x h8": (SP3, "mlp", {"n_models": 2, "linear_blend": 0.0, "hidden": (8,)}),
    "mlp sp3 h16,8": (SP3, "mlp", {**ONE, "hidden": (16, 8)}),
    "mlp sp3 h56": (SP3, "mlp", {**ONE, "hidden": (56,)}),
    "mlp sp3 h16 d0": (SP3, "mlp", {**ONE, "hidden": (16,), "dropout": 0.0}),
    "mlp sp3 h16 wd0.1": (SP3, "mlp", {**ONE, "hidden": (16,), "weight_decay": 0.1}),
    "mlp sp3 h16 e120": (SP3, "mlp", {**ONE, "hidden": (16,), "max_epochs": 120,
                                      "patience": 40}),
    "mlp sp3 h16 lr3e-3": (SP3, "mlp", {**ONE, "hidden": (16,), "lr": 3e-3}),
    "mlp sp3 3x h5": (SP3, "mlp", {"n_models": 3, "linear_blend": 0.0, "hidden": (5,)}),
    "mlp sp2 h26": ("bip(3,6)m species r=2", "mlp", {**ONE, "hidden": (26,)}),
    "mlp sp4 h13": ("bip(3,6)m species r=4", "mlp", {**ONE, "hidden": (13,)}),
    "mlp bip(4,7)m sp2 h7": ("bip(4,7)m species r=2", "mlp", {**ONE, "hidden": (7,)}),
    "mlp bip(3,6)m h55": ("bip(3,6)m", "mlp", {**ONE, "hidden": (55,)}),
    "mlp bip(3,6)m h16": ("bip(3,6)m", "mlp", {**ONE, "hidden": (16,)}),
    "mlp bip(4,7)m h13 d0.1": ("bip(4,7)m", "mlp", {**ONE, "hidden": (13,), "dropout": 0.1}),
    "mlp bip(4,7)m h13 signed_log": ("bip(4,7)m", "mlp", {**ONE, "hidden": (13,),
                                                          "scaling": "signed_log"}),
    "mlp cp3 h16": ("bip(3,6)m charge,photon r=3", "mlp", {**ONE, "hidden": (16,)}),
    "mlp chp3 h16": ("bip(3,6)m charge,hadron,photon r=3", "mlp", {**ONE, "hidden": (16,)}),
    "mlp cp3 budget blend": ("bip(3,6)m charge,photon r=3", "mlp",
                             {"hidden": None, "n_models": 1, "linear_blend": 0.25}),
    "mlp chp3 budget blend": ("bip(3,6)m charge,hadron,photon r=3", "mlp",
                              {"hidden": None, "n_models": 1, "linear_blend": 0.25}),
    "mlp cp3 h16 signed_log": ("bip(3,6)m charge,photon r=3", "mlp",
                               {**ONE, "hidden": (16,), "scaling": "signed_log"}),
    "mlp c2 h26": ("bip(3,6)m charge r=2", "mlp", {**ONE, "hidden": (26,)}),
    "mlp bip(4,7)m cp2 h7": ("bip(4,7)m charge,photon r=2", "mlp", {**ONE, "hidden": (7,)}),
    "mlp sp3 budget blend0.5": (SP3, "mlp", {"hidden": None, "n_models": 1,
                                             "linear_blend": 0.5}),
    "mlp sp3 budget blend0.75": (SP3, "mlp", {"hidden": None, "n_models": 1,
                                              "linear_blend": 0.75}),
    "mlp bip(4,7)m budget blend0.5": ("bip(4,7)m", "mlp", {"hidden": None, "n_models": 1,
                                                           "linear_blend": 0.5}),
    "mlp sp3 budget blend d0.1": (SP3, "mlp", {"hidden": None, "n_models": 1,
                                               "linear_blend": 0.25, "dropout": 0.1}),
    "mlp sp3 budget blend d0.5": (SP3, "mlp", {"hidden": None, "n_models": 1,
                                               "linear_blend": 0.25, "dropout": 0.5}),
    "mlp sp3 budget blend lr3e-3": (SP3, "mlp", {"hidden": None, "n_models": 1,
                                                 "linear_blend": 0.25, "lr": 3e-3}),
    "mlp sp3 budget blend e120": (SP3, "mlp", {"hidden": None, "n_models": 1,
                                               "linear_blend": 0.25, "max_epochs": 120,
                                               "patience": 40}),
    "mlp sp3 budget blend signed_log": (SP3, "mlp", {"hidden": None, "n_models": 1,
                                                     "linear_blend": 0.25,
                                                     "scaling": "signed_log"}),
    "mlp sp3 budget blend 2x": (SP3, "mlp", {"hidden": None, "n_models": 2,
                                             "linear_blend": 0.25}),
    "mlp sp3 budget blend wd0.1": (SP3, "mlp", {"hidden": None, "n_models": 1,
                                                "linear_blend": 0.25, "weight_decay": 0.1}),
    "mlp lepton2 budget blend": ("bip(3,6)m lepton r=2", "mlp",
                                 {"hidden": None, "n_models": 1, "linear_blend": 0.25}),
    "mlp ln3 budget blend": ("bip(3,6)m lepton,neutral r=3", "mlp",
                             {"hidden": None, "n_models": 1, "linear_blend": 0.25}),
    "mlp lc3 budget blend": ("bip(3,6)m lepton,charge r=3", "mlp",
                             {"hidden": None, "n_models": 1, "linear_blend": 0.25}),
    "mlp bip(4,7)m lepton2 budget blend": ("bip(4,7)m lepton r=2", "mlp",
                                           {"hidden": None, "n_models": 1,
                                            "linear_blend": 0.25}),
    **{f"mlp {f} budget blend lr{lr}": (f, "mlp", {"hidden": None, "n_models": 1,
                                                    "linear_blend": 0.25, "lr": lr})
       for f in ("bip(4,7)m", SP3, "bip(3,6)m lepton r=2", "bip(4,7)m lepton r=2",
                 "bip(3,6)m lepton,neutral r=3", "bip(3,7)m lepton r=2",
                 "bip(4,6)m lepton r=2", "bip(3,7)m lepton,neutral r=3")
       for lr in (3e-3, 1e-2)},
    **{f"mlp {f} budget blend lr{lr} e120": (f, "mlp", {
        "hidden": None, "n_models": 1, "linear_blend": 0.25, "lr": lr, "max_epochs": 120,
        "patience": 40})
       for f in ("bip(4,7)m", "bip(4,7)m lepton r=2", "bip(4,6)m lepton r=2",
                 "bip(3,7)m lepton r=2") for lr in (3e-3, 1e-2)},
    **{f"mlp {f} budget blend lr0.003 d0.1": (f, "mlp", {
        "hidden": None, "n_models": 1, "linear_blend": 0.25, "lr": 3e-3, "dropout": 0.1})
       for f in ("bip(4,7)m", "bip(4,7)m lepton r=2")},
    "mlp bip(4,6)m lepton r=2 h12,8 blend lr0.003": ("bip(4,6)m lepton r=2", "mlp", {
        "hidden": (12, 8), "n_models": 1, "linear_blend": 0.25, "lr": 3e-3}),
    "mlp sp3 budget blend lr3e-3 e120": (SP3, "mlp", {"hidden": None, "n_models": 1,
                                                      "linear_blend": 0.25, "lr": 3e-3,
                                                      "max_epochs": 120, "patience": 40}),
    "mlp sp3 budget blend lr3e-3 d0.1": (SP3, "mlp", {"hidden": None, "n_models": 1,
                                                      "linear_blend": 0.25, "lr": 3e-3,
                                                      "dropout": 0.1}),
    "mlp sp3 budget blend0.5 lr3e-3": (SP3, "mlp", {"hidden": None, "n_models": 1,
                                                    "linear_blend": 0.5, "lr": 3e-3}),
    # the MLPTagger default (parameter budget, blend, lr 3e-3) at other budgets
    **{f"mlp {f} default max{n}": (f, "mlp", {"max_parameters": n})
       for f in ("bip(3,6)m", "bip(4,7)m", "bip(4,6)m lepton r=2", SP3)
       for n in (1000, 3000, 10000, 30000)},
    "mlp bip(4,7)m ensemble": ("bip(4,7)m", "mlp", dict(ENSEMBLE)),
    # distillation into the 10k default recipe from larger jetace MLPs
    "distill bip(4,6)m lepton r=2 from 30k a0": ("bip(4,6)m lepton r=2", "distill", {
        "teacher": {"max_parameters": 30000}, "alpha": 0.0}),
    "distill bip(4,6)m lepton r=2 from 30k a0.5": ("bip(4,6)m lepton r=2", "distill", {
        "teacher": {"max_parameters": 30000}, "alpha": 0.5}),
    "distill bip(4,6)m lepton r=2 from ensemble a0.5": ("bip(4,6)m lepton r=2", "distill", {
        "teacher": dict(ENSEMBLE), "alpha": 0.5}),
    "mlp bip(4,6)m lepton r=2 ensemble": ("bip(4,6)m lepton r=2", "mlp", dict(ENSEMBLE)),
    "mlp bip(4,7)m 2x h6": ("bip(4,7)m", "mlp", {"n_models": 2, "linear_blend": 0.0,
                                                 "hidden": (6,)}),
}


def feature_module(name: str) -> torch.nn.Module:
    family, kw = FEATURES[name]
    if family == "efp":
        from observables import EFPFeatures

        return EFPFeatures(**kw)
    return jetace.BIPFeatures(**kw) if family == "bip" else jetace.LorentzACEFeatures(**kw)


def test_files(work: Path) -> tuple[list[str], list[str]]:
    files = {p: [str(work / f"{name}.root") for name, (q, _, _) in TEST_FILES.items() if q == p]
             for p in ("top", "qcd")}
    return files["top"], files["qcd"]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


# ---------------------------------------------------------------------------- generate


def cmd_generate(args) -> None:
    args.work.mkdir(parents=True, exist_ok=True)
    for name, (process, seed, multiple) in TEST_FILES.items():
        out = args.work / f"{name}.root"
        if out.exists():
            print(f"{out} exists, kept")
            continue
        subprocess.run([sys.executable, "-m", "jetace", "generate", process, "-n",
                        str(multiple * args.n_jets), "-o", str(out), "--seed", str(seed)],
                       check=True)


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
    for process, train, tests in (("top", sig[0], tsig), ("qcd", bkg[0], tbkg)):
        a = _jet_columns(train)
        parts = [_jet_columns(t) for t in tests]
        b = {k: np.concatenate([c[k] for c in parts]) for k in a}
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
        out[process] = {"train_file": train, "test_files": tests, "n_train": len(a["jet_pt"]),
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
            if FEATURES[name][0] == "efp":  # numpy, one process
                p4, mask = jetace.to_padded(jets, max_particles=MAX_PARTICLES)
                x = torch.from_numpy(module.compute(p4, mask, n_jobs=1, desc=part))
            else:
                x = _features(module, jets)
            torch.save({"x": x, "y": torch.as_tensor(y),
                        "spec": getattr(module, "spec", FEATURES[name])},
                       cache / f"{_slug(name)}_{part}.pt")
        times[name] = time.perf_counter() - t0
        tqdm.write(f"{name}: {module.num_features} features, {times[name]:.1f} s")


def load_features(work: Path, name: str, part: str) -> tuple[torch.Tensor, np.ndarray]:
    d = torch.load(work / "features" / f"{_slug(name)}_{part}.pt")
    return d["x"], d["y"].numpy()


class DistilledMLP:
    """A budgeted MLP student trained on a larger jetace teacher's probabilities.

    Soft targets through sample weights: every jet enters twice, as signal with weight
    ``(1 - alpha) p + alpha y`` and as background with ``(1 - alpha)(1 - p) + alpha (1 - y)``
    (p: the teacher's signal probability on the training jets, y: the label), which is
    the cross entropy against the blended target. Only the student is kept (its cost is
    the model's cost)."""

    def __init__(self, teacher: dict[str, Any], alpha: float = 0.0, **student: Any):
        self.teacher, self.alpha, self.student = teacher, float(alpha), student

    def get_params(self) -> dict[str, Any]:
        return {"teacher": self.teacher, "alpha": self.alpha, "student": self.student}

    def fit(self, X: torch.Tensor, y: np.ndarray) -> DistilledMLP:
        teacher = jetace.MLPTagger(**{"seed": 0, **self.teacher}).fit(X, y)
        p = torch.sigmoid(torch.as_tensor(np.asarray(teacher.decision_function(X)),
                                          dtype=torch.float64))
        yt = torch.as_tensor(y, dtype=torch.float64)
        soft = (1 - self.alpha) * p + self.alpha * yt
        X2 = torch.cat([X, X])
        y2 = np.concatenate([np.ones(len(y), np.int64), np.zeros(len(y), np.int64)])
        w = torch.cat([soft, 1 - soft]).clamp_min(0.0)
        self.model_ = jetace.MLPTagger(**{"seed": 0, **self.student}).fit(
            X2, y2, sample_weight=w)
        self.n_features_in_ = self.model_.n_features_in_
        return self

    def decision_function(self, X: torch.Tensor):
        return self.model_.decision_function(X)

    def as_module(self) -> torch.nn.Module:
        return self.model_.as_module()


def make_tagger(kind: str, params: dict[str, Any]):
    if kind == "linear":
        return jetace.LinearTagger(**params)
    if kind == "distill":
        return DistilledMLP(**params)
    return jetace.MLPTagger(**{"seed": 0, **params})


def cost_of(feature_set: str, tagger) -> dict[str, Any]:
    """Trainable parameters, features and FLOPs per jet at MULTIPLICITY constituents."""
    from jetace.cost import model_cost, trainable_parameters

    if FEATURES[feature_set][0] == "efp":  # numpy inside: not countable by count_flops
        return {"parameters": trainable_parameters(tagger), "features": tagger.n_features_in_,
                "flops_per_jet": None, "flops_note": "EFPs (energyflow, numpy): not counted"}
    c = model_cost(feature_module(feature_set), tagger, MULTIPLICITY)
    return {"parameters": c.parameters, "features": c.features,
            "flops_per_jet": c.flops_per_jet, "feature_flops_per_jet": c.feature_flops,
            "classifier_flops_per_jet": c.classifier_flops}


def _metrics(scores: np.ndarray, y: np.ndarray) -> dict[str, float]:
    m = binary_metrics(scores.astype(np.float64), y)
    return {k: m[k] for k in ("auc", "rejection_at_0.3", "rejection_at_0.5")}


def cmd_select(args) -> None:
    """Each candidate fitted on 80% of the training jets (seeded split), scored on the
    other 20%; results merged into benchmarks/results/efficiency_selection.json."""
    from jetace.training import split_indices

    out = read_json("efficiency_selection") or {"rows": {}}
    names = [n for n in CANDIDATES if not args.only or n in args.only]
    cache: dict[str, tuple[torch.Tensor, np.ndarray]] = {}
    for name in tqdm(names, desc="candidates"):
        fset, kind, params = CANDIDATES[name]
        if not (args.work / "features" / f"{_slug(fset)}_train.pt").is_file():
            tqdm.write(f"{name}: no features {fset} yet (run the features step), skipped")
            continue
        if fset not in cache:
            cache[fset] = load_features(args.work, fset, "train")
        x, y = cache[fset]
        tr, va = split_indices(len(y), 0.2, seed=1)
        t0 = time.perf_counter()
        tagger = make_tagger(kind, params).fit(x[tr], y[tr])
        fit_s = time.perf_counter() - t0
        scores = np.asarray(tagger.decision_function(x[va]))
        row = {"features_set": fset, "tagger": kind, "params": params,
               "all_params": tagger.get_params(), "fit_s": fit_s,
               "n_fit": len(tr), "n_val": len(va), **_metrics(scores, y[va]),
               **cost_of(fset, tagger)}
        out["rows"][name] = row
        out["split"] = {"jets": "training jets (shared files)", "validation_fraction": 0.2,
                        "seed": 1}
        write_json("efficiency_selection", out)
        tqdm.write(f"{name:45} P={row['parameters']:7d} AUC {row['auc']:.5f} "
                   f"R30 {row['rejection_at_0.3']:6.0f} R50 {row['rejection_at_0.5']:6.1f} "
                   f"MFLOPs {(row['flops_per_jet'] or 0) / 1e6:.3f} ({fit_s:.0f} s)")


#: the models of the benchmark table: label -> candidate name (CANDIDATES), chosen on the
#: validation study before any test jet was scored
FINAL: dict[str, str] = {
    "linear, bip(3,6)m": "linear bip(3,6)m",
    "linear, bip(4,7)m": "linear bip(4,7)m",
    "linear, bip(4,8)m": "linear bip(4,8)m",
    "linear, lorentz": "linear lorentz",
    "linear, bip(3,6)m species r=3": "linear bip(3,6)m species r=3",
    "linear, bip(3,6)m lepton r=2": "linear bip(3,6)m lepton r=2",
    "linear, bip(4,6)m lepton r=2": "linear bip(4,6)m lepton r=2",
    "linear, bip(4,7)m lepton r=2": "linear bip(4,7)m lepton r=2",
    "MLP 1k, bip(3,6)m": "mlp bip(3,6)m default max1000",
    "MLP 3k, bip(4,7)m": "mlp bip(4,7)m default max3000",
    "MLP 10k (default), bip(4,7)m": "mlp bip(4,7)m default max10000",
    "MLP 30k, bip(4,7)m": "mlp bip(4,7)m default max30000",
    "MLP 3k, bip(4,6)m lepton r=2": "mlp bip(4,6)m lepton r=2 default max3000",
    "MLP 10k, bip(4,6)m lepton r=2": "mlp bip(4,6)m lepton r=2 default max10000",
    "MLP 30k, bip(4,6)m lepton r=2": "mlp bip(4,6)m lepton r=2 default max30000",
    "MLP 10k, bip(3,6)m species r=3": "mlp bip(3,6)m species r=3 default max10000",
    "EFP d<=5 + logistic (signed log)": "linear efp d<=5 signed_log",
    "MLP ensemble (earlier default), bip(4,7)m": "mlp bip(4,7)m ensemble",
}


def cmd_final(args) -> None:
    """The FINAL models refitted on all training jets and scored on the test jets."""
    out_dir = args.work / "scores"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = args.work / "final.json"
    done = json.loads(path.read_text()) if path.is_file() else {}
    labels = [n for n in FINAL if not args.only or n in args.only]
    for label in tqdm(labels, desc="final models"):
        fset, kind, params = CANDIDATES[FINAL[label]]
        x, y = load_features(args.work, fset, "train")
        xt, yt = load_features(args.work, fset, "test")
        t0 = time.perf_counter()
        tagger = make_tagger(kind, params).fit(x, y)
        fit_s = time.perf_counter() - t0
        scores = np.asarray(tagger.decision_function(xt), dtype=np.float64)
        np.save(out_dir / f"{_slug(label)}.npy", scores)
        np.save(out_dir / "labels.npy", yt)
        done[label] = {"candidate": FINAL[label], "features_set": fset, "tagger": kind,
                       "params": params, "all_params": tagger.get_params(), "fit_s": fit_s,
                       "n_train": len(y),
                       **cost_of(fset, tagger), **_metrics(scores, yt)}
        path.write_text(json.dumps(done, indent=1, default=float))
        r = done[label]
        tqdm.write(f"{label:40} P={r['parameters']:7d} AUC {r['auc']:.5f} "
                   f"R30 {r['rejection_at_0.3']:6.0f} R50 {r['rejection_at_0.5']:6.1f}")


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


# ----------------------------------------------------------------------------- report


def bootstrap_indices(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """(n, len(y)) resamples of the test jets: with replacement within each class, so
    every resample keeps the class sizes."""
    rng = np.random.default_rng(seed)
    pos, neg = np.nonzero(y == 1)[0], np.nonzero(y == 0)[0]
    return np.stack([np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
                     for _ in range(n)])


def bootstrap_metrics(scores: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(n resamples, 3): AUC, R30, R50 of each resample."""
    return np.array([list(_metrics(scores[i], y[i]).values()) for i in idx])


def _peer_flops() -> dict[str, float]:
    """FLOPs per jet of ParticleNet-Lite and ParticleNet, counted as jetace's (cost.py)."""
    from cost import peer_rows

    return {r["model"]: r["flops_per_jet"] for r in peer_rows(MULTIPLICITY)}


def pareto(rows: list[dict], key: str) -> list[str]:
    """Models no other model beats in AUC at a lower or equal ``key`` (the frontier)."""
    front, best = [], -1.0
    for r in sorted((r for r in rows if r.get(key) is not None),
                    key=lambda r: (r[key], -r["auc"])):
        if r["auc"] > best:
            front.append(r["model"])
            best = r["auc"]
    return front


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharey="row")
    for col, (key, xlabel, scale) in enumerate(
            [("parameters", "trainable parameters", 1.0),
             ("flops_per_jet", "MFLOPs per jet (60 constituents)", 1e-6)]):
        front = pareto(rows, key)
        for row_i, (metric, ylabel) in enumerate([("auc", "AUC"),
                                                  ("rejection_at_0.3", "1/eps_B at eps_S = 0.3")]):
            ax = axes[row_i, col]
            pts = [r for r in rows if r.get(key) is not None]
            for r in pts:
                peer = not r["model"].startswith(("linear", "MLP"))
                color = "C3" if peer else ("C0" if r["model"].startswith("linear") else "C2")
                lo, hi = r[f"{metric}_ci68"] if metric != "auc" else (
                    r["auc"] - r["auc_sd"], r["auc"] + r["auc_sd"])
                hi = hi if np.isfinite(hi) else 2 * r[metric]
                yerr = [[max(r[metric] - lo, 0)], [max(hi - r[metric], 0)]]
                ax.errorbar(r[key] * scale, r[metric], yerr=yerr,
                            fmt="s" if peer else "o", color=color, ms=5, capsize=2)
                ax.annotate(r["model"], (r[key] * scale, r[metric]), fontsize=6,
                            xytext=(3, 3), textcoords="offset points")
            fr = sorted((r for r in pts if r["model"] in front), key=lambda r: r[key])
            if row_i == 0:
                ax.step([r[key] * scale for r in fr], [r["auc"] for r in fr], where="post",
                        color="k", lw=0.7, alpha=0.5, label="Pareto frontier (AUC)")
                ax.legend(fontsize=7, loc="lower right")
            ax.set_xscale("log")
            if metric != "auc":
                ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3, which="both")
    fig.suptitle("top vs QCD, independent test jets (10k + 10k); "
                 "blue: jetace linear, green: jetace MLP, red: peers; bars: bootstrap sd (AUC), "
                 "68% interval (R30)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _interval(ci: list[float], digits: int) -> str:
    return "-".join("inf" if not np.isfinite(v) else f"{v:.{digits}f}" for v in ci)


def table(rows: list[dict], reference: str) -> str:
    lines = ["| model | parameters | MFLOPs / jet | AUC ± sd | AUC - " + reference
             + " (paired) | R30 (68% interval) | R50 (68% interval) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        flops = "-" if r.get("flops_per_jet") is None else f"{r['flops_per_jet'] / 1e6:.3g}"
        d = r.get("auc_diff", {})
        diff = f"{d['mean']:+.5f} ± {d['sd']:.5f}" if d else "-"
        lines.append(f"| {r['model']} | {r['parameters']:,} | {flops} | "
                     f"{r['auc']:.5f} ± {r['auc_sd']:.5f} | {diff} | "
                     f"{r['rejection_at_0.3']:.0f} ({_interval(r['rejection_at_0.3_ci68'], 0)}) | "
                     f"{r['rejection_at_0.5']:.0f} ({_interval(r['rejection_at_0.5_ci68'], 0)}) |")
    return "\n".join(lines) + "\n"


def cmd_report(args) -> None:
    """Test metrics, bootstrap uncertainties, paired differences, Pareto fronts, the JSON,
    the plot and the markdown table."""
    y = np.load(args.work / "scores" / "labels.npy")
    final = json.loads((args.work / "final.json").read_text())
    scores = {label: np.load(args.work / "scores" / f"{_slug(label)}.npy") for label in final}
    rows = []
    for label, r in final.items():
        rows.append({"model": label, "flops_note": r.get("flops_note"), **{k: r.get(k) for k in (
            "features_set", "tagger", "params", "parameters", "features", "flops_per_jet",
            "feature_flops_per_jet", "classifier_flops_per_jet", "fit_s", "n_train")}})
    pn_path = args.work / "pnlite.json"
    peers = _peer_flops()
    if pn_path.is_file():
        pn = json.loads(pn_path.read_text())
        scores["ParticleNet-Lite"] = np.load(args.work / "scores" / "pnlite.npy")
        rows.append({"model": "ParticleNet-Lite", "features_set": "100 constituents x 7",
                     "parameters": pn["parameters"],
                     "flops_per_jet": peers.get("ParticleNet-Lite"),
                     "training": pn["training"], "fit_s": pn["train_time_s"],
                     "inference_jets_per_s_1_thread": pn["inference_jets_per_s"]})
    idx = bootstrap_indices(y, args.bootstrap, seed=0)
    reference = "ParticleNet-Lite" if "ParticleNet-Lite" in scores else "linear, bip(4,7)m"
    boot = {}
    for r in tqdm(rows, desc="bootstrap"):
        s = scores[r["model"]]
        r.update(_metrics(s, y))
        boot[r["model"]] = b = bootstrap_metrics(s, y, idx)
        for j, key in enumerate(("auc", "rejection_at_0.3", "rejection_at_0.5")):
            v = b[:, j]  # a rejection is infinite where a resample keeps no background jet
            finite = v[np.isfinite(v)]
            r[f"{key}_sd"] = float(finite.std(ddof=1))
            r[f"{key}_ci68"] = np.quantile(v, [0.16, 0.84], method="nearest").tolist()
            r[f"{key}_ci95"] = np.quantile(v, [0.025, 0.975], method="nearest").tolist()
            r[f"{key}_resamples_infinite"] = int(len(v) - len(finite))
    for r in rows:
        for ref in dict.fromkeys([reference, "linear, bip(4,7)m"]):
            if ref == r["model"] or ref not in boot:
                continue
            d = boot[r["model"]][:, 0] - boot[ref][:, 0]
            entry = {"reference": ref, "mean": float(d.mean()), "sd": float(d.std(ddof=1)),
                     "ci95": np.quantile(d, [0.025, 0.975]).tolist(),
                     "fraction_above_0": float(np.mean(d > 0))}
            r.setdefault("auc_differences", []).append(entry)
            if ref == reference:
                r["auc_diff"] = entry
    rows.sort(key=lambda r: r["parameters"])
    check = args.work / "check.json"
    out = {
        "machine": machine(),
        "training_jets": {"files": default_files(), "n": int(rows[0].get("n_train") or 0)},
        "test_jets": {"files": test_files(args.work), "seeds": TEST_SEEDS, "n": len(y),
                      "n_signal": int(y.sum()),
                      "generation": "jetace generate top/qcd with the default settings "
                                    "(those of the shared files)",
                      "check": json.loads(check.read_text()) if check.is_file() else None},
        "selection": "every setting chosen on a seeded 80/20 validation split of the "
                     "training jets (efficiency_selection.json); test jets scored once",
        "bootstrap": {"resamples": args.bootstrap, "seed": 0,
                      "method": "test jets resampled with replacement within each class; "
                                "paired: the same resamples for both models"},
        "reference": reference,
        "flops": {"multiplicity": MULTIPLICITY,
                  "method": "jetace.cost.count_flops: every arithmetic aten op (features "
                            "included); peers counted the same way on 100 padded slots",
                  "peers_flops_per_jet": peers},
        "pareto_parameters": pareto(rows, "parameters"),
        "pareto_flops": pareto(rows, "flops_per_jet"),
        "rows": rows,
    }
    write_json("efficiency", out)
    plot(rows, RESULTS / "efficiency_pareto.png")
    md = table(rows, reference)
    (RESULTS / "efficiency_table.md").write_text(md)
    print(md)


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["generate", "check", "features", "select", "pnlite",
                                     "final", "report"])
    ap.add_argument("--work", type=Path, default=WORK,
                    help="folder of the test jets, feature matrices and scores")
    ap.add_argument("--n-jets", type=int, default=10000,
                    help="generate: top test jets (QCD: 5 times as many)")
    ap.add_argument("--budget-minutes", type=float, default=30.0, help="pnlite: wall time")
    ap.add_argument("--only", nargs="*", help="features/select/final: names to run")
    ap.add_argument("--bootstrap", type=int, default=200, help="report: resamples")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    {"generate": cmd_generate, "check": cmd_check, "features": cmd_features, "select": cmd_select,
     "final": cmd_final, "report": cmd_report,
     "pnlite": cmd_pnlite}[args.step](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
