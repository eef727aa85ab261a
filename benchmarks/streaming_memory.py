"""Peak memory and throughput of ``jetace features`` as the input grows.

Builds inputs of growing size by listing the development samples many times (symlinks in
a temporary directory, so nothing is copied), runs ``jetace features`` on each in a
subprocess and records its peak resident set size (the kernel's high-water mark from
``wait4``; RSS is also sampled with psutil for a timeline) and its rate in jets/s.
A last input is one large file (the samples concatenated) so that chunks reach the full
default step size (the development files hold only 25k jets each).

It also compares, on the same input and in the same run, three rates:

- ``uproot``: uproot alone reading the branches jetace reads (same step size),
- ``features``: ``jetace.run.features.iter_features`` (reading + validation + padding +
  features), with a linear score (one dot product per jet) on top,
- ``features_cli``: the ``jetace features`` command (as above plus writing Parquet).

    python benchmarks/streaming_memory.py --sizes 100000 500000 2000000 \\
        --json benchmarks/results/streaming_memory.json

``--batch-sweep 17 1024 4096`` instead measures the peak RSS of ``jetace features`` at
those ``--batch-size`` values on ``--sweep-jets`` jets each (``--max-jets``), to show that
the output's memory does not depend on the compute batch size (the writer's row groups
have a fixed size, ``jetace.outputs.ROW_GROUP_BYTES``)::

    python benchmarks/streaming_memory.py --batch-sweep 17 1024 4096 \\
        --sweep-jets 50000 400000 --json benchmarks/results/streaming_memory_batches.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

DATA = Path("/work/shared/data")
SAMPLES = [DATA / "top_train.root", DATA / "qcd_train.root"]

UPROOT_READ = """
import sys, time, uproot
from jetace.io import JetFiles
files = JetFiles(sys.argv[2:], extras=False)
branches = files._sources[0].plan.branches
t0 = time.perf_counter(); n = 0
for arrays in uproot.iterate([f + ":tree" for f in sys.argv[2:]], branches,
                             step_size=sys.argv[1], library="ak"):
    n += len(arrays)
print(n, time.perf_counter() - t0)
"""

FEATURES_LINEAR = """
import sys, time, torch
from jetace.run.features import iter_features
order, degree, step = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
spec = {"family": "bip", "order": order, "degree": degree, "max_particles": 128}
t0 = time.perf_counter(); n = 0; w = None
for chunk, feats in iter_features(sys.argv[4:], spec, device="cpu", step_size=step,
                                  progress=False):
    if w is None:
        g = torch.Generator().manual_seed(0)
        w = torch.randn(feats.shape[1], dtype=feats.dtype, generator=g)
    scores = feats @ w
    n += len(scores)
print(n, time.perf_counter() - t0)
"""


def run_measured(cmd: list[str], interval: float = 0.2, env: dict | None = None) -> dict:
    """Run ``cmd``; its wall and CPU time, peak RSS (bytes, from wait4), RSS timeline."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        try:
            ps = psutil.Process(proc.pid)
            while not stop.is_set():
                samples.append((time.perf_counter() - t0, ps.memory_info().rss))
                stop.wait(interval)
        except psutil.Error:
            pass

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stop.set()
    thread.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{cmd[:4]}... failed with exit status {proc.returncode}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_bytes": int(usage.ru_maxrss) * 1024,
            "rss_timeline": [(round(t, 2), r) for t, r in samples[:: max(1, len(samples) // 50)]],
            "stdout": out.strip()}


def make_inputs(tmp: Path, n_jets: int) -> list[str]:
    """Symlinks to the samples, alternating top and QCD, holding at least ``n_jets``."""
    import uproot

    per = [uproot.open(p)["tree"].num_entries for p in SAMPLES]
    out, total, i = [], 0, 0
    while total < n_jets:
        k = i % len(SAMPLES)
        link = tmp / f"in_{n_jets}_{i:04d}.root"
        if not link.exists():
            link.symlink_to(SAMPLES[k])
        out.append(str(link))
        total += per[k]
        i += 1
    return out


def make_big_file(tmp: Path, copies: int) -> tuple[str, int]:
    """One file holding ``copies`` times the samples' jets (TTree, JetClass layout)."""
    import awkward as ak
    import uproot

    path = tmp / "big.root"
    parts = [uproot.open(p)["tree"].arrays(library="ak") for p in SAMPLES]
    data = ak.concatenate(parts)
    cols = {k: data[k] for k in ak.fields(data) if k != "npart"}
    part = ak.zip({k[5:]: cols.pop(k) for k in list(cols) if k.startswith("part_")})
    with uproot.recreate(path) as f:
        f.mktree("tree", {"part": part.type, **{k: v.type for k, v in cols.items()}},
                 field_name=lambda outer, inner: f"{outer}_{inner}",
                 counter_name=lambda counted: "n" + counted)
        for _ in range(copies):
            f["tree"].extend({"part": part, **cols})
    return str(path), copies * len(data)


def batch_sweep(args: argparse.Namespace) -> None:
    """Peak RSS of ``jetace features`` per (input size, batch size)."""
    import pyarrow.parquet as pq

    import jetace

    result = {"jetace_version": jetace.__version__, "cpus": os.cpu_count(),
              "load_average_at_start": os.getloadavg(),
              "features": {"family": "bip", "order": args.order, "degree": args.degree},
              "step_size": args.step_size, "rows": []}
    with tempfile.TemporaryDirectory(prefix="jetace-batches-") as tmpdir:
        tmp = Path(tmpdir)
        for n_jets in args.sweep_jets:
            files = make_inputs(tmp, n_jets)
            for batch in args.batch_sweep:
                out = tmp / "out.parquet"
                cmd = [sys.executable, "-m", "jetace", "features", *files, "-o", str(out),
                       "--order", str(args.order), "--degree", str(args.degree),
                       "--device", "cpu", "--step-size", args.step_size, "--quiet",
                       "--max-jets", str(n_jets), "--batch-size", str(batch)]
                r = run_measured(cmd)
                meta = pq.ParquetFile(out).metadata
                row = {"n_jets": meta.num_rows, "batch_size": batch,
                       "row_groups": meta.num_row_groups,
                       "footer_bytes": int(meta.serialized_size),
                       "peak_rss_gb": r["peak_rss_bytes"] / 1e9, "wall_s": r["wall_s"]}
                out.unlink()
                result["rows"].append(row)
                print(f"{n_jets} jets, batch {batch}: peak RSS {row['peak_rss_gb']:.2f} GB, "
                      f"{row['row_groups']} row groups, footer {row['footer_bytes']} B, "
                      f"{row['wall_s']:.0f} s", flush=True)
    peaks = [r["peak_rss_gb"] for r in result["rows"]]
    result["max_over_min_peak_rss"] = max(peaks) / min(peaks)
    result["load_average_at_end"] = os.getloadavg()
    print(f"largest / smallest peak RSS: {result['max_over_min_peak_rss']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 500_000, 2_000_000])
    ap.add_argument("--order", type=int, default=3)
    ap.add_argument("--degree", type=int, default=6)
    ap.add_argument("--step-size", default="100 MB")
    ap.add_argument("--big-copies", type=int, default=6,
                    help="copies of the samples in the single large file (0: skip)")
    ap.add_argument("--rate-jets", type=int, default=100_000,
                    help="input size for the uproot vs features rate comparison (0: skip)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads of the measured processes (OMP_NUM_THREADS; "
                         "default: torch's own choice)")
    ap.add_argument("--batch-sweep", type=int, nargs="+", default=None,
                    help="measure peak RSS at these --batch-size values instead")
    ap.add_argument("--sweep-jets", type=int, nargs="+", default=[50_000, 400_000],
                    help="input sizes of --batch-sweep")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.batch_sweep:
        batch_sweep(args)
        return

    import torch

    import jetace

    result = {
        "jetace_version": jetace.__version__, "torch": torch.__version__,
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "torch_threads": args.threads or torch.get_num_threads(),
        "load_average_at_start": os.getloadavg(),
        "features": {"family": "bip", "order": args.order, "degree": args.degree,
                     "max_particles": 128, "dtype": "float32", "device": "cpu",
                     "batch_size": 4096},
        "step_size": args.step_size, "runs": [], "rates": {},
    }
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    cli = [sys.executable, "-m", "jetace", "features", "--family", "bip", "--order",
           str(args.order), "--degree", str(args.degree), "--device", "cpu",
           "--step-size", args.step_size]
    with tempfile.TemporaryDirectory(prefix="jetace-stream-") as tmpdir:
        tmp = Path(tmpdir)
        inputs = {f"{n} jets ({len(make_inputs(tmp, n))} files)": make_inputs(tmp, n)
                  for n in args.sizes}
        if args.big_copies:
            big, n_big = make_big_file(tmp, args.big_copies)
            inputs[f"{n_big} jets (1 file)"] = [big]
        for name, files in inputs.items():
            out = tmp / "out.parquet"
            r = run_measured([*cli, *files, "-o", str(out)], env=env)
            import pyarrow.parquet as pq

            n = pq.ParquetFile(out).metadata.num_rows
            out.unlink()
            run = {"input": name, "n_jets": n, "n_files": len(files), "wall_s": r["wall_s"],
                   "jets_per_s": n / r["wall_s"], "cpu_s": r["cpu_s"],
                   "jets_per_cpu_s": n / r["cpu_s"], "peak_rss_bytes": r["peak_rss_bytes"],
                   "peak_rss_gb": r["peak_rss_bytes"] / 1e9, "rss_timeline": r["rss_timeline"]}
            result["runs"].append(run)
            print(f"{name}: peak RSS {run['peak_rss_gb']:.2f} GB, {run['jets_per_s']:.0f} jets/s "
                  f"({run['wall_s']:.0f} s), {run['jets_per_cpu_s']:.0f} jets per CPU s",
                  flush=True)

        if args.rate_jets > 0:
            files = make_inputs(tmp, args.rate_jets)
            # interleave to share whatever else the machine is doing evenly
            rates: dict[str, list[float]] = {"uproot": [], "features_linear": []}
            cpu: dict[str, list[float]] = {"uproot": [], "features_linear": []}
            for _ in range(2):
                r = run_measured([sys.executable, "-c", UPROOT_READ, args.step_size, *files],
                                 env=env)
                n, t = r["stdout"].split()
                rates["uproot"].append(int(n) / float(t))
                cpu["uproot"].append(int(n) / r["cpu_s"])
                r = run_measured([sys.executable, "-c", FEATURES_LINEAR, str(args.order),
                                  str(args.degree), args.step_size, *files], env=env)
                n, t = r["stdout"].split()
                rates["features_linear"].append(int(n) / float(t))
                cpu["features_linear"].append(int(n) / r["cpu_s"])
            best = {k: max(v) for k, v in rates.items()}
            result["rates"] = {
                "n_jets": int(n), "jets_per_s_best_of_2": best, "all": rates,
                "features_linear_over_uproot": best["features_linear"] / best["uproot"],
                "jets_per_cpu_s_best_of_2": {k: max(v) for k, v in cpu.items()},
                "features_linear_over_uproot_per_cpu_s":
                    max(cpu["features_linear"]) / max(cpu["uproot"]),
                "note": "wall rates exclude interpreter start-up and imports, CPU rates include "
                        "them; reading included in both",
            }
            print(f"uproot alone {best['uproot']:.0f} jets/s, features + linear "
                  f"{best['features_linear']:.0f} jets/s, ratio "
                  f"{result['rates']['features_linear_over_uproot']:.3f}", flush=True)
    result["load_average_at_end"] = os.getloadavg()
    peak = max(r["peak_rss_bytes"] for r in result["runs"])
    result["max_peak_rss_gb"] = peak / 1e9
    text = json.dumps(result, indent=1, default=lambda o: o.item() if isinstance(o, np.generic)
                      else str(o))
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(f"max peak RSS {peak / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
