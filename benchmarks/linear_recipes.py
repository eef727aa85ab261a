"""Why does EFP + LDA beat BIP + linear with few training jets, and what closes the gap?

Trains linear taggers on ``--n-train`` jets (half signal) with several recipes and
feature sets and scores them on the fixed test split. Recipes vary the classifier (LDA
with Ledoit-Wolf shrinkage, L2 logistic regression with the strength chosen on a
validation split), the input transform (standardise, signed log) and the feature set
(bip default, bip ``complete=True`` without duplicated real parts and with the
imaginary parts, lorentz, lorentz IRC-safe, EFP d<=5, and the union bip + EFP).

    python benchmarks/linear_recipes.py [--n-train 4000] [--n-test 10000]

writes benchmarks/results/linear_recipes.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import default_files, load_split, metrics_row, padded, write_json
from observables import EFPFeatures, cached
from tqdm import tqdm

import jetace

__all__ = ["FEATURE_SETS", "RECIPES", "feature_table", "fit_recipe", "main"]

FEATURE_SETS = {
    "bip(3,6)": lambda: jetace.BIPFeatures(3, 6),
    "bip(3,6) complete": lambda: jetace.BIPFeatures(3, 6, complete=True),
    "bip(4,7)": lambda: jetace.BIPFeatures(4, 7),
    "bip(4,7) complete": lambda: jetace.BIPFeatures(4, 7, complete=True),
    "lorentz(4)": lambda: jetace.LorentzACEFeatures(),
    "lorentz irc-safe": lambda: jetace.LorentzACEFeatures(irc_safe=True),
    "efp d<=5": lambda: EFPFeatures(5),
}

RECIPES = {
    "lda": dict(method="lda"),
    "lda signed_log": dict(method="lda", scaling="signed_log"),
    "logistic C=auto": dict(method="logistic", C="auto", C_grid=(1e-3, 1e-2, 1e-1, 1.0)),
    "logistic signed_log C=auto": dict(method="logistic", scaling="signed_log", C="auto",
                                       C_grid=(1e-3, 1e-2, 1e-1, 1.0)),
}


def feature_table(name: str, p4: torch.Tensor, mask: torch.Tensor, key: str) -> np.ndarray:
    """Features ``name`` of the padded jets (float64 numpy), cached on disk under ``key``."""
    module = FEATURE_SETS[name]()

    def compute() -> np.ndarray:
        if isinstance(module, EFPFeatures):
            return module.compute(p4, mask, n_jobs=2, desc=key)
        with torch.no_grad():
            out = [module(p4[i:i + 1024].double(), mask[i:i + 1024])
                   for i in tqdm(range(0, len(p4), 1024), desc=f"{name} {key}", unit="batch")]
        return torch.cat(out).numpy()

    return cached(f"{name}|{key}", compute)


def fit_recipe(recipe: str, X: np.ndarray, y: np.ndarray, seed: int = 0):
    """A fitted :class:`jetace.LinearTagger` for one recipe of :data:`RECIPES`."""
    return jetace.LinearTagger(**RECIPES[recipe], seed=seed).fit(torch.from_numpy(X), y)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--features", nargs="*", default=list(FEATURE_SETS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    sig, bkg = default_files()
    split = load_split(sig, bkg, max_jets=None, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    per_class = [rng.permutation(np.nonzero(split.y_train == c)[0])[:args.n_train // 2]
                 for c in (0, 1)]
    tr = np.sort(np.concatenate(per_class))
    te = np.arange(min(args.n_test, len(split.y_test)))
    p4_tr, m_tr = padded(split.train[tr], dtype=torch.float64)
    p4_te, m_te = padded(split.test[te], dtype=torch.float64)
    y_tr, y_te = split.y_train[tr], split.y_test[te]
    tag = f"seed{args.seed}"
    tables = {}
    for name in args.features:
        tables[name] = (feature_table(name, p4_tr, m_tr, f"train{args.n_train}-{tag}"),
                        feature_table(name, p4_te, m_te, f"test{args.n_test}-{tag}"))
    if "bip(4,7)" in tables and "efp d<=5" in tables:
        tables["bip(4,7) + efp d<=5"] = tuple(
            np.hstack([tables["bip(4,7)"][i], tables["efp d<=5"][i]]) for i in (0, 1))
    results = []
    for name, (X_tr, X_te) in tables.items():
        for recipe in RECIPES:
            t0 = time.perf_counter()
            try:
                model = fit_recipe(recipe, X_tr, y_tr, args.seed)
            except Exception as exc:  # a recipe that fails is a result too
                results.append({"features": name, "recipe": recipe, "error": str(exc)})
                continue
            fit_s = time.perf_counter() - t0
            s = np.asarray(model.decision_function(torch.from_numpy(X_te)))
            row = metrics_row(s, y_te)
            row.pop("roc")
            row.update(features=name, recipe=recipe, n_features=X_tr.shape[1], fit_time_s=fit_s,
                       C=getattr(model, "C_", None))
            results.append(row)
            print(f"{name:24s} {recipe:28s} AUC {row['auc']:.4f}  1/eB@0.3 "
                  f"{row['rejection_at_0.3']:.0f}  ({fit_s:.1f}s)", flush=True)
    best = max((r for r in results if "auc" in r), key=lambda r: r["auc"])
    write_json("linear_recipes", {"n_train": len(tr), "n_test": len(te), "results": results,
                                  "best": {k: best[k] for k in ("features", "recipe", "auc")}})
    print("best:", best["features"], best["recipe"], f"{best['auc']:.4f}")


if __name__ == "__main__":
    main()
