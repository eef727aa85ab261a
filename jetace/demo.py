"""``jetace demo``: the main job on the built-in sample, start to finish in about a minute.

The sample is shipped in the package (``jetace/data``, 4,000 top and 4,000 QCD jets
made by ``jetace generate`` with fixed seeds, see its README). The demo computes BIP
features once, trains a linear tagger and a small MLP on a seeded training split,
evaluates both on the held-out jets, prints a table and writes a ROC plot, a JSON
summary and the linear model file into the output folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["run_demo", "COST_MULTIPLICITY"]

COST_MULTIPLICITY = 60  #: constituents per jet at which the demo states FLOPs per jet


def run_demo(output: str | Path = "jetace-demo-output", *, order: int = 4, degree: int = 7,
             mirror: bool = True, test_fraction: float = 0.3, max_jets: int | None = None,
             seed: int = 0, device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """Run the demo; returns the summary written to ``output/summary.json``.

    The table reports, on the held-out jets, accuracy, ROC AUC and background rejection
    1/eps_B at signal efficiencies 0.3 and 0.5, with training time per model and the
    feature throughput (reading included) of this run. ``max_jets`` limits the jets
    read per class (default: all 4,000). ``mirror``: mirror-symmetrised BIP features, as
    ``jetace train`` uses by default.
    """
    from jetace.cost import model_cost
    from jetace.features import feature_module
    from jetace.generate import demo_files
    from jetace.metrics import binary_metrics, plot_roc
    from jetace.model_file import JetaceModel
    from jetace.numerics import split_indices, to_numpy
    from jetace.run.options import resolve_device
    from jetace.taggers.linear import LinearTagger
    from jetace.taggers.mlp import MLPTagger
    from jetace.training import collect_features

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    top, qcd = demo_files()
    spec = {"family": "bip", "order": order, "degree": degree, "mirror": mirror,
            "max_particles": 128}
    dev = resolve_device(device)
    t0 = time.perf_counter()
    X, y = collect_features([("qcd", [str(qcd)], 0), ("top", [str(top)], 1)], spec,
                            device=dev, max_jets=max_jets, progress=progress)
    feature_seconds = time.perf_counter() - t0
    train, test = split_indices(len(y), test_fraction, seed)
    tr, te = (torch.as_tensor(i, device=X.device) for i in (train, test))

    rows, curves = [], {}
    features, _ = feature_module(spec)
    for name, tagger in [("linear", LinearTagger()), ("mlp", MLPTagger(seed=seed))]:
        t1 = time.perf_counter()
        tagger.fit(X[tr], y[train])
        seconds = time.perf_counter() - t1
        scores = to_numpy(tagger.signal_score(X[te]))
        label = f"BIP({order},{degree}){' mirror' if mirror else ''} + {name}"
        cost = model_cost(features, tagger, COST_MULTIPLICITY)
        rows.append({"model": label, "train_seconds": seconds,
                     "parameters": cost.parameters, "flops_per_jet": cost.flops_per_jet,
                     **binary_metrics(scores, y[test])})
        curves[rows[-1]["model"]] = (scores, y[test])
        if name == "linear":
            JetaceModel(features, tagger, ["qcd", "top"]).save(out / "demo_linear.model")

    summary = {"n_train": len(train), "n_test": len(test), "num_features": int(X.shape[1]),
               "device": str(X.device), "feature_seconds": feature_seconds,
               "feature_jets_per_s": len(y) / feature_seconds, "models": rows}
    plot_roc(curves, str(out / "roc.png"))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(format_table(summary))
    print(f"\nwrote {out / 'roc.png'}, {out / 'summary.json'} and {out / 'demo_linear.model'}")
    return summary


def format_table(summary: dict[str, Any]) -> str:
    """The demo's result table as fixed-width text."""
    width = max([len("model")] + [len(r["model"]) for r in summary["models"]])
    lines = [f"top vs QCD, {summary['n_train']} training / {summary['n_test']} held-out jets, "
             f"{summary['num_features']} features on {summary['device']} "
             f"({summary['feature_jets_per_s']:,.0f} jets/s, reading included)", "",
             f"{'model':{width}s} {'accuracy':>8s} {'AUC':>7s} {'1/eB@0.3':>9s} "
             f"{'1/eB@0.5':>9s} {'params':>7s} {'MFLOP/jet':>9s} {'train s':>8s}"]
    for r in summary["models"]:
        lines.append(f"{r['model']:{width}s} {r['accuracy']:8.4f} {r['auc']:7.4f} "
                     f"{r['rejection_at_0.3']:9.1f} {r['rejection_at_0.5']:9.1f} "
                     f"{r['parameters']:7d} {r['flops_per_jet'] / 1e6:9.3f} "
                     f"{r['train_seconds']:8.2f}")
    lines.append(f"(FLOPs per jet of features + tagger at {COST_MULTIPLICITY} constituents, "
                 "jetace.cost)")
    return "\n".join(lines)
