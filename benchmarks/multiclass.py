"""JetClass-style multi-class tagging with and without species channels.

Reads one file per class (made by ``jetace generate``: qcd hbb hcc hgg h4q z w top by
default, from ``--data DIR``), splits each class 80/20 with a fixed seed, computes
mirrored BIP features kinematics-only and with species channels, trains the softmax
LinearTagger and reports the accuracy and, per class, the one-vs-QCD rejection 1/eps_B
at 50% signal efficiency (score log p_class - log p_QCD, as the JetClass papers report).

    python benchmarks/multiclass.py --data DIR [--max-jets 5000] [--name multiclass]

writes benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from common import write_json
from species import features

import jetace
from jetace.metrics import rejection_at

CLASSES = ("qcd", "hbb", "hcc", "hgg", "h4q", "z", "w", "top")
SETTINGS = {
    "bip(3,6)m kinematic": {"order": 3, "degree": 6, "mirror": True},
    "bip(3,6)m species reduced r=3": {"order": 3, "degree": 6, "mirror": True,
                                      "species": "default", "rank": 3},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with <class>.root files")
    parser.add_argument("--classes", nargs="+", default=list(CLASSES))
    parser.add_argument("--max-jets", type=int, default=5000, help="jets per class")
    parser.add_argument("--name", default="multiclass")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    parts = {"train": ([], []), "test": ([], [])}
    for k, name in enumerate(args.classes):
        jets = jetace.read_jets(str(Path(args.data) / f"{name}.root"), max_jets=args.max_jets)
        perm = rng.permutation(len(jets))
        n_test = len(jets) // 5
        for split, idx in (("test", perm[:n_test]), ("train", perm[n_test:])):
            parts[split][0].append(jets[np.sort(idx)])
            parts[split][1].append(np.full(len(idx), k))
    import awkward as ak

    data = {s: (ak.concatenate(j), np.concatenate(y)) for s, (j, y) in parts.items()}
    rows = []
    for label, spec in SETTINGS.items():
        module = jetace.BIPFeatures(**spec)
        t0 = time.perf_counter()
        x_tr, x_te = features(module, data["train"][0]), features(module, data["test"][0])
        tagger = jetace.LinearTagger().fit(x_tr, data["train"][1])
        logp = torch.log_softmax(torch.as_tensor(tagger.decision_function(x_te)), 1).numpy()
        y = data["test"][1]
        row = {"setting": label, "features": module.num_features,
               "accuracy": float((logp.argmax(1) == y).mean()),
               "seconds": time.perf_counter() - t0}
        for k, name in enumerate(args.classes[1:], start=1):
            sel = (y == k) | (y == 0)
            row[f"rejection_{name}_at_0.5"] = rejection_at(logp[sel, k] - logp[sel, 0],
                                                           y[sel] == k, 0.5)
        rows.append(row)
        print(label, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    write_json(args.name, {"classes": args.classes, "n_train": len(data["train"][1]),
                           "n_test": len(data["test"][1]), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
