"""Data efficiency: test AUC against the number of training jets.

    python benchmarks/data_efficiency.py [--quick] [--sizes 1000 5000 20000 40000]
                                         [--pn-budget-minutes M] [--seeds 0 1 2]

Feature sets bip(3,6), bip(4,7), lorentz(4), lorentz IRC-safe (jetace, with the linear
recipe of run_all.py) and EFP d<=5 + LDA are computed once for the training split and
cached (.jetace-cache/bench); every size draws a class-balanced subset with each seed,
trains, and scores the same test jets (all of the test split; 4000 with --quick).
ParticleNet-Lite is trained at the sizes up to ``--pn-max-size`` when
``--pn-budget-minutes`` is positive (the budget is per size). Writes
benchmarks/results/data_efficiency.json.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from common import load_split, machine, metrics_row, padded, suite_parser, write_json
from linear_recipes import FEATURE_SETS, feature_table
from run_all import LINEAR
from tqdm import tqdm

import jetace

__all__ = ["SETS", "subset", "main"]

SETS = ("bip(3,6)", "bip(4,7)", "lorentz(4)", "lorentz irc-safe", "efp d<=5")


def subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a class-balanced random subset of ``n`` jets."""
    rng = np.random.default_rng(seed)
    parts = [rng.permutation(np.nonzero(y == c)[0])[: n // 2] for c in (0, 1)]
    return np.sort(np.concatenate(parts))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = suite_parser(__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--features", nargs="+", default=list(SETS), choices=list(FEATURE_SETS))
    ap.add_argument("--pn-budget-minutes", type=float, default=0.0)
    ap.add_argument("--pn-max-size", type=int, default=5000)
    args = ap.parse_args(argv)
    sizes = args.sizes or ([1000, 5000] if args.quick else [1000, 5000, 20000, 40000])
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    t0 = time.perf_counter()
    split = load_split(args.files_signal, args.files_background, None)
    n_pool = max(sizes)
    pool = subset(split.y_train, n_pool, 12345) if n_pool < len(split.y_train) else \
        np.arange(len(split.y_train))
    test = np.arange(4000 if args.quick else len(split.y_test))
    y_pool, y_te = split.y_train[pool], split.y_test[test]
    p4_pool, m_pool = padded(split.train[pool], dtype=torch.float64)
    p4_te, m_te = padded(split.test[test], dtype=torch.float64)
    tag = f"pool{len(pool)}-test{len(test)}"
    results = []
    for name in args.features:
        X_pool = feature_table(name, p4_pool, m_pool, f"de-train-{tag}")
        X_te = torch.from_numpy(feature_table(name, p4_te, m_te, f"de-test-{tag}"))
        recipe = dict(method="lda") if name.startswith("efp") else LINEAR
        for n in tqdm(sizes, desc=name, unit="size"):
            for seed in seeds:
                idx = subset(y_pool, n, seed)
                t = time.perf_counter()
                model = jetace.LinearTagger(**recipe).fit(torch.from_numpy(X_pool[idx]),
                                                          y_pool[idx])
                row = metrics_row(model.decision_function(X_te), y_te)
                row.pop("roc")
                row.update(features=name, model="linear", recipe=recipe, n_train=len(idx),
                           seed=seed, fit_time_s=time.perf_counter() - t)
                results.append(row)
        aucs = {n: np.mean([r["auc"] for r in results if r["features"] == name
                            and r["n_train"] == n - n % 2]) for n in sizes}
        print(f"  {name:18s} " + "  ".join(f"{n}: {a:.4f}" for n, a in aucs.items()), flush=True)
    if args.pn_budget_minutes > 0:
        from particlenet import train_and_evaluate

        p4_pool32, p4_te32 = p4_pool.float(), p4_te.float()
        for n in [s for s in sizes if s <= args.pn_max_size]:
            idx = subset(y_pool, n, 0)
            row = train_and_evaluate(p4_pool32[idx], m_pool[idx], y_pool[idx], p4_te32, m_te,
                                     y_te, "pnlite", args.pn_budget_minutes, seed=0)
            row.pop("roc")
            row.update(features="ParticleNet-Lite", n_train=len(idx), seed=0)
            results.append(row)
            print(f"  ParticleNet-Lite {n}: {row['auc']:.4f}", flush=True)
    out = {"machine": machine(), "sizes": sizes, "seeds": seeds, "n_test": len(test),
           "linear_recipe": LINEAR, "results": results,
           "wall_time_s": time.perf_counter() - t0}
    print("->", write_json("data_efficiency", out))
    return out


if __name__ == "__main__":
    main()
