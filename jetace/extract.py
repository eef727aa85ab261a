"""From ROOT files to feature tables: the pipeline behind ``jetace features`` (and the
reading side of ``train``, ``evaluate`` and ``predict``).

Files are read chunk by chunk (:class:`jetace.io.JetFiles`), each chunk is padded and
fed through the feature module in batches on the chosen device, and the features are
written, with the jet-level fields and labels, to Parquet or a ROOT TTree. Memory is
bounded by the step size (the awkward chunk, ~80k JetClass jets at "100 MB") plus at
most :data:`MAX_FEATURE_BYTES` of features and their copy for the writer.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import torch
from tqdm.auto import tqdm

from jetace.errors import InputError, JetaceError
from jetace.io import TEMPORAL_PRIORITY, JetFiles, Paths, SchemaLike, StepSize, to_padded

__all__ = [
    "resolve_device",
    "feature_module",
    "iter_features",
    "jet_columns",
    "feature_columns",
    "TableWriter",
    "write_features",
    "OUTPUT_TREE",
    "MAX_FEATURE_BYTES",
]

#: Name of the TTree written to ROOT feature files.
OUTPUT_TREE = "features"

_DEFAULT_MAX_PARTICLES = 128

#: Largest feature tensor :func:`iter_features` yields at once (bytes).
MAX_FEATURE_BYTES = 256 * 2**20


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU; anything else as given to torch."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise JetaceError(f"invalid device {device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise JetaceError(f"device {device!r} requested but CUDA is not available")
    return dev


def feature_module(spec: Mapping[str, Any] | torch.nn.Module) -> tuple[torch.nn.Module, int]:
    """The feature module for ``spec`` and the number of constituents it is fed.

    ``spec`` is a feature spec dict (``{"family": "bip", "order": 3, "degree": 6,
    "max_particles": 128}``, see :func:`jetace.features.features_from_spec`) or an already
    built module (its ``spec`` attribute, if any, may hold ``max_particles``).
    """
    if isinstance(spec, torch.nn.Module):
        module = spec
        max_particles = (getattr(module, "spec", None) or {}).get(
            "max_particles", _DEFAULT_MAX_PARTICLES)
    else:
        from jetace.features import features_from_spec

        module = features_from_spec(dict(spec))
        max_particles = spec.get("max_particles", _DEFAULT_MAX_PARTICLES)
    return module, int(max_particles)


def iter_features(paths: Paths, spec: Mapping[str, Any] | torch.nn.Module, *,
                  tree: str = "tree", schema: SchemaLike = "jetclass",
                  step_size: StepSize = "100 MB", max_jets: int | None = None,
                  device: str | torch.device = "auto", batch_size: int = 4096,
                  dtype: torch.dtype = torch.float32, progress: bool = True,
                  desc: str | None = None, max_particles: int | None = None,
                  skip_bad: bool = False) -> Iterator[tuple[ak.Array, torch.Tensor]]:
    """Yield ``(jets_chunk, features)`` for every chunk of the input files, in order.

    ``jets_chunk`` is the awkward chunk from :meth:`jetace.io.JetFiles.iterate`;
    ``features`` is a (n, F) tensor on ``device`` computed in batches of ``batch_size``
    jets (padded to the spec's ``max_particles``, in ``dtype``) under ``torch.no_grad``.
    Chunks are split further (into slices of whole batches) so that one yielded feature
    tensor takes at most :data:`MAX_FEATURE_BYTES` (bounded memory for large feature
    sets). A tqdm bar over jets shows the rate in jets/s. All files are checked before the first
    chunk is read (see :class:`jetace.io.JetFiles`); with ``skip_bad`` a file failing
    those checks is skipped with a warning instead. ``max_particles`` overrides the spec's.
    """
    if batch_size < 1:
        raise JetaceError(f"batch size must be positive, got {batch_size}")
    dev = resolve_device(device)
    module, spec_particles = feature_module(spec)
    max_particles = spec_particles if max_particles is None else max_particles
    module = module.to(dev).eval()
    files = JetFiles(paths, tree, schema, extras=False, skip_bad=skip_bad)
    total = files.num_jets if max_jets is None else min(max_jets, files.num_jets)
    rows = _rows_per_yield(module, batch_size, dtype)
    with tqdm(total=total, unit="jets", unit_scale=True, disable=not progress,
              desc=desc or "features", dynamic_ncols=True) as bar, torch.no_grad():
        for chunk in files.iterate(step_size, max_jets):
            for first in range(0, len(chunk), rows):
                part = chunk if rows >= len(chunk) else chunk[first:first + rows]
                outs = []
                for start in range(0, len(part), batch_size):
                    p4, mask = to_padded(part[start:start + batch_size], max_particles,
                                         device=dev, dtype=dtype)
                    outs.append(module(p4, mask))
                    bar.update(len(p4))
                yield part, torch.cat(outs) if len(outs) > 1 else outs[0]


def _rows_per_yield(module: torch.nn.Module, batch_size: int, dtype: torch.dtype) -> int:
    """Jets per yielded feature tensor: whole batches within MAX_FEATURE_BYTES."""
    n_features = getattr(module, "num_features", None)
    if not n_features:
        return 2**62
    itemsize = torch.empty((), dtype=dtype).element_size()
    return batch_size * max(1, MAX_FEATURE_BYTES // (int(n_features) * itemsize * batch_size))


def jet_columns(jets_chunk: ak.Array) -> dict[str, np.ndarray]:
    """Flat per-jet columns named as in the JetClass input: ``jet_*`` and ``label_*``.

    Jet fields get the prefix ``jet_`` (a field stored as ``raw_energy`` because the
    record uses ``mass`` as its vector coordinate comes back as ``jet_energy``); label
    fields keep their names; constituents are not included.
    """
    out: dict[str, np.ndarray] = {}
    fields = ak.fields(jets_chunk)
    if "jet" in fields:
        jet = jets_chunk["jet"]
        for name in ak.fields(jet):
            base = name[4:] if name.startswith("raw_") and name[4:] in TEMPORAL_PRIORITY else name
            out[f"jet_{base}"] = np.asarray(ak.to_numpy(jet[name]))
    for name in fields:
        if name not in ("constituents", "jet"):
            out[name] = np.asarray(ak.to_numpy(jets_chunk[name]))
    return out


_INVALID = re.compile(r"[^A-Za-z0-9_]")


def feature_columns(module: torch.nn.Module, family: str | None = None) -> list[str]:
    """Column names for the module's features: ``<family>_<feature name>``.

    A feature name that already starts with ``<family>_`` is not prefixed again.
    Names are made valid ROOT branch / Python identifiers: '-' becomes 'm', other
    characters outside [A-Za-z0-9_] become '_'; duplicates get a numeric suffix.
    Modules without ``feature_names`` get ``<family>_<index>``.
    """
    family = family or (getattr(module, "spec", None) or {}).get("family", "f")
    names = getattr(module, "feature_names", None)
    n = int(getattr(module, "num_features", len(names) if names is not None else 0))
    if names is None:
        names = [str(i) for i in range(n)]
    out, seen = [], set()
    for raw in names:
        name = _INVALID.sub("_", str(raw).replace("-", "m")).strip("_") or "f"
        if not name.startswith(f"{family}_"):
            name = f"{family}_{name}"
        candidate, k = name, 1
        while candidate in seen:
            candidate, k = f"{name}_{k}", k + 1
        seen.add(candidate)
        out.append(candidate)
    return out


class TableWriter:
    """Incremental writer of flat columns to Parquet (.parquet, .pq) or ROOT (.root).

    Use as a context manager; every ``write(columns)`` appends rows (a dict of equal-length
    1-d numpy arrays; the first call fixes the column names and dtypes). Data go to a
    hidden temporary file in the output's directory, renamed to ``path`` only when the
    block exits without an exception; on an exception the temporary file is deleted, so
    an interrupted run never leaves a file that looks complete. ROOT output is one TTree
    named :data:`OUTPUT_TREE`; ``metadata`` (str -> str) goes into the Parquet schema
    metadata or, for ROOT, into TObjString entries beside the tree.
    """

    _FORMATS = {".parquet": "parquet", ".pq": "parquet", ".root": "root"}

    def __init__(self, path: str | os.PathLike, metadata: Mapping[str, str] | None = None,
                 tree: str = OUTPUT_TREE) -> None:
        self.path = Path(path)
        self.format = self._FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise JetaceError(f"{self.path}: unknown output format {self.path.suffix!r}; "
                              "use .parquet (or .pq) or .root")
        if not self.path.parent.is_dir():
            raise JetaceError(f"{self.path}: the directory {self.path.parent} does not exist")
        self.metadata = dict(metadata or {})
        self.tree = tree
        self.rows = 0
        self._tmp: Path | None = None
        self._writer: Any = None
        self._columns: dict[str, np.dtype] | None = None

    def __enter__(self) -> TableWriter:
        # a fresh hidden name in the same directory (so the final rename is atomic),
        # created by the writer itself so it gets the usual permissions
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}."
                                        f"{secrets.token_hex(4)}.tmp")
        return self

    def write(self, columns: Mapping[str, np.ndarray]) -> None:
        """Append rows; every array 1-d and of the same length."""
        if self._tmp is None:
            raise JetaceError("TableWriter.write called outside its 'with' block")
        arrays = {k: np.ascontiguousarray(v) for k, v in columns.items()}
        lengths = {len(v) for v in arrays.values()}
        if len(lengths) > 1 or any(v.ndim != 1 for v in arrays.values()):
            raise JetaceError("TableWriter.write needs 1-d columns of equal length")
        dtypes = {k: v.dtype for k, v in arrays.items()}
        if self._columns is None:
            self._columns = dtypes
            self._open(arrays)
        elif dtypes != self._columns:
            raise JetaceError(f"{self.path}: columns changed between writes")
        self._append(arrays)
        self.rows += lengths.pop() if lengths else 0

    def _open(self, arrays: dict[str, np.ndarray]) -> None:
        if self.format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = pa.schema([(k, pa.from_numpy_dtype(v.dtype)) for k, v in arrays.items()],
                               metadata=self.metadata)
            # dictionary encoding only costs time on float feature columns
            self._writer = pq.ParquetWriter(self._tmp, schema, use_dictionary=False)
        else:
            import uproot

            self._writer = uproot.recreate(self._tmp)
            for key, value in self.metadata.items():
                self._writer[key] = value
            self._writer.mktree(self.tree, {k: v.dtype for k, v in arrays.items()})

    def _append(self, arrays: dict[str, np.ndarray]) -> None:
        if self.format == "parquet":
            import pyarrow as pa

            self._writer.write_table(pa.table(arrays, schema=self._writer.schema))
        else:
            self._writer[self.tree].extend(arrays)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
            if exc_type is None:
                if self._columns is None:
                    raise JetaceError(f"{self.path}: nothing was written")
                os.replace(self._tmp, self.path)
        finally:
            if self._tmp is not None and self._tmp.exists():
                self._tmp.unlink()
            self._writer = None
            self._tmp = None


def write_features(paths: Paths, output: str | os.PathLike,
                   spec: Mapping[str, Any] | torch.nn.Module, *, tree: str = "tree",
                   schema: SchemaLike = "jetclass", step_size: StepSize = "100 MB",
                   max_jets: int | None = None, device: str | torch.device = "auto",
                   batch_size: int = 4096, dtype: torch.dtype = torch.float32,
                   progress: bool = True, skip_bad: bool = False) -> int:
    """Compute features of every jet in ``paths`` and write them to ``output``.

    Columns: one per feature (named by :func:`feature_columns`, e.g. ``bip_...``) followed
    by :func:`jet_columns` (``jet_pt``, ..., ``label_*``); one row per input jet, in input
    order, none dropped. The format follows the extension (.parquet/.pq or .root, see
    :class:`TableWriter`); the feature spec is stored as metadata ``jetace_spec`` (JSON).
    Returns the number of jets written. With no jets the output holds the columns and no
    rows. Nothing is left at ``output`` if an error interrupts the run. ``skip_bad``: skip
    input files whose tree or branches are missing or bad, with a ``UserWarning`` each
    (see :class:`jetace.io.JetFiles`); otherwise such a file stops the run before any
    feature is computed.
    """
    from jetace import __version__

    module, max_particles = feature_module(spec)
    spec_dict = dict(getattr(module, "spec", None) or
                     ({} if isinstance(spec, torch.nn.Module) else spec))
    spec_dict.setdefault("max_particles", max_particles)
    names = feature_columns(module, spec_dict.get("family"))
    metadata = {"jetace_spec": json.dumps(spec_dict, sort_keys=True),
                "jetace_version": __version__}
    n = 0
    with TableWriter(output, metadata=metadata) as writer:
        for chunk, feats in iter_features(paths, module, tree=tree, schema=schema,
                                          step_size=step_size, max_jets=max_jets,
                                          device=device, batch_size=batch_size, dtype=dtype,
                                          progress=progress, desc=f"features -> {output}",
                                          max_particles=max_particles, skip_bad=skip_bad):
            values = feats.detach().to("cpu").numpy()
            if values.shape != (len(chunk), len(names)):
                raise JetaceError(f"feature module returned shape {values.shape}, expected "
                                  f"({len(chunk)}, {len(names)})")
            writer.write(_table(names, np.ascontiguousarray(values.T), jet_columns(chunk)))
            n += len(chunk)
        if n == 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # already reported by iter_features
                empty = JetFiles(paths, tree, schema, extras=False, skip_bad=skip_bad).empty()
            writer.write(_table(names, np.zeros((len(names), 0), np.float32),
                                jet_columns(empty)))
    return n


def _table(names: list[str], values_t: np.ndarray,
           jets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    clash = set(names) & set(jets)
    if clash:
        raise InputError(f"feature column name(s) {sorted(clash)} clash with jet columns")
    return {**dict(zip(names, values_t, strict=True)), **jets}
