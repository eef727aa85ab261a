"""Throughput of BIPFeatures next to the rate at which uproot alone reads the same jets.

    python benchmarks/feature_throughput.py [FILES ...] [--max-jets N] [--threads T]

Defaults to ../shared/data/{top,qcd}_train.root beside the repository. Prints a table
and writes benchmarks/results/feature_throughput.json. Rates are jets per second:

* ``uproot read``: uproot.iterate of the four constituent branches (decompression and
  jagged arrays, no jetace code);
* ``read_jets + to_padded``: jetace's reader and padding to 128 constituents;
* ``BIP(o,d) compute``: features of already padded jets on the device, batch 1024;
* ``BIP(o,d) end to end``: iter_features from the ROOT files (reading included);
  ``+ linear``: also a linear head on the features (what scoring with a linear model does).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import uproot

import jetace
from jetace.extract import iter_features

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILES = [ROOT.parent / "shared" / "data" / f for f in ("top_train.root", "qcd_train.root")]
BRANCHES = ["part_px", "part_py", "part_pz", "part_energy"]


def best_rate(fn, n_jets: int, repeat: int = 3) -> float:
    """Jets per second of the fastest of ``repeat`` runs of ``fn()``."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n_jets / min(times)


def compute_rate(module: torch.nn.Module, p4: torch.Tensor, mask: torch.Tensor,
                 batch: int) -> float:
    def run():
        with torch.no_grad():
            for i in range(0, len(p4), batch):
                module(p4[i:i + batch], mask[i:i + batch])
        if p4.is_cuda:
            torch.cuda.synchronize()

    run()  # warm-up
    return best_rate(run, len(p4))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", default=[str(f) for f in DEFAULT_FILES])
    ap.add_argument("--max-jets", type=int, default=20000, help="jets used for compute rates")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--settings", default="3,6;4,7", help="BIP (order,degree) pairs, ';'-separated")
    ap.add_argument("--no-lorentz", action="store_true", help="skip the lorentz family rows")
    ap.add_argument("--output", default=str(ROOT / "benchmarks" / "results" /
                                             "feature_throughput.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = [tuple(int(v) for v in s.split(",")) for s in args.settings.split(";")]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    n_total = sum(uproot.open(f)["tree"].num_entries for f in args.files)

    rows = []

    def read_all():
        for _ in uproot.iterate([f"{f}:tree" for f in args.files], BRANCHES, step_size="100 MB"):
            pass

    rows.append({"what": "uproot read", "device": "cpu", "dtype": "-",
                 "jets_per_s": best_rate(read_all, n_total), "n_jets": n_total})

    def read_pad():
        for chunk in jetace.iterate_jets(args.files):
            jetace.to_padded(chunk, max_particles=128)

    rows.append({"what": "read_jets + to_padded", "device": "cpu", "dtype": "float32",
                 "jets_per_s": best_rate(read_pad, n_total), "n_jets": n_total})

    modules = {f"BIP({o},{d})": jetace.BIPFeatures(o, d) for o, d in settings}
    if not args.no_lorentz:
        modules["lorentz default"] = jetace.LorentzACEFeatures()
        modules["lorentz IRC-safe"] = jetace.LorentzACEFeatures(irc_safe=True)
    jets = jetace.read_jets(args.files, max_jets=args.max_jets)
    for device in devices:
        p4, mask = jetace.to_padded(jets, max_particles=128, device=device, dtype=torch.float32)
        for name, f in modules.items():
            rows.append({"what": f"{name} compute", "device": device,
                         "dtype": "float32", "batch": args.batch_size,
                         "num_features": f.num_features, "n_jets": len(p4),
                         "jets_per_s": compute_rate(f.to(device), p4, mask, args.batch_size)})
    for order, degree in settings:
        spec = {"family": "bip", "order": order, "degree": degree, "max_particles": 128}

        head = torch.nn.Linear(modules[f"BIP({order},{degree})"].num_features, 1)

        def end_to_end(spec=spec, head=None):
            for _, feats in iter_features(args.files, spec, device="cpu", progress=False):
                if head is not None:
                    with torch.no_grad():
                        head(feats)

        for what, h in (("end to end", None), ("+ linear end to end", head)):
            rows.append({"what": f"BIP({order},{degree}) {what}", "device": "cpu",
                         "dtype": "float32", "batch": 4096, "n_jets": n_total,
                         "jets_per_s": best_rate(lambda h=h: end_to_end(head=h), n_total,
                                                 repeat=2)})

    result = {"machine": {"cpu": platform.processor() or platform.machine(),
                          "torch_threads": torch.get_num_threads(),
                          "cuda": torch.cuda.get_device_name() if torch.cuda.is_available()
                          else None, "torch": torch.__version__},
              "files": [str(f) for f in args.files], "rows": rows}
    print(f"{'what':34s} {'device':6s} {'dtype':8s} {'jets/s':>12s}")
    for r in rows:
        print(f"{r['what']:34s} {r['device']:6s} {r['dtype']:8s} {r['jets_per_s']:12,.0f}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
