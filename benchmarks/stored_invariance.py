"""Invariance of the feature families on jets as they are stored in files.

ROOT files hold float32 momenta, so massless constituents read back slightly spacelike
(E^2 - |p|^2 of order -1e-4 GeV^2). This script reads jets from files (default: the
development samples), converts them to float64 and measures, with the tests' scaled
deviation (:func:`jetace.reproducibility.deviation`, floor 1e-3 of each column's scale):

* BIPFeatures(4, 7) under boosts along each jet's axis (beta 0.8 and 0.95) and random
  rotations;
* LorentzACEFeatures() and its IRC-safe variant under random Lorentz transformations
  (random rotation, then a boost with gamma up to 10);

each on the jets as read, and on the same jets made exactly massless (E = |p|) for
comparison. Deviations are measured relative to each column's largest magnitude over
the jets, and (in brackets) on the contract's scale. Seeded; prints a table and writes
benchmarks/results/stored_invariance.json.

    python benchmarks/stored_invariance.py [--max-jets 2000] [FILES ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import jetace
from jetace.reproducibility import deviation

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import default_files, machine, write_json  # noqa: E402
from symmetry import boost, random_lorentz, random_rotation, rotate  # noqa: E402


def _axis_boost(p4: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    p3 = (p4[..., 1:] * mask[..., None]).sum(1)
    n = p3 / torch.linalg.vector_norm(p3, dim=-1, keepdim=True)
    return boost(p4, beta * n) * mask[..., None]


def _massless(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    e = torch.linalg.vector_norm(p4[..., 1:], dim=-1, keepdim=True)
    return torch.cat([e, p4[..., 1:]], dim=-1) * mask[..., None]


def measure(p4: torch.Tensor, mask: torch.Tensor, seed: int = 0) -> list[dict]:
    """Rows (features, transformation, jets, deviation as read, deviation massless)."""
    rng = np.random.default_rng(seed)
    rot = random_rotation(rng)
    bip = jetace.BIPFeatures(4, 7)
    cases = [("BIP(4,7)", bip, f"axis boost beta={b}",
              lambda q, b=b: _axis_boost(q, mask, b)) for b in (0.8, 0.95)]
    cases.append(("BIP(4,7)", bip, "rotation", lambda q: rotate(q, rot) * mask[..., None]))
    for name, f in (("Lorentz default", jetace.LorentzACEFeatures()),
                    ("Lorentz irc_safe", jetace.LorentzACEFeatures(irc_safe=True))):
        cases.append((name, f, "random Lorentz, gamma <= 10",
                      lambda q: random_lorentz(q, np.random.default_rng(seed + 1))
                      * mask[..., None]))
    m2 = (p4[..., 0] ** 2 - (p4[..., 1:] ** 2).sum(-1))[mask]
    rows = []
    for name, f, what, transform in cases:
        row = {"features": name, "transformation": what, "jets": len(p4)}
        for label, q in (("as_read", p4), ("massless", _massless(p4, mask))):
            x, y = f(q, mask), f(transform(q), mask)
            row[label] = deviation(x, y, floor=1.0)
            row[label + "_floor_1e-3"] = deviation(x, y)
        rows.append(row)
    print(f"constituents with E^2 - |p|^2 < 0: {float((m2 < 0).double().mean()):.1%}, "
          f"median of those {float(m2[m2 < 0].median()):.2e} GeV^2")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="ROOT files (default: the development samples)")
    parser.add_argument("--max-jets", type=int, default=2000, help="jets per file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sig, bkg = default_files()
    files = args.files or sig + bkg
    parts = [jetace.to_padded(jetace.read_jets(f, max_jets=args.max_jets), max_particles=128,
                              dtype=torch.float64) for f in files]
    p4, mask = torch.cat([p for p, _ in parts]), torch.cat([m for _, m in parts])
    rows = measure(p4, mask, args.seed)
    print("deviation relative to each column's largest |value| (in brackets: relative to "
          "max(|value|, 1e-3 of that), the reproducibility contract's scale)")
    print(f"{'features':18} {'transformation':30} {'as read':>21} {'massless':>21}")
    for r in rows:
        print(f"{r['features']:18} {r['transformation']:30} "
              + "".join(f"{r[k]:10.2e} ({r[k + '_floor_1e-3']:8.1e})"
                        for k in ("as_read", "massless")))
    write_json("stored_invariance",
               {"machine": machine(), "files": files, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
