"""Trainable parameters and FLOPs per jet of jetace models and of peer networks.

Every row is counted the same way, by :func:`jetace.cost.count_flops` (every arithmetic
aten operation: elementwise 1 per element, fused multiply-add 2, matrix products and
convolutions 2 m n k, reductions 1 per input element; data movement free), on synthetic
jets of exactly ``--multiplicity`` constituents (default 60, about the mean of the top
and QCD samples; ParticleNet always sees its 100 padded slots). For the BIP rows the
analytic count from the plan (:func:`jetace.cost.bip_flops`) is given beside it; torch's
FlopCounterMode (matrix products only) is listed for comparison. Taggers are fitted on
random features for their shapes only: the counts do not depend on the fit.

    python benchmarks/cost.py [--multiplicity 60]

writes benchmarks/results/cost.json and prints a markdown table.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import write_json
from torch.utils.flop_counter import FlopCounterMode

import jetace
from jetace.cost import count_flops, model_cost, synthetic_jets, trainable_parameters

JETACE = {
    "linear, bip(3,6) mirror": ({"order": 3, "degree": 6, "mirror": True}, "linear"),
    "linear, bip(4,7) mirror": ({"order": 4, "degree": 7, "mirror": True}, "linear"),
    "linear, bip(4,8) mirror": ({"order": 4, "degree": 8, "mirror": True}, "linear"),
    "linear, bip(3,6) mirror, species r=3": ({"order": 3, "degree": 6, "mirror": True,
                                              "species": "default", "rank": 3}, "linear"),
    "linear, bip(4,6) mirror, lepton r=2": ({"order": 4, "degree": 6, "mirror": True,
                                             "species": ["lepton"], "rank": 2}, "linear"),
    "MLP (default), bip(4,7) mirror": ({"order": 4, "degree": 7, "mirror": True}, "mlp"),
    "MLP (default), bip(4,6) mirror, lepton r=2": ({"order": 4, "degree": 6, "mirror": True,
                                                    "species": ["lepton"], "rank": 2}, "mlp"),
    "MLP ensemble (3 x (128, 64), the earlier default), bip(4,7) mirror": (
        {"order": 4, "degree": 7, "mirror": True}, "mlp-ensemble"),
}


def shaped_tagger(tagger: str, params: dict, n_features: int):
    """The jetace tagger class ``tagger`` with ``params``, fitted for one epoch on random
    features of width ``n_features``: its shape, parameters and FLOPs are those of the
    real fit (they do not depend on the data)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, n_features)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    cls = getattr(jetace, tagger)
    known = cls().get_params()
    renamed = {"transform": "scaling"}  # names of settings stored by earlier versions
    params = {renamed.get(k, k): v for k, v in params.items() if renamed.get(k, k) in known}
    if "max_epochs" in known:
        params["max_epochs"] = 1
    return cls(**params).fit(x, y)


def _fitted(kind: str, n_features: int):
    if kind == "linear":
        return shaped_tagger("LinearTagger", {}, n_features)
    from jetace.taggers.mlp import ENSEMBLE

    return shaped_tagger("MLPTagger", ENSEMBLE if kind == "mlp-ensemble" else {}, n_features)


def jetace_rows(multiplicity: int) -> list[dict]:
    rows = []
    for name, (spec, kind) in JETACE.items():
        f = jetace.BIPFeatures(**spec)
        cost = model_cost(f, _fitted(kind, f.num_features), multiplicity)
        rows.append({"model": "jetace " + name, "features": f.num_features,
                     "parameters": cost.parameters, "flops_per_jet": cost.flops_per_jet,
                     "analytic_feature_flops": cost.analytic_feature_flops,
                     "classifier_flops": cost.classifier_flops})
    lor = jetace.LorentzACEFeatures()
    cost = model_cost(lor, _fitted("linear", lor.num_features), multiplicity)
    rows.append({"model": "jetace linear, lorentz(4)", "features": lor.num_features,
                 "parameters": cost.parameters, "flops_per_jet": cost.flops_per_jet,
                 "classifier_flops": cost.classifier_flops})
    return rows


def peer_rows(multiplicity: int) -> list[dict]:
    try:
        from particlenet import MAX_PARTICLES, NAMES, TaggerNet
    except ImportError as exc:  # weaver-core not installed (see benchmarks/README.md)
        print(f"peers skipped: {exc}")
        return []
    rows = []
    p4, mask = synthetic_jets(8, multiplicity, torch.float32)
    slots = max(MAX_PARTICLES, multiplicity)  # the networks work on all their padded slots
    p4 = torch.nn.functional.pad(p4, (0, 0, 0, slots - multiplicity))
    mask = torch.nn.functional.pad(mask, (0, slots - multiplicity))
    for kind in ("pnlite", "pn"):
        net = TaggerNet(kind).eval()
        _, count = count_flops(net, p4, mask)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            net(p4, mask)
        rows.append({"model": NAMES[kind], "features": "100 constituents x 7",
                     "parameters": trainable_parameters(net),
                     "flops_per_jet": count.total / 8,
                     "flop_counter_mode_per_jet": fc.get_total_flops() / 8})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--multiplicity", type=int, default=60)
    args = parser.parse_args(argv)
    rows = jetace_rows(args.multiplicity) + peer_rows(args.multiplicity)
    ref = {r["model"]: r["flops_per_jet"] for r in rows}
    for r in rows:
        for peer in ("ParticleNet-Lite", "ParticleNet"):
            if peer in ref and r["model"].startswith("jetace"):
                r[f"flops_vs_{peer}"] = r["flops_per_jet"] / ref[peer]
    write_json("cost", {"multiplicity": args.multiplicity, "rows": rows})
    print(table(rows))
    return 0


def table(rows: list[dict]) -> str:
    """Markdown: model, features, parameters, FLOPs per jet and the ratios to the peers."""
    lines = ["| model | features | parameters | FLOPs per jet | vs ParticleNet-Lite "
             "| vs ParticleNet |", "|---|---|---|---|---|---|"]
    for r in rows:
        ratios = [f"1/{1 / r[k]:,.0f}" if k in r else "" for k in
                  ("flops_vs_ParticleNet-Lite", "flops_vs_ParticleNet")]
        lines.append(f"| {r['model']} | {r['features']} | {r['parameters']:,} | "
                     f"{r['flops_per_jet'] / 1e6:.3g} M | {ratios[0]} | {ratios[1]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
