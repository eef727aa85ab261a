"""Species channels against kinematics only: the same jets, the same taggers.

Reads signal and background files (default: the development top and QCD samples, which
carry part_pid and part_charge), splits them with a fixed seed, computes mirrored BIP
features without and with species channels (jetace.species), trains the default
LinearTagger on the training split and reports AUC, 1/eps_B at 30% and 50% signal
efficiency (with bootstrap standard deviations from resampling the test jets), feature
counts, parameters, FLOPs per jet (jetace.cost at 40 constituents) and fit time;
``--mlp`` adds the default MLPTagger (at most 10,000 parameters) on every feature set,
and the setting "EFP d<=5" is energyflow's EFPs as a peer. Seeded. With
``--test-signal`` / ``--test-background`` the models train on all jets of the training
files and are scored on those separately generated test files instead of a split. The
AUC gain of every row over the first row of the same tagger (kinematic) comes with a
paired bootstrap standard deviation (the same resamples for both).
``species_weight="count"``: species channels count their constituents
(docs/definition.md, section 2.13).

    python benchmarks/species.py [--max-jets 12500] [--signal F ...] [--background F ...]
        [--test-signal F ...] [--test-background F ...] [--only SETTING ...] [--mlp]
        [--name species_top_qcd]

writes benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import default_files, load_split, load_train_test, write_json
from tqdm import tqdm

import jetace
from jetace.cost import model_cost, trainable_parameters
from jetace.metrics import binary_metrics

MULTIPLICITY = 40  #: constituents per jet at which FLOPs are counted

#: label -> BIPFeatures keyword arguments
SETTINGS = {
    "bip(3,6)m kinematic": {"order": 3, "degree": 6, "mirror": True},
    "bip(3,6)m species reduced r=2": {"order": 3, "degree": 6, "mirror": True,
                                      "species": "default", "rank": 2},
    "bip(3,6)m species reduced r=3": {"order": 3, "degree": 6, "mirror": True,
                                      "species": "default", "rank": 3},
    "bip(3,6)m species count r=2": {"order": 3, "degree": 6, "mirror": True,
                                    "species": "default", "rank": 2,
                                    "species_weight": "count"},
    "bip(3,6)m species count r=3": {"order": 3, "degree": 6, "mirror": True,
                                    "species": "default", "rank": 3,
                                    "species_weight": "count"},
    "bip(3,6)m charge+photon full": {"order": 3, "degree": 6, "mirror": True,
                                     "species": ["charge", "photon"], "channel_mode": "full"},
    "bip(3,6)m charge full": {"order": 3, "degree": 6, "mirror": True,
                              "species": ["charge"], "channel_mode": "full"},
    "bip(3,6)m charged_hadron full": {"order": 3, "degree": 6, "mirror": True,
                                      "species": ["charged_hadron"], "channel_mode": "full"},
    "bip(4,7)m kinematic": {"order": 4, "degree": 7, "mirror": True},
    "bip(4,7)m species count r=2": {"order": 4, "degree": 7, "mirror": True,
                                    "species": "default", "rank": 2,
                                    "species_weight": "count"},
    "bip(4,7)m species reduced r=2": {"order": 4, "degree": 7, "mirror": True,
                                      "species": "default", "rank": 2},
    "bip(4,7)m species count r=3": {"order": 4, "degree": 7, "mirror": True,
                                    "species": "default", "rank": 3,
                                    "species_weight": "count"},
    "EFP d<=5": {"family": "efp", "dmax": 5},
}


def bootstrap(scores: np.ndarray, y: np.ndarray, reference: np.ndarray | None = None,
              n: int = 100, seed: int = 0) -> dict:
    """Standard deviations of AUC and rejections over resamplings of the test jets, and
    of the AUC difference to the ``reference`` scores (the same resamples)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        m = binary_metrics(scores[i], y[i])
        gain = m["auc"] - binary_metrics(reference[i], y[i])["auc"] if reference is not None \
            else 0.0
        rows.append([m["auc"], m["rejection_at_0.3"], m["rejection_at_0.5"], gain])
    sd = np.std(rows, axis=0)
    return {"auc_sd": float(sd[0]), "rejection_at_0.3_sd": float(sd[1]),
            "rejection_at_0.5_sd": float(sd[2]), "auc_gain_sd": float(sd[3])}


def features(module: torch.nn.Module, jets, batch: int = 4096) -> torch.Tensor:
    if not hasattr(module, "plan"):  # EFPs: numpy, energyflow's own batches
        p4, mask = jetace.to_padded(jets, max_particles=128, dtype=torch.float64)
        return torch.from_numpy(module.compute(p4, mask, n_jobs=1))
    species = getattr(module, "species", ())
    out = []
    for s in range(0, len(jets), batch):
        p4, mask = jetace.to_padded(jets[s:s + batch], max_particles=128, species=species)
        with torch.no_grad():
            out.append(module(p4, mask))
    return torch.cat(out)


def main(argv: list[str] | None = None) -> int:
    sig, bkg = default_files()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signal", nargs="+", default=sig)
    parser.add_argument("--background", nargs="+", default=bkg)
    parser.add_argument("--test-signal", nargs="*", default=None,
                        help="separate test files (default: a seeded 80/20 split)")
    parser.add_argument("--test-background", nargs="*", default=None)
    parser.add_argument("--max-jets", type=int, default=12500, help="jets per class")
    parser.add_argument("--name", default="species_top_qcd")
    parser.add_argument("--only", nargs="*", help="settings to run (default: all)")
    parser.add_argument("--mlp", action="store_true",
                        help="also fit the default MLPTagger (<= 10,000 parameters) on each")
    args = parser.parse_args(argv)
    if bool(args.test_signal) != bool(args.test_background):
        parser.error("give both --test-signal and --test-background, or neither")
    split = (load_train_test(args.signal, args.background, args.test_signal,
                             args.test_background, args.max_jets) if args.test_signal
             else load_split(args.signal, args.background, args.max_jets))
    taggers = {"linear": jetace.LinearTagger}
    if args.mlp:
        taggers["MLP"] = jetace.MLPTagger  # the default: at most 10,000 parameters
    rows, reference = [], {}
    for label, kw in tqdm([(k, v) for k, v in SETTINGS.items()
                           if not args.only or k in args.only], desc="settings"):
        module = feature_module(kw)
        t0 = time.perf_counter()
        x_tr, x_te = features(module, split.train), features(module, split.test)
        t1 = time.perf_counter()
        for kind, make in taggers.items():
            rows.append(evaluate(label, kind, module, make(), x_tr, x_te, split, reference,
                                 t1 - t0))
    write_json(args.name, {"split": split.describe(), "cost_multiplicity": MULTIPLICITY,
                           "rows": rows})
    return 0


def feature_module(kw: dict) -> torch.nn.Module:
    """BIPFeatures(**kw), or energyflow's EFPs for {"family": "efp", "dmax": d}."""
    if kw.get("family") == "efp":
        from observables import EFPFeatures

        return EFPFeatures(kw["dmax"])
    return jetace.BIPFeatures(**kw)


def evaluate(label: str, kind: str, module, tagger, x_tr, x_te, split, reference: dict,
             feature_time: float) -> dict:
    """Fit ``tagger``, score the test jets; the AUC gain is paired against the first
    row fitted with the same kind of tagger (``reference`` holds its scores)."""
    t0 = time.perf_counter()
    tagger.fit(x_tr, split.y_train)
    fit_time = time.perf_counter() - t0
    scores = np.asarray(tagger.decision_function(x_te))
    m = binary_metrics(scores, split.y_test)
    first = reference.setdefault(kind, (scores, m["auc"]))
    cost = (model_cost(module, tagger, MULTIPLICITY) if hasattr(module, "plan") else None)
    row = {"setting": label, "tagger": kind,
           "spec": getattr(module, "spec", {"family": "efp"}),
           "features": module.num_features, "feature_time_s": feature_time,
           "fit_time_s": fit_time, "parameters": trainable_parameters(tagger),
           "flops_per_jet": cost.flops_per_jet if cost else None,
           "auc": m["auc"], "rejection_at_0.3": m["rejection_at_0.3"],
           "rejection_at_0.5": m["rejection_at_0.5"], "auc_gain": m["auc"] - first[1],
           **bootstrap(scores, split.y_test, first[0])}
    tqdm.write(f"{label:34} {kind:6} F={row['features']:5d} AUC {row['auc']:.5f} +- "
               f"{row['auc_sd']:.5f} gain {row['auc_gain']:+.5f} +- {row['auc_gain_sd']:.5f}"
               f" R30 {row['rejection_at_0.3']:.0f} R50 {row['rejection_at_0.5']:.1f}")
    return row


if __name__ == "__main__":
    raise SystemExit(main())
