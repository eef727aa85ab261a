"""The jetace benchmark suite: every tagger, side by side, on the same jets, in one run.

    python benchmarks/run_all.py [--quick] [--files-signal F ...] [--files-background F ...]
                                 [--pn-budget-minutes M] [--max-jets N]

Reads signal and background JetClass-layout files (default: ../shared/data/top_train.root
and qcd_train.root next to the repository), splits each class 80/20 with a fixed seed,
trains every model on the same training jets and scores the same test jets. Rows:

* jetace: bip(3,6) + linear, bip(4,7) + linear, the `jetace train` defaults (logistic and
  MLP on mirror-symmetrised bip(4,7)), lorentz + linear,
  lorentz IRC-safe + linear; the best unsupervised detector from
  benchmarks/results/unsupervised.json when that file exists (trained elsewhere);
* energyflow EFPs d<=5 and d<=6 (beta = 0.5, hadronic measure) + LDA;
* N-subjettiness (exclusive-kT axes): a cut on tau_32, and mass + tau_21 + tau_32 in a
  small gradient-boosted tree ensemble (scikit-learn HistGradientBoosting);
* jet mass alone (binned likelihood ratio = the best one-variable cut);
* ParticleNet-Lite (weaver-core) trained for ``--pn-budget-minutes`` on CPU.

Inference throughput: raw padded constituents in, scores out (features included, file
reading not), float32 (EFPs: float64 numpy), CPU, one torch thread, so that every
model is timed under the same conditions on a shared machine. Feature throughput of
bip, lorentz and EFP is measured in the same run on the same test jets.

Writes benchmarks/results/suite.json (rows, ROC points, feature throughput, machine,
settings) and benchmarks/results/table.md.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch
from common import (
    RESULTS,
    batched,
    load_split,
    machine,
    markdown_table,
    metrics_row,
    padded,
    read_json,
    suite_parser,
    throughput,
    timed,
    write_json,
)
from observables import EFPFeatures, HistRatio, jet_mass, nsubjettiness
from tqdm import tqdm

import jetace
from jetace.cost import REPORT_MULTIPLICITY, model_cost

__all__ = ["jetace_models", "run_jetace", "run_efp", "run_substructure", "run_unsupervised",
           "feature_throughput", "main"]

INFERENCE = {"device": "cpu", "threads": 1, "batch": 1024, "dtype": "float32",
             "includes": "features from padded p4 + classifier"}

# The linear recipe: see benchmarks/linear_recipes.py and results/linear_recipes.json
LINEAR = dict(method="lda")
LOGISTIC = dict(method="logistic", C="auto", C_grid=(1e-3, 1e-2, 1e-1, 1.0))


def jetace_models(quick: bool) -> list[tuple[str, str, Any, Any]]:
    """(model name, feature name, feature factory, tagger factory) of the jetace rows.

    "jetace LDA" is shrinkage LDA on standardised features (fast, and as good as any
    other linear recipe from a few thousand jets on, see linear_recipes.py); the
    logistic row chooses its L2 strength on a validation split."""
    mlp_epochs = 15 if quick else 60
    return [
        ("jetace LDA", "bip(3,6)", lambda: jetace.BIPFeatures(3, 6),
         lambda: jetace.LinearTagger(**LINEAR)),
        ("jetace logistic (C auto)", "bip(3,6)", lambda: jetace.BIPFeatures(3, 6),
         lambda: jetace.LinearTagger(**LOGISTIC)),
        ("jetace LDA", "bip(4,7)", lambda: jetace.BIPFeatures(4, 7),
         lambda: jetace.LinearTagger(**LINEAR)),
        # the defaults of `jetace train --model linear|mlp`
        ("jetace logistic (default)", "bip(4,7) mirror",
         lambda: jetace.BIPFeatures(4, 7, mirror=True), lambda: jetace.LinearTagger()),
        ("jetace MLP (default)", "bip(4,7) mirror",
         lambda: jetace.BIPFeatures(4, 7, mirror=True),
         lambda: jetace.MLPTagger(max_epochs=mlp_epochs)),
        ("jetace LDA", "lorentz(4)", lambda: jetace.LorentzACEFeatures(),
         lambda: jetace.LinearTagger(**LINEAR)),
        ("jetace LDA", "lorentz IRC-safe", lambda: jetace.LorentzACEFeatures(irc_safe=True),
         lambda: jetace.LinearTagger(**LINEAR)),
    ]


def run_jetace(data: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    """Train and score the jetace rows; features computed once per feature set."""
    rows, cache = [], {}
    for model_name, feat_name, make_features, make_tagger in jetace_models(quick):
        feats = make_features()
        t: dict[str, float] = {}
        if feat_name not in cache:
            with timed(t, "features"):
                X_tr = batched(feats, data["p4_train"], data["mask_train"])
            X_te = batched(feats, data["p4_test"], data["mask_test"])
            cache[feat_name] = (X_tr, X_te, t["features"])
        X_tr, X_te, t["features"] = cache[feat_name]
        with timed(t, "fit"):
            tagger = make_tagger().fit(X_tr, data["y_train"])
        head = tagger.as_module().eval()
        row = metrics_row(tagger.decision_function(X_te), data["y_test"])

        def score(p4, mask, feats=feats, head=head):
            return head(feats(p4, mask))

        rate = throughput(score, data["p4_test"], data["mask_test"], batch=INFERENCE["batch"])
        row.update(model=model_name, features=f"{feat_name}: {feats.num_features}",
                   parameters=sum(p.numel() for p in head.parameters()),
                   flops_per_jet=model_cost(feats, tagger, REPORT_MULTIPLICITY).flops_per_jet,
                   train_time_s=t["features"] + t["fit"], feature_time_s=t["features"],
                   fit_time_s=t["fit"], inference_jets_per_s=rate, inference=dict(INFERENCE),
                   tagger=type(tagger).__name__, tagger_params=_jsonable(tagger.get_params()))
        rows.append(row)
        _say(row)
    return rows


def add_costs(rows: list[dict[str, Any]], multiplicity: int = REPORT_MULTIPLICITY) -> None:
    """Fill ``flops_per_jet`` where a row has none: jetace rows by jetace.cost.model_cost
    of their feature module and tagger (rebuilt from the row's stored tagger settings),
    ParticleNet-Lite by the same operation count (benchmarks/cost.py); None for the rows
    computed in numpy or FastJet (EFPs, N-subjettiness, jet mass), which it cannot see."""
    from cost import peer_rows, shaped_tagger

    factories = {(m, f): make for m, f, make, _ in jetace_models(quick=False)}
    peers: dict[str, Any] = {}
    for row in rows:
        if "flops_per_jet" in row:
            continue
        key = (row["model"], row["features"].split(":")[0])
        if key in factories and "tagger" in row:
            feats = factories[key]()
            tagger = shaped_tagger(row["tagger"], row["tagger_params"], feats.num_features)
            row["flops_per_jet"] = model_cost(feats, tagger, multiplicity).flops_per_jet
        elif row["model"] == "ParticleNet-Lite":
            peers = peers or {r["model"]: r for r in peer_rows(multiplicity)}
            row["flops_per_jet"] = peers.get("ParticleNet-Lite", {}).get("flops_per_jet")
        else:
            row["flops_per_jet"] = None


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def _say(row: dict[str, Any]) -> None:
    print(f"  {row['model']:28s} {row['features']:28s} AUC {row['auc']:.4f}  "
          f"1/eB@0.3 {row['rejection_at_0.3']:.0f}  train {row.get('train_time_s', 0):.1f}s  "
          f"{row.get('inference_jets_per_s') or 0:.0f} jets/s", flush=True)


def run_efp(data: dict[str, Any], n_jobs: int = 2) -> list[dict[str, Any]]:
    """EFPs d<=5 and d<=6 + LDA (energyflow batch_compute on ``n_jobs`` processes for the
    tables; inference timed on one thread)."""
    big = EFPFeatures(6)
    t: dict[str, float] = {}
    with timed(t, "train6"):
        X6_tr = big.compute(data["p4_train"], data["mask_train"], n_jobs=n_jobs, desc="train")
    X6_te = big.compute(data["p4_test"], data["mask_test"], n_jobs=n_jobs, desc="test")
    rows = []
    for dmax in (5, 6):
        cols = big.columns(dmax)
        feats = EFPFeatures(dmax) if dmax < 6 else big
        # d<=5 tables are the d<=5 columns of the d<=6 ones; their time is measured on
        # the same jets through the one-thread throughput of EFPFeatures(5)
        X_tr, X_te = torch.from_numpy(X6_tr[:, cols]), torch.from_numpy(X6_te[:, cols])
        f: dict[str, float] = {}
        with timed(f, "fit"):
            tagger = jetace.LinearTagger(method="lda").fit(X_tr, data["y_train"])
        head = tagger.as_module().eval()
        row = metrics_row(tagger.decision_function(X_te), data["y_test"])

        def score(p4, mask, feats=feats, head=head):
            return head(feats(p4, mask))

        rate = throughput(score, data["p4_test"], data["mask_test"], batch=256, min_time=3.0,
                          max_jets=400)
        n_train = len(data["y_train"])
        feat_s = t["train6"] if dmax == 6 else n_train / feature_rate(feats, data)
        row.update(model="EFP + LDA", features=f"EFP d<={dmax}: {len(cols)}",
                   parameters=sum(p.numel() for p in head.parameters()),
                   train_time_s=feat_s + f["fit"], feature_time_s=feat_s, fit_time_s=f["fit"],
                   inference_jets_per_s=rate,
                   inference={**INFERENCE, "batch": 256, "dtype": "float64 (energyflow)"},
                   feature_note=(f"d<=6: energyflow batch_compute on {n_jobs} processes; "
                                 "d<=5: train jets / one-thread rate"))
        rows.append(row)
        _say(row)
    return rows


_RATES: dict[int, float] = {}


def feature_rate(feats: EFPFeatures, data: dict[str, Any]) -> float:
    """One-thread jets/s of an EFP set on the test jets (memoised per dmax)."""
    if feats.dmax not in _RATES:
        _RATES[feats.dmax] = throughput(feats, data["p4_test"], data["mask_test"], batch=256,
                                        min_time=3.0, max_jets=400)
    return _RATES[feats.dmax]


def run_substructure(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Jet mass alone, tau_32 cut, and mass + tau_21 + tau_32 BDT."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t: dict[str, float] = {}
        with timed(t, "obs"):
            tau_tr = nsubjettiness(data["jets_train"])
            m_tr = jet_mass(data["jets_train"])
        tau_te, m_te = nsubjettiness(data["jets_test"]), jet_mass(data["jets_test"])
        n_rate = min(2000, len(data["y_test"]))
        t0 = time.perf_counter()
        nsubjettiness(data["jets_test"][:n_rate])
        jet_mass(data["jets_test"][:n_rate])
        obs_rate = n_rate / (time.perf_counter() - t0)

    def ratios(tau, m):
        eps = 1e-12
        return np.stack([m, tau[:, 1] / (tau[:, 0] + eps), tau[:, 2] / (tau[:, 1] + eps)], 1)

    Z_tr, Z_te = ratios(tau_tr, m_tr), ratios(tau_te, m_te)
    y_tr, y_te = data["y_train"], data["y_test"]
    inf = {"device": "cpu", "threads": 1, "batch": n_rate, "dtype": "float64",
           "includes": "FastJet exclusive-kT clustering + tau_N (observables)"}
    rows = []
    f: dict[str, float] = {}
    with timed(f, "mass"):
        hist = HistRatio().fit(Z_tr[:, 0], y_tr)
    row = metrics_row(hist.decision_function(Z_te[:, 0]), y_te)
    row.update(model="jet mass (binned likelihood ratio)", features="m_jet",
               parameters=hist.num_parameters_, train_time_s=t["obs"] + f["mass"],
               inference_jets_per_s=obs_rate, inference=inf)
    rows.append(row)
    row = metrics_row(-Z_te[:, 2], y_te)
    row.update(model="tau_32 cut", features="tau_32 (exclusive kT axes)", parameters=1,
               train_time_s=t["obs"], inference_jets_per_s=obs_rate, inference=inf)
    rows.append(row)
    with timed(f, "bdt"):
        bdt = HistGradientBoostingClassifier(max_iter=200, max_leaf_nodes=15, learning_rate=0.1,
                                             random_state=0).fit(Z_tr, y_tr)
    row = metrics_row(bdt.decision_function(Z_te), y_te)
    n_nodes = sum(len(p.nodes) for stage in bdt._predictors for p in stage)
    row.update(model="BDT (200 x 15 leaves)", features="m, tau_21, tau_32",
               parameters=n_nodes, train_time_s=t["obs"] + f["bdt"], inference_jets_per_s=obs_rate,
               inference=inf)
    rows.append(row)
    for r in rows:
        _say(r)
    return rows


def run_unsupervised() -> list[dict[str, Any]]:
    """The best unsupervised entry of benchmarks/results/unsupervised.json (written by
    benchmarks/unsupervised.py: {"results": {features: [{method, kind, auc, ...}]}}),
    supervised reference entries skipped; [] when the file is absent."""
    data = read_json("unsupervised")
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        return []
    candidates = [(feat, r) for feat, entries in data["results"].items()
                  for r in entries if isinstance(r, dict) and isinstance(r.get("auc"), float)
                  and "supervised" != str(r.get("kind", "")).strip()]
    if not candidates:
        return []
    feat, best = max(candidates, key=lambda fr: fr[1]["auc"])
    row = {k: best.get(k) for k in ("auc", "accuracy", "rejection_at_0.3", "rejection_at_0.5")}
    row.update(model=f"{best.get('method', 'anomaly')} [{best.get('kind', 'unsupervised')}]",
               features=feat, train_time_s=best.get("seconds"),
               source="results/unsupervised.json (its own split: " +
               str(data.get("setup", {}).get("train", "?")) + ")")
    return [row]


def feature_throughput(data: dict[str, Any], efp_rate: dict[int, float]) -> dict[str, Any]:
    """One-thread feature throughput (jets/s) of bip, lorentz and EFP on the test jets."""
    out = {}
    for name, make in (("bip(3,6)", lambda: jetace.BIPFeatures(3, 6)),
                       ("bip(4,7)", lambda: jetace.BIPFeatures(4, 7)),
                       ("lorentz(4)", lambda: jetace.LorentzACEFeatures()),
                       ("lorentz IRC-safe", lambda: jetace.LorentzACEFeatures(irc_safe=True))):
        out[name] = {"jets_per_s": throughput(make(), data["p4_test"], data["mask_test"],
                                              batch=1024), "batch": 1024, "dtype": "float32"}
    for dmax, rate in efp_rate.items():
        out[f"EFP d<={dmax}"] = {"jets_per_s": rate, "batch": 256, "dtype": "float64"}
    for k, v in out.items():
        print(f"  features {k:18s} {v['jets_per_s']:10.0f} jets/s (1 thread)")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = suite_parser(__doc__, "fewer jets and a 3 min ParticleNet budget: the whole suite "
                               "in under 10 minutes on 2 cores")
    ap.add_argument("--max-jets", type=int, default=None,
                    help="jets read per class (default: all; 3000 with --quick)")
    ap.add_argument("--pn-budget-minutes", type=float, default=None,
                    help="ParticleNet-Lite training budget (default 20; 3 with --quick; 0 skips)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["jetace", "efp", "substructure",
                                                              "particlenet", "unsupervised"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--table-only", action="store_true", help="re-read unsupervised.json into "
                    "results/suite.json, add missing FLOPs per jet and rewrite "
                    "results/table.md, training nothing")
    args = ap.parse_args(argv)
    if args.table_only:
        return rewrite_table()
    max_jets = args.max_jets or (3000 if args.quick else None)
    pn_budget = args.pn_budget_minutes
    if pn_budget is None:
        pn_budget = 3.0 if args.quick else 20.0

    t_start = time.perf_counter()
    info = machine()
    print(f"jetace benchmark suite on {info['cpu']} ({info['cores']} cores, load "
          f"{info['load_1min_at_start']})", flush=True)
    split = load_split(args.files_signal, args.files_background, max_jets, seed=args.seed)
    p4_tr, m_tr = padded(split.train)
    p4_te, m_te = padded(split.test)
    data = {"jets_train": split.train, "jets_test": split.test, "y_train": split.y_train,
            "y_test": split.y_test, "p4_train": p4_tr, "mask_train": m_tr, "p4_test": p4_te,
            "mask_test": m_te}
    print(f"  {len(split.y_train)} training jets, {len(split.y_test)} test jets", flush=True)

    stages = [s for s in ("jetace", "efp", "substructure", "particlenet", "unsupervised")
              if s not in args.skip]
    rows: list[dict[str, Any]] = []
    for stage in tqdm(stages, desc="suite", unit="stage"):
        if stage == "jetace":
            rows += run_jetace(data, args.quick)
        elif stage == "efp":
            rows += run_efp(data)
        elif stage == "substructure":
            rows += run_substructure(data)
        elif stage == "particlenet" and pn_budget > 0:
            from particlenet import train_and_evaluate
            row = train_and_evaluate(p4_tr, m_tr, split.y_train, p4_te, m_te, split.y_test,
                                     "pnlite", pn_budget, args.seed)
            rows.append(row)
            _say(row)
        elif stage == "unsupervised":
            rows += run_unsupervised()
    add_costs(rows)
    efp_rate = {d: feature_rate(EFPFeatures(d), data) for d in (5, 6)} if "efp" in stages else {}
    feats = feature_throughput(data, efp_rate)

    result = {
        "command": "python benchmarks/run_all.py" + (" --quick" if args.quick else ""),
        "machine": info,
        "settings": {"quick": args.quick, "max_jets_per_class": max_jets, "seed": args.seed,
                     "test_fraction": 0.2, "pn_budget_minutes": pn_budget,
                     "linear_recipe": LINEAR, "inference": INFERENCE,
                     "particle_transformer": "left out: see benchmarks/README.md"},
        "split": split.describe(),
        "rows": rows,
        "feature_throughput": feats,
        "ratios": ratios(rows, feats),
        "wall_time_s": time.perf_counter() - t_start,
    }
    write_json("suite", result)
    print(write_table(result))
    for k, v in result["ratios"].items():
        print(f"  {k}: {v}")
    return result


def write_table(result: dict[str, Any]) -> str:
    """Write results/table.md from a suite result; returns the table."""
    split, info = result["split"], result["machine"]
    table = markdown_table(result["rows"])
    header = (f"Test jets: {split['n_test']} ({split['n_test_signal']} signal); training jets: "
              f"{split['n_train']}. Inference: CPU ({info['cpu']}), 1 thread, float32, batch "
              f"1024 (EFP 256, ParticleNet 256), features included. Produced by "
              f"`{result['command']}` in {result['wall_time_s'] / 60:.1f} min (load "
              f"{info['load_1min_at_start']} on {info['cores']} cores). Unsupervised rows come "
              f"from results/unsupervised.json (own split, background-only training). "
              f"MFLOPs per jet: jetace.cost.count_flops at {REPORT_MULTIPLICITY} constituents, "
              "features included (every arithmetic torch operation; ParticleNet-Lite "
              "counted the same way on its 100 slots); '-' for rows computed in numpy or "
              "FastJet, which that count cannot see.\n\n")
    (RESULTS / "table.md").write_text(header + table)
    return table


def rewrite_table() -> dict[str, Any]:
    """--table-only: refresh the unsupervised row of results/suite.json and the table."""
    result = read_json("suite")
    if result is None:
        raise SystemExit("no benchmarks/results/suite.json yet: run the suite first")
    result.setdefault("command", "python benchmarks/run_all.py --quick"
                      if result["settings"].get("quick") else "python benchmarks/run_all.py")
    result["rows"] = [r for r in result["rows"] if "source" not in r] + run_unsupervised()
    add_costs(result["rows"])
    write_json("suite", result)
    print(write_table(result))
    return result


def ratios(rows: list[dict[str, Any]], feats: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets: bip + linear against ParticleNet, bip against EFP d<=5."""
    def find(model, feature):
        return next((r for r in rows if r["model"].startswith(model)
                     and r["features"].startswith(feature)), None)

    out: dict[str, Any] = {}
    pn = find("ParticleNet", "")
    for feat in ("bip(3,6)", "bip(4,7)"):
        lin = find("jetace LDA", feat)
        if lin is None or pn is None:
            continue
        out[f"{feat}+linear vs ParticleNet-Lite"] = {
            "auc_ratio": lin["auc"] / pn["auc"],
            "parameter_ratio": pn["parameters"] / lin["parameters"],
            "training_time_ratio": pn["train_time_s"] / lin["train_time_s"],
            "inference_throughput_ratio": lin["inference_jets_per_s"] / pn["inference_jets_per_s"],
        }
    if "EFP d<=5" in feats:
        for feat in ("bip(3,6)", "bip(4,7)"):
            out[f"{feat} vs EFP d<=5 feature throughput"] = (
                feats[feat]["jets_per_s"] / feats["EFP d<=5"]["jets_per_s"])
    return out


if __name__ == "__main__":
    main()
