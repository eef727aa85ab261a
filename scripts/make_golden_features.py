"""Write tests/data/golden_features.npz: float64 feature values of 8 fixed jets.

The jets are the first four top and the first four QCD jets of the built-in demo
sample (``jetace.generate.demo_files``), padded to their longest jet, with their
float32-stored momenta converted to float64 as ``jetace.to_padded`` does. The file
holds the padded momenta and mask, the feature definition number and, per setting of
``SETTINGS``, the spec and the feature matrix.

Run it only when a feature definition changes on purpose (and then raise
``jetace.features.FEATURE_DEFINITION``); ``tests/test_golden.py`` compares the installed
code against the file and fails on any other change of feature values.

    python scripts/make_golden_features.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

import jetace
from jetace.features import FEATURE_DEFINITION, features_from_spec
from jetace.generate import demo_files

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "golden_features.npz"

#: name -> feature spec of every setting the golden file pins
SETTINGS = {
    "bip_3_6": {"family": "bip", "order": 3, "degree": 6},
    "bip_4_7": {"family": "bip", "order": 4, "degree": 7},
    "bip_4_7_mirror": {"family": "bip", "order": 4, "degree": 7, "mirror": True},
    "bip_4_7_complete": {"family": "bip", "order": 4, "degree": 7, "complete": True},
    "lorentz_default": {"family": "lorentz"},
    "lorentz_irc_safe": {"family": "lorentz", "irc_safe": True},
}


def golden_jets() -> tuple[torch.Tensor, torch.Tensor]:
    """The 8 fixed jets, float64 (8, P, 4) and mask (8, P)."""
    top, qcd = demo_files()
    jets = [jetace.read_jets(f, max_jets=4) for f in (top, qcd)]
    parts = [jetace.to_padded(j, max_particles=None, dtype=torch.float64) for j in jets]
    width = max(p.shape[1] for p, _ in parts)
    p4 = torch.cat([torch.nn.functional.pad(p, (0, 0, 0, width - p.shape[1])) for p, _ in parts])
    mask = torch.cat([torch.nn.functional.pad(m, (0, width - m.shape[1])) for _, m in parts])
    return p4, mask


def main() -> int:
    p4, mask = golden_jets()
    arrays = {"p4": p4.numpy(), "mask": mask.numpy(),
              "feature_definition": np.array(FEATURE_DEFINITION),
              "specs": np.array(json.dumps(SETTINGS))}
    for name, spec in SETTINGS.items():
        arrays[name] = features_from_spec(spec)(p4, mask).numpy()
        print(f"{name}: {arrays[name].shape[1]} features")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
