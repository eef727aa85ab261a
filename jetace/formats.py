"""Jets from the public formats physicists already have, besides ROOT.

:func:`jetace.io.read_jets`, :func:`jetace.io.iterate_jets` and every command read these
files by their extension (or ``format=`` in Python): each is presented as a table of
branches named as in JetClass, so the schemas (``"jetclass"`` by default) map them onto
the same record fields as a ROOT file, and the same checks apply (NaN, negative
energies, missing columns, with the file and the column named).

* ``toptagging`` (``.h5``, ``.hdf5``): the Top Quark Tagging Reference Dataset
  (Kasieczka et al., arXiv:1902.09914): one pandas DataFrame per file written by
  ``DataFrame.to_hdf`` in pandas' "fixed" layout (group ``table`` with ``axis0``, the
  column names, and ``block<i>_items`` / ``block<i>_values``, one 2-D array per dtype),
  columns ``E_<i>, PX_<i>, PY_<i>, PZ_<i>`` (i = 0..199, GeV), ``truthE, truthPX,
  truthPY, truthPZ``, ``ttv`` and ``is_signal_new``. Read with h5py (``pip install
  jetace[hdf5]``), in row chunks. Constituents with ``E_i = 0`` are padding and dropped.
* ``energyflow`` (``.npz``): energyflow's quark/gluon files (``np.savez`` of ``X``,
  shape (N, M, 4) = (pt [GeV], rapidity y, phi, PDG id), zero-padded, and ``y``, 1 for
  quark and 0 for gluon jets). Constituents with pt = 0 are padding. Four-momenta:
  ``px = pt cos(phi)``, ``py = pt sin(phi)``, ``E = mT cosh(y)``, ``pz = mT sinh(y)``
  with ``mT = sqrt(pt^2 + m^2)``, the mass m by the convention ``mass``: ``"massless"``
  (default, m = 0), ``"pion"`` (the charged pion mass 0.13957 GeV for every constituent)
  or ``"pid"`` (the PDG mass of each |id|: photon 0, e, mu, pi+-, K+-, K_L, p, n; the pion
  mass for other ids), chosen by ``format="energyflow"`` (the default of ``.npz``),
  ``"energyflow-pion"`` or ``"energyflow-pid"``. A ``.npz`` is one zip archive: each
  file is loaded whole, then cut into chunks.
* ``parquet`` (``.parquet``, ``.pq``): one jet per row with JetClass-style columns, as
  weaver-core reads them: list columns ``part_px, part_py, part_pz, part_energy`` (and
  ``part_*`` extras), flat ``jet_*`` and ``label_*`` columns (any names: a schema maps
  them). Read by row group.

Branches presented (the ``"jetclass"`` schema reads them as they are):

=============  ========================================  ==================================
format         constituents (jagged)                     per jet (flat)
=============  ========================================  ==================================
toptagging     part_energy/px/py/pz from E_i/PX_i/...    jet_pt, jet_eta, jet_phi,
                                                          jet_energy, jet_nparticles (sums
                                                          of the constituents), jet_truth_
                                                          energy/px/py/pz, jet_ttv,
                                                          label_Tbqq (is_signal_new = 1),
                                                          label_QCD (is_signal_new = 0)
energyflow     part_energy/px/py/pz, part_pid            jet_pt, jet_eta, jet_phi,
                                                          jet_energy, jet_nparticles,
                                                          label_quark (y = 1),
                                                          label_gluon (y = 0)
parquet        the file's list columns                   the file's flat columns
=============  ========================================  ==================================
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator
from typing import Any

import awkward as ak
import numpy as np

from jetace.errors import InputError

__all__ = ["FORMATS", "EXTENSIONS", "MASSES", "format_of", "p4_from_ptyphi",
           "read_table", "table_info", "branch_types", "entries_per_chunk"]

#: readable formats; "root" is read by :mod:`jetace.io` itself; "energyflow-pion" and
#: "energyflow-pid" are energyflow files with those mass conventions
FORMATS = ("root", "toptagging", "energyflow", "energyflow-pion", "energyflow-pid",
           "parquet")
#: file extension -> format
EXTENSIONS = {".root": "root", ".h5": "toptagging", ".hdf5": "toptagging",
              ".hdf": "toptagging", ".npz": "energyflow", ".parquet": "parquet",
              ".pq": "parquet"}
#: mass conventions of (pt, y, phi) constituents
MASSES = ("massless", "pion", "pid")

_PION = 0.13957039
#: PDG masses in GeV by |PDG id| for mass="pid" (other ids: the charged pion's)
_PDG_MASS = {22: 0.0, 11: 0.000511, 13: 0.105658, 211: _PION, 321: 0.493677,
             130: 0.497611, 2212: 0.938272, 2112: 0.939565}


def format_of(path: str, fmt: str | None = None) -> str:
    """The format of ``path``: ``fmt`` when given (checked), else by extension (ROOT
    for unknown extensions, so ROOT's own errors name the file)."""
    if fmt is not None:
        if fmt not in FORMATS:
            near = difflib.get_close_matches(str(fmt), FORMATS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise InputError(f"unknown input format {fmt!r}{hint}; choose one of "
                             f"{', '.join(FORMATS)}")
        return fmt
    return EXTENSIONS.get(os.path.splitext(path)[1].lower(), "root")


def _missing(path: str, what: str, name: str, available: list[str]) -> InputError:
    near = difflib.get_close_matches(name, available, n=3)
    hint = f"; nearest: {', '.join(near)}" if near else ""
    shown = ", ".join(available[:20]) + (f", ... ({len(available)} in all)"
                                         if len(available) > 20 else "")
    return InputError(f"{path}: no {what} {name!r}{hint} (available: {shown})")


def p4_from_ptyphi(pt: np.ndarray, y: np.ndarray, phi: np.ndarray,
                   pid: np.ndarray | None = None, mass: str = "massless"
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(E, px, py, pz) in GeV from pt [GeV], rapidity y and phi (arrays of one shape),
    with the constituent mass of convention ``mass`` (:data:`MASSES`; ``"pid"`` needs
    ``pid``, the PDG ids). See the module docstring."""
    pt, y, phi = (np.asarray(a, dtype=np.float64) for a in (pt, y, phi))
    if mass not in MASSES:
        raise InputError(f"unknown mass convention {mass!r}; choose one of {', '.join(MASSES)}")
    if mass == "massless":
        m = np.zeros_like(pt)
    elif mass == "pion":
        m = np.full_like(pt, _PION)
    else:
        if pid is None:
            raise InputError("mass='pid' needs the particle ids (a fourth column)")
        ids = np.abs(np.asarray(pid)).astype(np.int64)
        m = np.full_like(pt, _PION)
        for code, value in _PDG_MASS.items():
            m[ids == code] = value
    mt = np.sqrt(pt * pt + m * m)
    return mt * np.cosh(y), pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y)


def _jagged(columns: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, ak.Array]:
    """Padded (N, M) columns -> jagged arrays of the constituents where ``mask``."""
    counts = mask.sum(axis=1)
    return {k: ak.unflatten(np.asarray(v)[mask], counts) for k, v in columns.items()}


def _jet_sums(e, px, py, pz, mask) -> dict[str, np.ndarray]:
    """jet_pt, jet_eta, jet_phi, jet_energy, jet_nparticles of padded constituents."""
    tot = [np.where(mask, a, 0.0).sum(axis=1, dtype=np.float64) for a in (e, px, py, pz)]
    pt = np.hypot(tot[1], tot[2])
    return {"jet_pt": pt, "jet_eta": np.arcsinh(tot[3] / np.maximum(pt, 1e-12)),
            "jet_phi": np.arctan2(tot[2], tot[1]), "jet_energy": tot[0],
            "jet_nparticles": mask.sum(axis=1).astype(np.int64)}


# ------------------------------------------------------------------ Top Tagging HDF5
_TT_COLUMN = re.compile(r"^(E|PX|PY|PZ)_(\d+)$")
_TT_TRUTH = {"truthE": "jet_truth_energy", "truthPX": "jet_truth_px",
             "truthPY": "jet_truth_py", "truthPZ": "jet_truth_pz", "ttv": "jet_ttv"}


class _TopTagging:
    """A pandas "fixed" DataFrame in an HDF5 file, read by row ranges with h5py."""

    def __init__(self, path: str, key: str):
        try:
            import h5py
        except ImportError:
            raise InputError(f"{path}: reading HDF5 needs h5py: pip install "
                             "'jetace[hdf5]'") from None
        try:
            self.file = h5py.File(path, "r")
        except OSError as exc:
            raise InputError(f"{path}: not a readable HDF5 file ({exc})") from exc
        self.path = path
        groups = [k for k in self.file if isinstance(self.file[k], h5py.Group)
                  and "axis0" in self.file[k]]
        name = key if key in groups else groups[0] if len(groups) == 1 else None
        if name is None:
            self.file.close()
            raise _missing(path, "pandas table (a DataFrame written by to_hdf in the fixed "
                           "layout) named", key, list(groups) or ["none"])
        self.group = g = self.file[name]
        self.columns: dict[str, tuple[Any, int]] = {}
        #: blocks stored (items, rows), i.e. without pandas' transposition flag
        self.by_item: set[int] = set()
        i = 0
        while f"block{i}_items" in g:
            items = [c.decode() if isinstance(c, bytes) else str(c)
                     for c in g[f"block{i}_items"][()]]
            values = g[f"block{i}_values"]
            if not bool(values.attrs.get("transposed", True)):
                self.by_item.add(id(values))
            for j, c in enumerate(items):
                self.columns[c] = (values, j)
            i += 1
        if not self.columns:
            self.file.close()
            raise InputError(f"{path}: table {name!r} is not in pandas' fixed layout (no "
                             "block0_items / block0_values); write it with "
                             "DataFrame.to_hdf(path, key, format='fixed')")
        values = next(iter(self.columns.values()))[0]
        self.num_entries = int(values.shape[1 if id(values) in self.by_item else 0])
        index = {}
        for c in self.columns:
            m = _TT_COLUMN.match(c)
            if m:
                index.setdefault(int(m.group(2)), set()).add(m.group(1))
        self.n_max = 0
        while {"E", "PX", "PY", "PZ"} <= index.get(self.n_max, set()):
            self.n_max += 1
        for c in ("E_0", "PX_0", "PY_0", "PZ_0", "is_signal_new"):
            if c not in self.columns:
                self.file.close()
                raise _missing(path, "column", c, list(self.columns))
        self.truth = {c: f for c, f in _TT_TRUTH.items() if c in self.columns}

    def close(self) -> None:
        self.file.close()

    def branches(self) -> list[str]:
        return ["part_energy", "part_px", "part_py", "part_pz", *_jet_sums_names(),
                *self.truth.values(), "label_Tbqq", "label_QCD"]

    def bytes_per_entry(self) -> int:
        blocks = {id(v): v for v, _ in self.columns.values()}.values()
        return sum(int(v.shape[1]) * v.dtype.itemsize for v in blocks)

    def read(self, start: int, stop: int) -> dict[str, Any]:
        cache: dict[int, np.ndarray] = {}

        def column(name: str) -> np.ndarray:
            values, j = self.columns[name]
            if id(values) not in cache:  # one read of the rows per block
                block = values[:, start:stop].T if id(values) in self.by_item else \
                    values[start:stop]
                cache[id(values)] = np.asarray(block)
            return cache[id(values)][:, j]

        cols = {k: np.stack([column(f"{c}_{i}") for i in range(self.n_max)], axis=1)
                for k, c in (("energy", "E"), ("px", "PX"), ("py", "PY"), ("pz", "PZ"))}
        mask = cols["energy"] != 0
        out: dict[str, Any] = {f"part_{k}": v for k, v in _jagged(cols, mask).items()}
        out.update(_jet_sums(cols["energy"], cols["px"], cols["py"], cols["pz"], mask))
        out.update({f: column(c) for c, f in self.truth.items()})
        signal = column("is_signal_new")
        out["label_Tbqq"], out["label_QCD"] = signal == 1, signal == 0
        return out


def _jet_sums_names() -> list[str]:
    return ["jet_pt", "jet_eta", "jet_phi", "jet_energy", "jet_nparticles"]


# --------------------------------------------------------------- energyflow npz
class _EnergyFlow:
    """energyflow's (N, M, 4) = (pt, y, phi, pid) arrays in a .npz, loaded whole."""

    def __init__(self, path: str, mass: str = "massless"):
        try:
            self.npz = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable .npz archive ({exc})") from exc
        self.path, self.mass = path, mass
        keys = list(self.npz.keys())
        for k in ("X", "y"):
            if k not in keys:
                raise _missing(path, "array", k, keys)
        self.X = self.npz["X"]
        self.y = self.npz["y"]
        if self.X.ndim != 3 or self.X.shape[2] not in (3, 4):
            raise InputError(f"{path}: array 'X' must have shape (jets, particles, 3 or 4) "
                             f"= (pt, y, phi[, pid]), got {self.X.shape}")
        if self.y.shape != (self.X.shape[0],):
            raise InputError(f"{path}: array 'y' must hold one label per jet "
                             f"({self.X.shape[0]}), got shape {self.y.shape}")
        self.num_entries = int(self.X.shape[0])

    def close(self) -> None:
        self.npz.close()

    def branches(self) -> list[str]:
        pid = ["part_pid"] if self.X.shape[2] == 4 else []
        return ["part_energy", "part_px", "part_py", "part_pz", *pid, *_jet_sums_names(),
                "label_quark", "label_gluon"]

    def bytes_per_entry(self) -> int:
        return int(np.prod(self.X.shape[1:])) * self.X.dtype.itemsize

    def read(self, start: int, stop: int) -> dict[str, Any]:
        x = self.X[start:stop]
        pid = x[:, :, 3] if x.shape[2] == 4 else None
        mask = x[:, :, 0] > 0
        e, px, py, pz = p4_from_ptyphi(x[:, :, 0], x[:, :, 1], x[:, :, 2], pid, self.mass)
        cols = {"energy": e, "px": px, "py": py, "pz": pz}
        if pid is not None:
            cols["pid"] = pid
        out: dict[str, Any] = {f"part_{k}": v for k, v in _jagged(cols, mask).items()}
        out.update(_jet_sums(e, px, py, pz, mask))
        label = self.y[start:stop]
        out["label_quark"], out["label_gluon"] = label == 1, label == 0
        return out


# --------------------------------------------------------------------- Parquet
class _Parquet:
    """A Parquet file of one jet per row, read by row group."""

    def __init__(self, path: str):
        import pyarrow.parquet as pq

        try:
            self.pf = pq.ParquetFile(path)
        except Exception as exc:
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
        self.path = path
        self.num_entries = int(self.pf.metadata.num_rows)
        self.names = list(self.pf.schema_arrow.names)
        self.columns: list[str] = []
        self.sizes = [self.pf.metadata.row_group(i).num_rows
                      for i in range(self.pf.num_row_groups)]

    def close(self) -> None:
        self.pf.close()

    def branches(self) -> list[str]:
        return self.names

    def bytes_per_entry(self) -> int:
        md = self.pf.metadata
        total = sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
        return max(1, total // max(1, self.num_entries))

    def types(self, names: list[str]) -> dict[str, Any]:
        form = ak.from_arrow_schema(self.pf.schema_arrow.empty_table().select(names).schema)
        return {n: form.content(n).type for n in names}

    def read(self, start: int, stop: int) -> dict[str, Any]:
        edges = np.r_[0, np.cumsum(self.sizes)]
        groups = [i for i in range(len(self.sizes)) if edges[i] < stop and edges[i + 1] > start]
        if not groups:  # no rows asked for: an empty table of the columns' types
            part = ak.from_arrow(self.pf.schema_arrow.empty_table().select(self.columns))
            return {n: part[n] for n in self.columns}
        table = self.pf.read_row_groups(groups, columns=self.columns)
        first = int(edges[groups[0]]) if groups else start
        part = ak.from_arrow(table.slice(start - first, stop - start))
        return {n: part[n] for n in self.columns}


def _open(path: str, fmt: str, key: str):
    if not os.path.exists(path):
        raise InputError(f"{path}: file does not exist")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a {fmt} file")
    if fmt == "toptagging":
        return _TopTagging(path, key)
    if fmt.startswith("energyflow"):
        return _EnergyFlow(path, fmt.partition("-")[2] or "massless")
    return _Parquet(path)


def table_info(path: str, fmt: str, tree: str = "tree") -> tuple[list[str], int]:
    """(branch names, number of jets) of a file of format ``fmt`` (metadata only, except
    for ``.npz``, which is loaded)."""
    t = _open(path, fmt, tree)
    try:
        return t.branches(), t.num_entries
    finally:
        t.close()


def branch_types(path: str, fmt: str, branches: list[str], tree: str = "tree"
                 ) -> dict[str, Any]:
    """Awkward types of one entry of ``branches`` (numeric by construction for the
    converted formats; the file's own for Parquet)."""
    t = _open(path, fmt, tree)
    try:
        if isinstance(t, _Parquet):
            return t.types(branches)
        raw = t.read(0, min(1, t.num_entries))
        return {b: ak.Array(raw[b]).type.content for b in branches}
    finally:
        t.close()


def entries_per_chunk(path: str, fmt: str, size_bytes: int, tree: str = "tree") -> int:
    """How many jets of the file fit in ``size_bytes`` of read columns (at least 1)."""
    t = _open(path, fmt, tree)
    try:
        return max(1, size_bytes // max(1, t.bytes_per_entry()))
    finally:
        t.close()


def read_table(path: str, fmt: str, branches: list[str], start: int, stop: int, step: int,
               tree: str = "tree") -> Iterator[tuple[int, ak.Array]]:
    """Chunks ``(entry_start, raw branches as an awkward record array)`` of the jets
    ``start <= entry < stop`` of one file, ``step`` jets each (the last may be shorter);
    ``stop == start`` yields one empty chunk."""
    t = _open(path, fmt, tree)
    if isinstance(t, _Parquet):
        t.columns = list(branches)
    try:
        a = start
        while True:
            b = min(a + step, stop)
            raw = t.read(a, b)
            yield a, ak.zip({k: raw[k] for k in branches}, depth_limit=1)
            if b >= stop:
                return
            a = b
    finally:
        t.close()
