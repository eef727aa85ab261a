"""Write generated jets in the JetClass layout (TTree or RNTuple) with uproot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jetace.errors import JetaceError
from jetace.generate.processes import LABEL_SETS
from jetace.outputs import TableWriter

__all__ = ["write_jets", "parse_compression"]

_COMPRESSIONS = ("zlib", "lzma", "lz4", "zstd")

# constituent and per-jet branches: name -> dtype (the JetClass layout)
_PART = {"px": np.float32, "py": np.float32, "pz": np.float32, "energy": np.float32,
         "pid": np.int32, "charge": np.float32}
_JET = {"jet_pt": np.float32, "jet_eta": np.float32, "jet_phi": np.float32,
        "jet_energy": np.float32, "jet_mass": np.float32, "jet_nparticles": np.int32}


def parse_compression(compression: str | None):
    import uproot

    if compression is None or compression.lower() in ("", "none", "0"):
        return None
    algo, _, level = compression.lower().partition(":")
    if algo not in _COMPRESSIONS:
        raise JetaceError(f"unknown compression {compression!r}: use ALGO or ALGO:LEVEL with "
                          f"ALGO one of {', '.join(_COMPRESSIONS)}, or 'none'")
    try:
        lvl = int(level) if level else 1
    except ValueError:
        raise JetaceError(f"compression level in {compression!r} is not an integer") from None
    if not 1 <= lvl <= 9:
        raise JetaceError(f"compression level must be 1..9, got {lvl} in {compression!r}")
    return {"zlib": uproot.ZLIB, "lzma": uproot.LZMA, "lz4": uproot.LZ4,
            "zstd": uproot.ZSTD}[algo](lvl)


def write_jets(path: str | Path, jets: dict, label: str, *, rntuple: bool = False,
               compression: str | None = "zlib:1", tree: str = "tree") -> Path:
    """Write packed jets (see :func:`generate_jets`) in the JetClass layout to ``path``.

    ``label`` is the label branch set true for every jet; the file carries every label
    branch of its family (:data:`~jetace.generate.processes.LABELS` or
    :data:`~jetace.generate.processes.QG_LABELS`), the others false.
    """
    import awkward as ak

    family = next((s for s in LABEL_SETS if label in s), None)
    if family is None:
        raise JetaceError(f"unknown label {label!r}; labels: "
                          + "; ".join(", ".join(s) for s in LABEL_SETS))
    comp = parse_compression(compression)
    counts = jets["counts"]
    p4 = jets["p4"]
    flat = {"px": p4[:, 0], "py": p4[:, 1], "pz": p4[:, 2], "energy": p4[:, 3],
            "pid": jets["pid"], "charge": jets["charge"]}
    part = {k: ak.unflatten(np.asarray(v, dtype=_PART[k]), counts) for k, v in flat.items()}
    jet = jets["jet"]
    data: dict = {
        "jet_pt": jet[:, 0], "jet_eta": jet[:, 1], "jet_phi": jet[:, 2],
        "jet_energy": jet[:, 3], "jet_mass": jet[:, 4], "jet_nparticles": counts,
    }
    data = {k: np.asarray(v, dtype=_JET[k]) for k, v in data.items()}
    for name in family:
        data[name] = np.full(len(counts), name == label, dtype=bool)
    path = Path(path)
    # written under a temporary name, renamed when complete (jetace.outputs)
    with TableWriter(path, tree=tree, rntuple=rntuple, compression=comp) as writer:
        writer.write({"part": ak.zip(part), **data})
    return path
