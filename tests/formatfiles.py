"""Small files in the exact layouts of the public jet formats, written by the tests.

* :func:`write_top_tagging`: the Top Quark Tagging Reference Dataset's HDF5 layout, a
  pandas DataFrame stored by ``DataFrame.to_hdf(path, "table", format="fixed")``:
  group ``/table`` with attributes ``pandas_type="frame"``, ``ndim=2``, ``nblocks``,
  datasets ``axis0`` (column names), ``axis1`` (row index), and one pair
  ``block<i>_items`` / ``block<i>_values`` per dtype (values (rows, items), attribute
  ``transposed``), as PyTables lays them out; columns E_i, PX_i, PY_i, PZ_i
  interleaved per particle, truthE/PX/PY/PZ, ttv (float64 block) and is_signal_new
  (int64 block).
* :func:`write_energyflow`: energyflow's quark/gluon ``.npz`` (``X`` (N, M, 4) = pt, y,
  phi, pid, zero-padded; ``y``).
* :func:`write_parquet`: JetClass-style columns, one jet per row.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np


def _padded(jets: list[np.ndarray], m: int) -> np.ndarray:
    out = np.zeros((len(jets), m, 4))
    for i, j in enumerate(jets):
        order = np.argsort(-np.hypot(j[:, 1], j[:, 2]), kind="stable")[:m]
        out[i, :len(order)] = j[order]
    return out


def write_top_tagging(path: str | Path, jets: list[np.ndarray], is_signal: np.ndarray,
                      n_max: int = 20, key: str = "table") -> Path:
    """Jets (lists of (n, 4) = (E, px, py, pz)) in the Top Tagging HDF5 layout."""
    import h5py

    p = _padded(jets, n_max).astype(np.float32)  # (N, M, 4) = (E, px, py, pz)
    n = len(jets)
    names, cols = [], []
    for i in range(n_max):
        for k, c in enumerate(("E", "PX", "PY", "PZ")):
            names.append(f"{c}_{i}")
            cols.append(p[:, i, k])
    tot = p.sum(axis=1)
    for k, c in enumerate(("truthE", "truthPX", "truthPY", "truthPZ")):
        names.append(c)
        cols.append(0.9 * tot[:, k])
    names.append("ttv")
    cols.append(np.zeros(n, np.float32))
    floats = np.stack(cols, axis=1).astype(np.float32)
    with h5py.File(path, "w") as f:
        g = f.create_group(key)
        for a, v in {"pandas_type": b"frame", "pandas_version": b"0.15.2",
                     "encoding": b"UTF-8", "errors": b"strict", "ndim": 2,
                     "axis0_variety": b"regular", "axis1_variety": b"regular",
                     "nblocks": 2, "block0_items_variety": b"regular",
                     "block1_items_variety": b"regular"}.items():
            g.attrs[a] = v
        g["axis0"] = np.array([s.encode() for s in [*names, "is_signal_new"]])
        g["axis1"] = np.arange(n, dtype=np.int64)
        g["block0_items"] = np.array([s.encode() for s in names])
        g["block0_values"] = floats
        g["block0_values"].attrs["transposed"] = True
        g["block1_items"] = np.array([b"is_signal_new"])
        g["block1_values"] = np.asarray(is_signal, np.int64)[:, None]
        g["block1_values"].attrs["transposed"] = True
    return Path(path)


def write_energyflow(path: str | Path, pt_y_phi_pid: list[np.ndarray], y: np.ndarray,
                     m: int = 30) -> Path:
    """Jets of (n, 4) = (pt, y, phi, pid) rows, zero-padded to ``m``, as energyflow."""
    X = np.zeros((len(pt_y_phi_pid), m, 4))
    for i, j in enumerate(pt_y_phi_pid):
        X[i, :len(j)] = j[:m]
    np.savez_compressed(path, X=X, y=np.asarray(y, np.float64))
    return Path(path)


def write_parquet(path: str | Path, jets: list[np.ndarray], labels: dict[str, bool],
                  row_group_size: int = 64) -> Path:
    """Jets in JetClass-style Parquet columns (part_* lists, jet_*, label_*)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    counts = [len(j) for j in jets]
    flat = np.concatenate(jets).astype(np.float32)
    cols = {f"part_{k}": ak.unflatten(np.ascontiguousarray(flat[:, i]), counts)
            for i, k in enumerate(["energy", "px", "py", "pz"])}
    tot = np.array([j.sum(axis=0) for j in jets])
    cols["jet_pt"] = np.hypot(tot[:, 1], tot[:, 2]).astype(np.float32)
    cols["jet_energy"] = tot[:, 0].astype(np.float32)
    for name, value in labels.items():
        cols[name] = np.full(len(jets), value)
    table = ak.to_arrow_table(ak.zip(cols, depth_limit=1), extensionarray=False)
    pq.write_table(pa.table(table), path, row_group_size=row_group_size)
    return Path(path)
