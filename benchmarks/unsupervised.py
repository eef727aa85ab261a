"""Unsupervised and weakly supervised top tagging on BIP features, beside supervised.

Protocol (the same jets for every method):
* anomaly detectors (gaussian, gmm, autoencoder, and the ensemble of three autoencoders
  and the gmm) are fitted on the first 20k QCD jets only; the test set is the last 5k
  top and the last 5k QCD jets;
* clustering (rule: the smaller cluster is signal-like) is fitted on an unlabelled
  10k-jet sample of the training jets with 20% top, and scored on the test set;
* the supervised linear tagger is fitted on the first 20k top + 20k QCD jets;
* CWoLa: mixture A with signal fraction f and mixture B with f/4, equal sizes, disjoint,
  using every one of the first 20k QCD jets: n = 20000 / (2 - 5f/4) jets per mixture
  (11,428 each at f = 0.2; the top jets needed are drawn from the first 20k top jets);
  linear tagger with C chosen on held-out mixture membership (C="auto", no truth),
  refitted through the mixture link (the default; its strength also chosen on held-out
  mixture membership), and for comparison with the plain logistic link.

``--anomaly-folds K`` adds the default ensemble's AUC over K folds of all 25k + 25k jets
(fitted on the QCD jets outside each fold).

Prints a table (AUC, 1/eps_B at eps_S = 0.3) and writes benchmarks/results/unsupervised.json.

    python benchmarks/unsupervised.py [--data ../shared/data] [--features 3,6 4,7 4,7m]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from jetace import BIPFeatures, read_jets, to_padded
from jetace.metrics import rejection_at, roc_auc
from jetace.taggers.anomaly import (
    AutoencoderAnomaly,
    EnsembleAnomaly,
    GaussianAnomaly,
    GMMAnomaly,
)
from jetace.taggers.cluster import ClusterTagger, cluster_report
from jetace.taggers.linear import LinearTagger
from jetace.taggers.weak import CWoLaTagger, make_mixture

REPO = Path(__file__).resolve().parent.parent
N_TRAIN, N_TEST = 20000, 5000


def features(path: Path, order: int, degree: int, cache: Path | None,
             mirror: bool = False, max_particles: int = 128) -> np.ndarray:
    """BIP(order, degree) features (n_jets, F) of every jet of ``path`` (float64) from its
    ``max_particles`` hardest constituents; ``mirror``: the mirror-symmetrised set."""
    name = f"{path.stem}_bip{order}{degree}{'m' if mirror else ''}_{max_particles}.npy"
    if cache is not None:
        f = cache / name
        if f.exists():
            return np.load(f)
    module = BIPFeatures(order, degree, mirror=mirror)
    jets = read_jets(str(path))
    out = []
    with torch.no_grad():
        for i in range(0, len(jets), 2000):
            p4, mask = to_padded(jets[i:i + 2000], max_particles=max_particles,
                                   dtype=torch.float64)
            out.append(module(p4, mask).numpy())
    x = np.concatenate(out)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.save(cache / name, x)
    return x


def detectors(seed: int) -> dict:
    return {
        "gaussian (50 PCs)": GaussianAnomaly(n_components=50, seed=seed),
        "gaussian (all)": GaussianAnomaly(n_components=None, seed=seed),
        "gmm (8 x 50 PCs)": GMMAnomaly(n_mix=8, n_components=50, n_init=1, seed=seed),
        "autoencoder": AutoencoderAnomaly(hidden=(128,), latent=4, seed=seed),
        "ensemble (3 ae + gmm)": EnsembleAnomaly(seed=seed),
    }


def run(top: np.ndarray, qcd: np.ndarray, seed: int, fractions: list[float],
        log) -> list[dict]:
    X_test = np.r_[top[-N_TEST:], qcd[-N_TEST:]]
    y_test = np.r_[np.ones(N_TEST), np.zeros(N_TEST)]
    rows = []

    def record(method, kind, scores, seconds, **extra):
        row = {"method": method, "kind": kind, "auc": roc_auc(scores, y_test),
               "rejection_at_0.3": rejection_at(scores, y_test, 0.3),
               "seconds": round(seconds, 1), **extra}
        rows.append(row)
        log(row)

    t = time.perf_counter()
    sup = LinearTagger(seed=seed).fit(np.r_[top[:N_TRAIN], qcd[:N_TRAIN]],
                                      np.r_[np.ones(N_TRAIN), np.zeros(N_TRAIN)])
    record("supervised linear", "supervised", sup.signal_score(X_test),
           time.perf_counter() - t)
    for name, det in detectors(seed).items():
        t = time.perf_counter()
        det.fit(qcd[:N_TRAIN])
        record(name, "anomaly (QCD only)", det.signal_score(X_test), time.perf_counter() - t)
    rng = np.random.default_rng(seed)
    half = N_TRAIN // 2
    X_unlabelled, _ = make_mixture(top[:half], qcd[:half], 0.2, half, rng)
    for method in ("gmm", "kmeans"):
        t = time.perf_counter()
        cl = ClusterTagger(n_clusters=2, method=method, n_components=10, seed=seed)
        cl.fit(X_unlabelled)
        rep = cluster_report(cl, X_test, y_test)
        record(f"cluster ({method}, 2)", "clustering (20% top)", cl.signal_score(X_test),
               time.perf_counter() - t, purity=rep["purity"])
    for f in fractions:
        t = time.perf_counter()
        n = int(N_TRAIN / (2 - f - f / 4))  # every training QCD jet goes into A or B
        s_a, b_a = int(round(f * n)), n - int(round(f * n))
        s_b = int(round(f / 4 * n))
        Xa, _ = make_mixture(top[:s_a], qcd[:b_a], f, n, rng)
        Xb, _ = make_mixture(top[s_a:N_TRAIN], qcd[b_a:N_TRAIN], f / 4, n, rng)
        for link in ("mixture", "logistic"):
            t = time.perf_counter()
            cw = CWoLaTagger(seed=seed, classifier_params={"C": "auto"}, link=link)
            cw.fit_mixtures(Xa, Xb)
            name = f"cwola {f:g} vs {f / 4:g}" + (" (logistic)" if link == "logistic" else "")
            record(name, "weak", cw.signal_score(X_test), time.perf_counter() - t,
                   fraction_a=f, fraction_b=f / 4, n_per_mixture=n, n_top_used=s_a + s_b,
                   link=link, C=cw.classifier_.C_ if link == "logistic" else cw.link_C_)
    return rows


def anomaly_folds(top: np.ndarray, qcd: np.ndarray, folds: int, seed: int, log) -> dict:
    """The default ensemble's AUC over ``folds`` folds of the jets: fold k of the QCD
    and top jets is the test set, the ensemble is fitted on the other QCD jets (one
    5,000-jet test set alone scatters by about +-0.003)."""
    n = min(len(top), len(qcd))
    aucs = []
    for k, test in enumerate(np.array_split(np.arange(n), folds)):
        det = EnsembleAnomaly(seed=seed).fit(np.delete(qcd, test, axis=0))
        aucs.append(roc_auc(np.r_[det.signal_score(top[test]),
                                  det.signal_score(qcd[test])],
                            np.r_[np.ones(len(test)), np.zeros(len(test))]))
        log(f"ensemble, fold {k + 1}/{folds}: AUC {aucs[-1]:.4f}")
    return {"folds": folds, "auc": aucs, "mean": float(np.mean(aucs)),
            "std": float(np.std(aucs, ddof=1)) if folds > 1 else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"),
                    help="folder with top_train.root and qcd_train.root")
    ap.add_argument("--features", nargs="+", default=["3,6", "4,7"],
                    help="BIP (order,degree) pairs, 'm' appended for the mirror-symmetrised "
                         "set, '/P' for the P hardest constituents only (default 128), e.g. "
                         "4,7m or 3,6m/32 (default: 3,6 4,7)")
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.2, 0.1, 0.05],
                    help="CWoLa signal fractions of mixture A (B has a quarter of it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--anomaly-folds", type=int, default=0, metavar="K",
                    help="also the ensemble's AUC over K folds of all jets (0: skip)")
    ap.add_argument("--cache", default=None, help="folder to cache feature matrices (.npy)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("-o", "--output", default=str(REPO / "benchmarks" / "results" /
                                                  "unsupervised.json"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data, cache = Path(args.data), Path(args.cache) if args.cache else None
    results = {"setup": {"train": f"first {N_TRAIN} jets per class", "test":
                         f"last {N_TEST} top + last {N_TEST} QCD jets", "seed": args.seed,
                         "torch": torch.__version__, "threads": torch.get_num_threads(),
                         "cpu": platform.processor() or platform.machine(),
                         "cpu_count": os.cpu_count()},
               "results": {}}
    for spec in args.features:
        spec, _, particles = spec.partition("/")
        mirror, max_particles = spec.endswith("m"), int(particles or 128)
        order, degree = (int(v) for v in spec.rstrip("m").split(","))
        key = f"bip({order},{degree})" + (" mirror" if mirror else "") + \
            (f", {max_particles} hardest" if particles else "")
        top = features(data / "top_train.root", order, degree, cache, mirror, max_particles)
        qcd = features(data / "qcd_train.root", order, degree, cache, mirror, max_particles)
        print(f"\n{key}: {top.shape[1]} features")
        print(f"{'method':<32s} {'trained on':<22s} {'AUC':>7s} {'1/eps_B@0.3':>12s} {'s':>7s}")

        def log(row):
            print(f"{row['method']:<32s} {row['kind']:<22s} {row['auc']:7.4f} "
                  f"{row['rejection_at_0.3']:12.1f} {row['seconds']:7.1f}", flush=True)

        results["results"][key] = run(top, qcd, args.seed, args.fractions, log)
        if args.anomaly_folds > 1:
            results.setdefault("anomaly_folds", {})[key] = anomaly_folds(
                top, qcd, args.anomaly_folds, args.seed, print)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
