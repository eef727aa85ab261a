"""Species channels against kinematics only: the same jets, the same linear tagger.

Reads signal and background files (default: the development top and QCD samples, which
carry part_pid and part_charge), splits them with a fixed seed, computes mirrored BIP
features without and with species channels (jetace.species), trains the default
LinearTagger on the training split and reports AUC, 1/eps_B at 30% and 50% signal
efficiency (with bootstrap standard deviations from resampling the test jets), feature
counts and fit time. Seeded. With ``--test-signal`` / ``--test-background`` the models
train on all jets of the training files and are scored on those separately generated
test files instead of a split. The AUC gain of every row over the first (kinematic) row
comes with a paired bootstrap standard deviation (the same resamples for both).
``species_weight="count"``: species channels count their constituents
(docs/definition.md, section 2.13).

    python benchmarks/species.py [--max-jets 12500] [--signal F ...] [--background F ...]
        [--test-signal F ...] [--test-background F ...] [--name species_top_qcd]

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
from jetace.metrics import binary_metrics

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
    "bip(4,7)m species reduced r=2": {"order": 4, "degree": 7, "mirror": True,
                                      "species": "default", "rank": 2},
    "bip(4,7)m species count r=3": {"order": 4, "degree": 7, "mirror": True,
                                    "species": "default", "rank": 3,
                                    "species_weight": "count"},
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
    args = parser.parse_args(argv)
    if bool(args.test_signal) != bool(args.test_background):
        parser.error("give both --test-signal and --test-background, or neither")
    split = (load_train_test(args.signal, args.background, args.test_signal,
                             args.test_background, args.max_jets) if args.test_signal
             else load_split(args.signal, args.background, args.max_jets))
    rows, reference = [], None
    for label, kw in tqdm([(k, v) for k, v in SETTINGS.items()
                           if not args.only or k in args.only], desc="settings"):
        module = jetace.BIPFeatures(**kw)
        t0 = time.perf_counter()
        x_tr, x_te = features(module, split.train), features(module, split.test)
        t1 = time.perf_counter()
        tagger = jetace.LinearTagger().fit(x_tr, split.y_train)
        t2 = time.perf_counter()
        scores = np.asarray(tagger.decision_function(x_te))
        m = binary_metrics(scores, split.y_test)
        reference = scores if reference is None else reference
        rows.append({"setting": label, "spec": module.spec, "features": module.num_features,
                     "feature_time_s": t1 - t0, "fit_time_s": t2 - t1,
                     "auc": m["auc"], "rejection_at_0.3": m["rejection_at_0.3"],
                     "rejection_at_0.5": m["rejection_at_0.5"],
                     "auc_gain": m["auc"] - rows[0]["auc"] if rows else 0.0,
                     **bootstrap(scores, split.y_test, reference)})
        r = rows[-1]
        tqdm.write(f"{label:34} F={r['features']:5d} AUC {r['auc']:.5f} +- {r['auc_sd']:.5f} "
                   f"gain {r['auc_gain']:+.5f} +- {r['auc_gain_sd']:.5f}"
                   f" R30 {r['rejection_at_0.3']:.0f} R50 {r['rejection_at_0.5']:.1f}")
    write_json(args.name, {"split": split.describe(), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
