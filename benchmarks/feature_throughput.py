"""Throughput of BIPFeatures next to the rate at which uproot alone reads the same jets.

    python benchmarks/feature_throughput.py [FILES ...] [--max-jets N] [--threads T]
        [--settings "3,6;4,7m"] [--workers 1,2] [--repeat-files K]

Defaults to ../shared/data/{top,qcd}_train.root beside the repository. Prints a table
and writes benchmarks/results/feature_throughput.json. Rates are jets per second:

* ``uproot read``: uproot.iterate of the four constituent branches (decompression and
  jagged arrays, no jetace code);
* ``read_jets + to_padded``: jetace's reader and padding to 128 constituents;
* ``BIP(o,d) compute``: features of already padded jets on the device, batch 1024;
* ``BIP(o,d) end to end``: iter_features from the ROOT files (reading included);
  ``+ linear``: also a linear head on the features, in one process and with ``W proc``
  worker processes (``--workers``; the head runs in the workers, as in ``jetace predict
  --workers W``); ``linear fused``: the same map folded into the features
  (:class:`jetace.features.fused.FusedLinear`, what scoring with a linear model runs; the
  feature matrix is never formed). ``m`` marks mirror-symmetrised features.
  ``--repeat-files K`` reads the file list K times (larger inputs amortise the start).
The ``/uproot`` column is each rate over uproot's at the start of the run; ``/beside``
(end-to-end rows) over uproot's timed again just before the row, which follows the
host's drift over a long run.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import time
from pathlib import Path

import torch
import uproot

import jetace
from jetace.features.fused import FusedLinear
from jetace.run.features import iter_features

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


def linear_head(weight: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    return feats @ weight


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
    ap.add_argument("--settings", default="3,6;4,7;3,6m;4,7m",
                    help="BIP (order,degree) pairs, ';'-separated; a trailing m: mirrored")
    ap.add_argument("--workers", default="1,2", help="worker processes for the end-to-end rows")
    ap.add_argument("--repeat-files", type=int, default=1, help="read the file list K times")
    ap.add_argument("--no-lorentz", action="store_true", help="skip the lorentz family rows")
    ap.add_argument("--output", default=str(ROOT / "benchmarks" / "results" /
                                             "feature_throughput.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = [(*(int(v) for v in s.rstrip("m").split(",")), s.endswith("m"))
                for s in args.settings.split(";")]
    args.files = args.files * args.repeat_files
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

    def bip_name(o: int, d: int, m: bool) -> str:
        return f"BIP({o},{d}){'m' if m else ''}"

    modules = {bip_name(*s): jetace.BIPFeatures(s[0], s[1], mirror=s[2]) for s in settings}
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
    for order, degree, mirror in settings:
        name = bip_name(order, degree, mirror)
        spec = {"family": "bip", "order": order, "degree": degree, "mirror": mirror,
                "max_particles": 128}
        weight = torch.randn(1, modules[name].num_features)
        head = functools.partial(linear_head, weight[0])
        fused = FusedLinear(modules[name], weight, torch.zeros(1))
        workers = list(map(int, args.workers.split(",")))
        runs = [("end to end", spec, None, 1)]
        runs += [(f"+ linear, {w} proc", spec, head, w) for w in workers]
        runs += [(f"linear fused, {w} proc", fused, None, w) for w in workers]
        for what, module, h, w in runs:
            def end_to_end(module=module, h=h, w=w):
                for _ in iter_features(args.files, module, device="cpu", progress=False,
                                       workers=w, transform=h, max_particles=128):
                    pass

            # the host's speed drifts over a long run: uproot is timed again beside each
            # end-to-end row, and the row's last column is its ratio to that rate
            beside = best_rate(read_all, n_total, repeat=1)
            rows.append({"what": f"{name} {what}", "device": "cpu", "dtype": "float32",
                         "batch": 4096, "n_jets": n_total, "workers": w,
                         "jets_per_s": best_rate(end_to_end, n_total, repeat=2),
                         "uproot_beside_jets_per_s": beside})

    result = {"machine": {"cpu": platform.processor() or platform.machine(),
                          "torch_threads": torch.get_num_threads(),
                          "cuda": torch.cuda.get_device_name() if torch.cuda.is_available()
                          else None, "torch": torch.__version__},
              "files": [str(f) for f in args.files], "rows": rows}
    uproot_rate = rows[0]["jets_per_s"]
    print(f"{'what':34s} {'device':6s} {'dtype':8s} {'jets/s':>12s} {'/uproot':>8s} "
          f"{'/beside':>8s}")
    for r in rows:
        r["ratio_to_uproot"] = r["jets_per_s"] / uproot_rate
        beside = ""
        if "uproot_beside_jets_per_s" in r:
            r["ratio_to_uproot_beside"] = r["jets_per_s"] / r["uproot_beside_jets_per_s"]
            beside = f"{r['ratio_to_uproot_beside']:8.2f}"
        print(f"{r['what']:34s} {r['device']:6s} {r['dtype']:8s} {r['jets_per_s']:12,.0f} "
              f"{r['ratio_to_uproot']:8.2f} {beside}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
