"""Benchmark and physics check of ``jetace generate``.

Generates a top sample (default 2,000 jets) and a QCD sample, and reports as JSON:
generation rate (jets/s per worker, in total with writing, and per CPU second of the
workers: the rate of one worker on an idle core), events per jet, the
jet-mass peak of top jets (it should sit near the top mass, 173 GeV) and of QCD jets,
and the mean constituent multiplicity. With ``--reference-top/--reference-qcd`` (any
JetClass-layout files, e.g. the project's development samples) the same numbers are
computed for them, to compare the generator setup against a known sample.

    python benchmarks/generation.py --n-top 2000 --n-qcd 1000 --workers 1 \\
        --json benchmarks/results/generation.json

With ``--processes`` it instead measures the listed processes (``all``: every one),
``--n-per-process`` jets each with the process's default cuts, one after the other:

    python benchmarks/generation.py --processes all --n-per-process 500 \\
        --json benchmarks/results/generation_processes.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import uproot

from jetace.generate import PROCESSES, generate, resolve_options


def mass_peak(mass: np.ndarray, lo: float = 0.0, hi: float = 300.0, width: float = 5.0) -> float:
    """Centre (GeV) of the most populated ``width``-GeV bin of the jet-mass histogram,
    after smoothing with a 3-bin running mean."""
    counts, edges = np.histogram(mass, bins=np.arange(lo, hi + width, width))
    smooth = np.convolve(counts, np.ones(3) / 3, mode="same")
    i = int(np.argmax(smooth))
    return float(0.5 * (edges[i] + edges[i + 1]))


def describe(path: Path, max_jets: int | None = None) -> dict:
    """Jet-mass peak and median, fraction in 150-200 GeV, mean multiplicity of a file."""
    tree = uproot.open(path)["tree"]
    arrays = tree.arrays(["jet_mass", "jet_nparticles"], entry_stop=max_jets, library="np")
    mass = arrays["jet_mass"].astype(np.float64)
    return {
        "file": str(path),
        "n_jets": int(len(mass)),
        "mass_peak_gev": mass_peak(mass),
        "mass_median_gev": float(np.median(mass)),
        "fraction_mass_150_200": float(np.mean((mass > 150) & (mass < 200))),
        "mean_nparticles": float(np.mean(arrays["jet_nparticles"])),
    }


def measure(process: str, n: int, outdir: Path, seed: int, workers: int) -> tuple[dict, Path]:
    """Generate ``n`` jets of ``process`` (its default cuts); its rates and jet figures."""
    s = generate(process, n, outdir / f"bench_{process}.root", seed=seed, workers=workers)
    return {
        "jets_per_second_per_worker": round(s.jets_per_second_per_worker, 1),
        "jets_per_second_total": round(s.jets_per_second, 1),
        "jets_per_cpu_second": round(s.jets_per_cpu_second, 1),
        "events_per_jet": round(s.n_events / s.n_jets, 2),
        "seconds": round(s.seconds, 1),
        **{k: v for k, v in describe(s.files[0]).items() if k != "file"},
    }, s.files[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-top", type=int, default=2000, help="top jets to generate")
    ap.add_argument("--n-qcd", type=int, default=1000, help="QCD jets to generate")
    ap.add_argument("--workers", type=int, default=1, help="worker processes")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--outdir", default=None, help="keep the samples here (default: temporary)")
    ap.add_argument("--reference-top", default=None, help="a top-jet file to compare with")
    ap.add_argument("--reference-qcd", default=None, help="a QCD-jet file to compare with")
    ap.add_argument("--json", default=None, help="also write the JSON result to this file")
    ap.add_argument("--processes", default=None,
                    help="comma-separated processes to measure instead of top and QCD, "
                         "or 'all'")
    ap.add_argument("--n-per-process", type=int, default=500,
                    help="jets per process with --processes")
    args = ap.parse_args()
    if args.processes is None:
        plan = [("top", args.n_top), ("qcd", args.n_qcd)]
    else:
        names = list(PROCESSES) if args.processes == "all" else args.processes.split(",")
        plan = [(name, args.n_per_process) for name in names]

    with tempfile.TemporaryDirectory() as tmp:
        outdir = Path(args.outdir or tmp)
        outdir.mkdir(parents=True, exist_ok=True)
        result: dict = {"machine": f"{platform.processor() or platform.machine()}, "
                                   f"{platform.python_implementation()} "
                                   f"{platform.python_version()}",
                        "workers": args.workers, "seed": args.seed,
                        "load_average_start": round(os.getloadavg()[0], 2)}
        for process, n in plan:
            if n <= 0:
                continue
            result[process], _ = measure(process, n, outdir, args.seed, args.workers)
            if args.processes is not None:
                result[process]["options"] = resolve_options(process)
            ref = getattr(args, f"reference_{process}", None)
            if ref:
                result[process]["reference"] = describe(Path(ref), max_jets=max(n, 5000))
    result["load_average_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
