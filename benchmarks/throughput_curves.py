"""Feature throughput curves: jets/s against batch size and against constituent count.

    python benchmarks/throughput_curves.py [--quick] [--threads 1] [--device cpu]

bip(3,6), bip(4,7), lorentz(4) (jetace, float32) and energyflow EFPs d<=5 (float64,
one jet at a time inside a batch) on the same real jets of the benchmark test split,
on ``--threads`` CPU threads (or a CUDA device for the jetace families with
``--device cuda``). Constituent-count curve: jets with at least P constituents cut to
their P hardest (jets are reused cyclically when fewer than a batch have that many).
File reading and padding are not included. Writes
benchmarks/results/throughput_curves.json.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from common import load_split, machine, padded, suite_parser, throughput, write_json
from observables import EFPFeatures
from tqdm import tqdm

import jetace

__all__ = ["FAMILIES", "curves", "main"]

FAMILIES = {
    "bip(3,6)": lambda: jetace.BIPFeatures(3, 6),
    "bip(4,7)": lambda: jetace.BIPFeatures(4, 7),
    "lorentz(4)": lambda: jetace.LorentzACEFeatures(),
    "EFP d<=5": lambda: EFPFeatures(5),
}


def _fill(p4: torch.Tensor, mask: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """At least ``n`` jets, repeating the given ones."""
    reps = -(-n // max(1, len(p4)))
    return p4.repeat(reps, 1, 1)[: max(n, len(p4))], mask.repeat(reps, 1)[: max(n, len(p4))]


def curves(p4: torch.Tensor, mask: torch.Tensor, batches: list[int], counts: list[int],
           n_threads: int, device: str, min_time: float) -> dict[str, Any]:
    """{family: {"batch": {b: jets/s}, "constituents": {P: jets/s}}}."""
    out: dict[str, Any] = {}
    n_part = mask.sum(1)
    for name, make in tqdm(FAMILIES.items(), desc="families", unit="family"):
        module = make()
        efp = isinstance(module, EFPFeatures)
        dev = "cpu" if efp else device
        dtype = torch.float64 if efp else torch.float32
        module = module.to(dev)
        x, m = p4.to(dev, dtype), mask.to(dev)
        res = {"batch": {}, "constituents": {}, "device": dev, "dtype": str(dtype)[6:],
               "num_features": module.num_features}
        sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)

        def run(a, b, module=module, sync=sync):
            module(a, b)
            sync()

        max_jets = 300 if efp else 20000
        for b in batches:
            if efp and b > 256:
                continue
            xb, mb = _fill(x, m, b)
            res["batch"][b] = throughput(run, xb, mb, b, n_threads, min_time, max(max_jets, b))
        b = 256
        for p in counts:
            keep = n_part >= p
            if not keep.any():
                continue
            xp, mp = _fill(x[keep.to(dev)][:, :p], m[keep.to(dev)][:, :p], b)
            res["constituents"][p] = throughput(run, xp, mp, b, n_threads, min_time, max_jets)
        out[name] = res
        print(f"  {name}: " + ", ".join(f"b={k}: {v:.0f}" for k, v in res["batch"].items()),
              flush=True)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = suite_parser(__doc__)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    split = load_split(args.files_signal, args.files_background, 2500 if args.quick else 5000)
    p4, mask = padded(split.test, max_particles=None)
    batches = [1, 16, 128, 1024] if args.quick else [1, 4, 16, 64, 256, 1024, 4096]
    counts = [10, 30, 60, 100] if args.quick else [5, 10, 20, 40, 60, 80, 100, 120, 150]
    res = curves(p4, mask, batches, counts, args.threads, args.device,
                 min_time=0.5 if args.quick else 1.5)
    out = {"machine": machine(), "threads": args.threads, "n_jets": len(p4),
           "includes": "features only, from padded p4 (no file reading)", "curves": res,
           "wall_time_s": time.perf_counter() - t0}
    print("->", write_json("throughput_curves", out))
    return out


if __name__ == "__main__":
    main()
