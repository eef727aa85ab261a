"""jetace's default taggers on the Top Quark Tagging Reference Dataset.

Given the dataset's three files (train.h5, val.h5, test.h5: Kasieczka et al.,
arXiv:1902.09914; 1.2M / 400k / 400k jets in the pandas HDF5 layout that
:mod:`jetace.formats` reads), trains the default linear and MLP taggers of
``jetace train`` (mirror-symmetrised BIP(4,7) features of the 128 hardest constituents)
on the training file, or on its first ``--max-jets`` jets, and reports on the test file
accuracy, ROC AUC and background rejection 1/eps_B at signal efficiencies 0.3 and 0.5,
with the training time (features and fit) and the scoring throughput (jets/s: padded
constituents in, scores out, on the stated device and threads; file reading not
included), beside the published figures of other taggers for reference. The
validation file, when present, gives the same metrics for a check of the fit.

    python benchmarks/top_tagging_reference.py --data DIR [--max-jets 200000]

Writes the table as markdown to stdout and everything as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import jetace
from jetace.metrics import binary_metrics
from jetace.presets import SUPERVISED_SPEC
from jetace.scoring import score
from jetace.training import collect_features

#: published figures (AUC, 1/eps_B at eps_S = 0.3, trainable parameters where given):
#: the community comparison (arXiv:1902.09914) and later taggers on the same dataset
PUBLISHED = [
    {"model": "ParticleNet", "auc": 0.9858, "rejection_at_0.3": 1615, "parameters": 498_000},
    {"model": "ParticleNet-Lite", "auc": 0.9844, "rejection_at_0.3": 1262,
     "parameters": 26_000},
    {"model": "PFN", "auc": 0.9819, "rejection_at_0.3": 888, "parameters": 82_000},
    {"model": "EFP linear", "auc": 0.9803, "rejection_at_0.3": 384, "parameters": 1_000},
    {"model": "L-GATr", "auc": 0.9870, "rejection_at_0.3": 2240},
    {"model": "PELICAN", "auc": 0.9870, "rejection_at_0.3": 2250},
    {"model": "PELICAN (1k parameters)", "auc": 0.9835, "rejection_at_0.3": 1145,
     "parameters": 1_000},
]
LABELS = ["label_QCD", "label_Tbqq"]  # class 0 = QCD, class 1 = top
SPLITS = ("train", "val", "test")


def _file(data: Path, split: str) -> Path | None:
    for ext in (".h5", ".hdf5"):
        if (data / f"{split}{ext}").is_file():
            return data / f"{split}{ext}"
    return None


def _features(path: Path, max_jets: int | None, device: torch.device, spec: dict[str, Any]
              ) -> tuple[torch.Tensor, np.ndarray, float]:
    t0 = time.perf_counter()
    X, y = collect_features([(path.stem, [str(path)], 0)], spec, labels=LABELS,
                            max_jets=max_jets, device=device, progress=False)
    return X, y, time.perf_counter() - t0


def _parameters(tagger) -> int:
    if hasattr(tagger, "coef_"):
        return int(tagger.coef_.numel() + tagger.intercept_.numel())
    return int(sum(p.numel() for p in tagger.net_.parameters()))


def _throughput(model, path: Path, n: int, device: torch.device) -> float:
    """Jets/s of features + tagger on padded constituents of ``n`` test jets."""
    jets = jetace.read_jets(path, max_jets=n)
    p4, mask = jetace.to_padded(jets, model.max_particles, device=device)
    with torch.no_grad():
        score(model, p4[:256], mask[:256])  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for i in range(0, len(jets), 4096):
            score(model, p4[i:i + 4096], mask[i:i + 4096])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return len(jets) / (time.perf_counter() - t0)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float) and (math.isinf(v) or v >= 100):
        return f"{v:,.0f}" if math.isfinite(v) else "inf"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def table(rows: list[dict[str, Any]]) -> str:
    """The comparison in the layout of arXiv:1902.09914 (AUC, accuracy, 1/eps_B, size),
    with jetace's timing columns."""
    head = ("| tagger | AUC | accuracy | 1/eps_B @ eps_S=0.3 | 1/eps_B @ eps_S=0.5 "
            "| parameters | training jets | training time [s] | scoring [jets/s] |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append("| " + " | ".join([
            r["model"], _fmt(r.get("auc")), _fmt(r.get("accuracy")),
            _fmt(r.get("rejection_at_0.3"), 0), _fmt(r.get("rejection_at_0.5"), 0),
            _fmt(r.get("parameters")), _fmt(r.get("n_train")),
            _fmt(r.get("train_time_s"), 1), _fmt(r.get("jets_per_s"), 0)]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path,
                    help="directory with train.h5, val.h5 (optional) and test.h5")
    ap.add_argument("--max-jets", type=int, default=None,
                    help="train on the first N jets of train.h5 (default: all)")
    ap.add_argument("--max-test-jets", type=int, default=None,
                    help="evaluate on the first N jets of test.h5 (default: all)")
    ap.add_argument("--models", default="linear,mlp", help="comma-separated: linear, mlp")
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).parent / "results" / "top_tagging_reference.json",
                    help="JSON file for the results")
    args = ap.parse_args(argv)
    from jetace.features import features_from_spec
    from jetace.model_file import JetaceModel
    from jetace.run.options import resolve_device
    from jetace.taggers.linear import LinearTagger
    from jetace.taggers.mlp import MLPTagger

    if args.threads:
        torch.set_num_threads(args.threads)
    files = {s: _file(args.data, s) for s in SPLITS}
    for s in ("train", "test"):
        if files[s] is None:
            sys.exit(f"top_tagging_reference: no {s}.h5 in {args.data}")
    device = resolve_device(args.device)
    spec = dict(SUPERVISED_SPEC)
    X, y, t_feat = _features(files["train"], args.max_jets, device, spec)
    Xt, yt, _ = _features(files["test"], args.max_test_jets, device, spec)
    val = _features(files["val"], args.max_test_jets, device, spec) if files["val"] else None
    makers = {"linear": LinearTagger, "mlp": MLPTagger}
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name not in makers:
            sys.exit(f"top_tagging_reference: unknown model {name!r} (linear, mlp)")
        t0 = time.perf_counter()
        tagger = makers[name]().fit(X, y)
        t_fit = time.perf_counter() - t0
        row: dict[str, Any] = {"model": f"jetace {name} (BIP(4,7) mirrored, "
                                        f"{X.shape[1]} features)"}
        row.update(binary_metrics(tagger.signal_score(Xt).cpu().numpy(), yt))
        if val is not None:
            row["validation"] = binary_metrics(tagger.signal_score(val[0]).cpu().numpy(),
                                               val[1])
        model = JetaceModel(features_from_spec(spec), tagger, ["background", "signal"],
                            max_particles=spec["max_particles"])
        row.update({"parameters": _parameters(tagger), "n_train": int(len(y)),
                    "n_test": int(len(yt)), "feature_time_s": t_feat, "fit_time_s": t_fit,
                    "train_time_s": t_feat + t_fit,
                    "jets_per_s": _throughput(model, files["test"], min(len(yt), 20000),
                                              device)})
        rows.append(row)
    result = {"dataset": "Top Quark Tagging Reference Dataset (arXiv:1902.09914)",
              "files": {s: str(f) for s, f in files.items() if f},
              "device": str(device), "threads": torch.get_num_threads(),
              "scoring": "features + tagger on padded constituents, float32, batches of "
                         "4096, file reading not included",
              "jetace": rows, "published": PUBLISHED}
    print(table(rows + PUBLISHED))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
