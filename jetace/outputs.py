"""Everything jetace writes goes through this module: checks on output paths made
before any work, the column-naming rule of feature tables, and one atomic table writer.

Checks: an output never replaces an input, and its directory exists and is writable.
Every ``jetace`` command calls :func:`check_outputs` with the files it reads (ROOT
inputs, model files, files named in generator settings) and the files it writes, so
``jetace features a.root -o a.root`` stops at once instead of replacing its input with
the feature table. Two paths are the same file when they resolve to the same path
after following symbolic links, or, for existing files, when the system says they are
the same file (hard links, bind mounts).

Atomic writing: outputs are written under a temporary name in the output's directory,
``.<output name>.<pid>.<random>.tmp``, and renamed to the output only when complete
(:func:`atomic_output`, which :class:`TableWriter` and model files use); on an error,
Ctrl-C or SIGTERM (the command line turns it into an interrupt) the temporary file is
deleted and a file already at the output's name is left as it was. A run killed outright
(SIGKILL, power loss) cannot clean up: the next run writing the same output deletes the
temporary files of that output whose process no longer exists
(:func:`remove_stale_temporaries`); they are hidden files beside the output and may also
be deleted by hand.

Tables: :class:`TableWriter` writes Parquet, a ROOT TTree or a ROOT RNTuple in row groups
of a fixed size; feature tables (``features``, ``predict``), mixtures (``mix``) and
generated jets (``generate``) all use it. Column names: :func:`feature_columns` (the
features) and :func:`jet_columns` (jet fields and labels, under the names they were
read as).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from jetace.errors import InputError, JetaceError
from jetace.io import field_origins

__all__ = ["check_outputs", "check_output_of", "same_file", "check_writable_directory",
           "temporary_name", "remove_stale_temporaries", "atomic_output", "TableWriter",
           "jet_columns", "feature_columns", "OUTPUT_TREE", "ROW_GROUP_BYTES"]

#: Name of the TTree written to ROOT feature files.
OUTPUT_TREE = "features"
#: Bytes of one Parquet row group (ROOT basket set) of :class:`TableWriter`, which fixes
#: its rows per group from the row width (694 float32 features: about 12,000 rows).
ROW_GROUP_BYTES = 32 * 2**20

_GLOB_CHARS = ("*", "?", "[")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file (links resolved; both may be absent)."""
    a, b = os.fspath(a), os.fspath(b)
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _expanded(paths: Iterable[str | os.PathLike]) -> list[str]:
    """Paths with glob patterns replaced by their matches (a pattern matching nothing,
    and a missing file, are left to the reading code to report)."""
    out: list[str] = []
    for item in paths:
        text = os.path.expanduser(os.fspath(item))
        if any(c in text for c in _GLOB_CHARS) and not os.path.exists(text):
            out.extend(sorted(glob.glob(text, recursive=True)))
        else:
            out.append(text)
    return out


def check_writable_directory(output: str | os.PathLike) -> None:
    """Raise :class:`JetaceError` unless ``output``'s directory exists and is writable
    (and ``output`` itself is not a directory)."""
    path = os.fspath(output)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise JetaceError(f"{path}: the output is a directory; name a file inside it")
    if not os.path.isdir(directory):
        raise JetaceError(f"{path}: the output directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise JetaceError(f"{path}: permission denied: cannot write in the output "
                          f"directory {directory}")


def check_outputs(outputs: Iterable[str | os.PathLike | None],
                  inputs: Iterable[str | os.PathLike | None]) -> None:
    """Raise :class:`JetaceError` when an output is one of the inputs, when two outputs
    are the same file, or when an output's directory is missing or not writable.

    ``None`` entries (options not given) are ignored; input patterns are expanded.
    """
    outs = [os.fspath(o) for o in outputs if o is not None]
    ins = _expanded(i for i in inputs if i is not None)
    for i, out in enumerate(outs):
        for other in outs[:i]:
            if same_file(out, other):
                raise JetaceError(f"{out}: the same file is given for two outputs "
                                  f"({other}); choose different names")
        for source in ins:
            if same_file(out, source):
                shown = "" if os.path.abspath(out) == os.path.abspath(source) \
                    else f" ({source})"
                raise JetaceError(f"{out}: the output is one of the input files{shown}; "
                                  "writing it would destroy the input: choose another "
                                  "output name")
        check_writable_directory(out)


def check_output_of(output: str | os.PathLike, paths: str | os.PathLike | Iterable) -> None:
    """:func:`check_outputs` for one output and ``paths`` as the readers take them (a
    path, a pattern or a list of them)."""
    from jetace.io import JetFiles

    items = paths.files if isinstance(paths, JetFiles) else \
        [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    check_outputs([output], items)


def temporary_name(output: str | os.PathLike) -> Path:
    """A fresh hidden name beside ``output`` that carries its name and this process id."""
    output = Path(output)
    return output.with_name(f".{output.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(output: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of ``output`` left by runs that no longer exist
    (killed outright); returns the paths removed."""
    output = Path(output)
    removed = []
    for tmp in output.parent.glob(f".{glob.escape(output.name)}.*.tmp"):
        pid = tmp.name[len(output.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_output(output: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``output`` to; renamed to ``output`` when the block
    ends normally, deleted when it raises (or is interrupted)."""
    output = Path(output)
    remove_stale_temporaries(output)
    tmp = temporary_name(output)
    try:
        yield tmp
        os.replace(tmp, output)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def jet_columns(jets_chunk: ak.Array) -> dict[str, np.ndarray]:
    """Flat per-jet columns named as in the JetClass input: ``jet_*`` and ``label_*``.

    Jet fields get the prefix ``jet_`` (a field renamed by the reader, such as the energy
    stored as ``raw_energy`` because the record uses ``mass`` as its vector coordinate,
    comes back under the name it was read as, ``jet_energy``: the record's parameter
    :data:`jetace.io.FIELD_ORIGINS`); label fields keep their names; constituents are
    not included.
    """
    out: dict[str, np.ndarray] = {}
    fields = ak.fields(jets_chunk)
    if "jet" in fields:
        jet = jets_chunk["jet"]
        origins = field_origins(jet)
        for name in ak.fields(jet):
            out[f"jet_{origins.get(name, name)}"] = np.asarray(ak.to_numpy(jet[name]))
    for name in fields:
        if name not in ("constituents", "jet"):
            if name in out:
                raise InputError(f"branch {name!r} is read both as a label and as a jet "
                                 "field; rename one of them in the schema")
            out[name] = np.asarray(ak.to_numpy(jets_chunk[name]))
    return out


_INVALID = re.compile(r"[^A-Za-z0-9_]")


def feature_columns(module: Any, family: str | None = None) -> list[str]:
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
    """Incremental, atomic writer of a table to Parquet (.parquet, .pq) or ROOT (.root).

    Use as a context manager; every ``write(columns)`` appends rows: a dict of equal-length
    1-d numpy arrays and (ROOT only) awkward arrays of records with jagged fields, such as
    the constituents ``{"part": record}``, written as branches ``part_<field>`` with the
    counter ``npart`` (the JetClass layout). The first call fixes the columns and their
    types. Data go to a temporary file beside ``path`` (:func:`atomic_output`), renamed
    to ``path`` only when the block exits without an exception, so an interrupted run
    never leaves a file that looks complete and never touches a file already at
    ``path``. ROOT output is one TTree named ``tree`` (an RNTuple with ``rntuple``),
    ``compression`` an uproot compression (None: uproot's default); ``metadata``
    (str -> str) goes into the Parquet schema metadata or, for ROOT, into TObjString
    entries beside the tree.

    Rows are buffered and written in row groups (Parquet), baskets (TTree) or clusters
    (RNTuple) of a fixed number of rows, ``group_rows``: as many as fit in
    :data:`ROW_GROUP_BYTES` (at least one), whatever the sizes of the ``write`` calls, so
    the file's metadata, which the writer keeps in memory until it closes, stays small
    at any compute batch size.
    """

    _FORMATS = {".parquet": "parquet", ".pq": "parquet", ".root": "root"}

    def __init__(self, path: str | os.PathLike, metadata: Mapping[str, str] | None = None,
                 tree: str = OUTPUT_TREE, *, rntuple: bool = False,
                 compression: Any = None) -> None:
        self.path = Path(path)
        self.format = self._FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise JetaceError(f"{self.path}: unknown output format {self.path.suffix!r}; "
                              "use .parquet (or .pq) or .root")
        if rntuple and self.format != "root":
            raise JetaceError(f"{self.path}: an RNTuple is written to a .root file")
        check_writable_directory(self.path)
        self.metadata = dict(metadata or {})
        self.tree = tree
        self.rntuple = rntuple
        self.compression = compression
        self.rows = 0
        self.group_rows = 0
        self._atomic: contextlib.AbstractContextManager[Path] | None = None
        self._tmp: Path | None = None
        self._writer: Any = None
        self._tree: Any = None
        self._columns: dict[str, Any] | None = None
        self._pending: list[dict[str, Any]] = []
        self._pending_rows = 0

    def __enter__(self) -> TableWriter:
        self._atomic = atomic_output(self.path)
        self._tmp = self._atomic.__enter__()
        return self

    def write(self, columns: Mapping[str, Any]) -> None:
        """Append rows; every column of the same length (numpy 1-d, or awkward records
        of jagged fields for ROOT)."""
        if self._tmp is None:
            raise JetaceError("TableWriter.write called outside its 'with' block")
        arrays = {k: v if isinstance(v, ak.Array) else np.ascontiguousarray(v)
                  for k, v in columns.items()}
        lengths = {len(v) for v in arrays.values()}
        if len(lengths) > 1 or any(isinstance(v, np.ndarray) and v.ndim != 1
                                   for v in arrays.values()):
            raise JetaceError("TableWriter.write needs 1-d columns of equal length")
        kinds = {k: str(v.type.content) if isinstance(v, ak.Array) else v.dtype
                 for k, v in arrays.items()}
        if self._columns is None:
            self._columns = kinds
            self._open(arrays)
        elif kinds != self._columns:
            raise JetaceError(f"{self.path}: columns changed between writes "
                              f"({_column_change(self._columns, kinds)}); all input files "
                              "must hold the same jet and label branches")
        n = lengths.pop() if lengths else 0
        self._pending.append(arrays)
        self._pending_rows += n
        self.rows += n
        if self._pending_rows >= self.group_rows:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        """Write the buffered rows in groups of ``group_rows`` (the last, partial group
        only when ``final``), keeping the rest buffered."""
        if not self._pending:
            return
        names = list(self._pending[0])
        merged = self._pending[0] if len(self._pending) == 1 else \
            {k: _concatenate([p[k] for p in self._pending]) for k in names}
        self._pending = []
        total, start = self._pending_rows, 0
        while total - start >= self.group_rows or (final and start < total):
            stop = min(start + self.group_rows, total)
            self._append({k: v[start:stop] for k, v in merged.items()})
            start = stop
        if start < total:
            self._pending = [{k: v[start:] for k, v in merged.items()}]
        self._pending_rows = total - start

    def _open(self, arrays: dict[str, Any]) -> None:
        n = max(1, max((len(v) for v in arrays.values()), default=1))
        row_bytes = sum(v.nbytes / n if isinstance(v, ak.Array) else v.dtype.itemsize
                        for v in arrays.values())
        self.group_rows = max(1, int(ROW_GROUP_BYTES // max(1.0, row_bytes)))
        if self.format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            jagged = [k for k, v in arrays.items() if isinstance(v, ak.Array)]
            if jagged:
                raise JetaceError(f"{self.path}: jagged columns {jagged} are written to "
                                  "ROOT files only; use a .root name")
            schema = pa.schema([(k, pa.from_numpy_dtype(v.dtype)) for k, v in arrays.items()],
                               metadata=self.metadata)
            # dictionary encoding only costs time on float feature columns
            self._writer = pq.ParquetWriter(self._tmp, schema, use_dictionary=False)
            return
        import uproot

        self._writer = uproot.recreate(self._tmp, **(
            {} if self.compression is None else {"compression": self.compression}))
        for key, value in self.metadata.items():
            self._writer[key] = value
        if not self.rntuple:  # a TTree is declared by its types, filled by extend
            self._tree = self._writer.mktree(
                self.tree, {k: v.type if isinstance(v, ak.Array) else v.dtype
                            for k, v in arrays.items()},
                field_name=lambda outer, inner: f"{outer}_{inner}",
                counter_name=lambda counted: "n" + counted)

    def _append(self, arrays: dict[str, Any]) -> None:
        if self.format == "parquet":
            import pyarrow as pa

            self._writer.write_table(pa.table(arrays, schema=self._writer.schema))
        elif not self.rntuple:
            self._tree.extend(arrays)
        else:  # an RNTuple is declared by its first cluster; records become fields
            fields = _rntuple_fields(arrays)
            if self._tree is None:
                self._tree = self._writer.mkrntuple(self.tree, fields)
            else:
                self._tree.extend(fields)

    def __exit__(self, exc_type, exc, tb) -> None:
        atomic, self._atomic = self._atomic, None
        try:
            if self._writer is not None:
                if exc_type is None:
                    self._flush(final=True)
                self._writer.close()
            if exc_type is None and self._columns is None:
                raise JetaceError(f"{self.path}: nothing was written")
        except BaseException as error:
            if atomic is None or not atomic.__exit__(type(error), error,
                                                     error.__traceback__):
                raise
        else:
            if atomic is not None:
                atomic.__exit__(exc_type, exc, tb)
        finally:
            self._writer = self._tree = self._tmp = None


def _concatenate(pieces: list[Any]) -> Any:
    return ak.concatenate(pieces) if isinstance(pieces[0], ak.Array) else np.concatenate(pieces)


def _rntuple_fields(arrays: dict[str, Any]) -> dict[str, Any]:
    """RNTuple fields of a table: a record column ``part`` becomes the counter ``npart``
    (int32) and one jagged field ``part_<field>`` per field, as the TTree's branches."""
    out: dict[str, Any] = {}
    for name, values in arrays.items():
        if isinstance(values, ak.Array):
            out[f"n{name}"] = ak.to_numpy(ak.num(values, axis=1)).astype(np.int32)
            out.update({f"{name}_{f}": values[f] for f in ak.fields(values)})
        else:
            out[name] = values
    return out


def _column_change(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    gone = [k for k in before if k not in after]
    new = [k for k in after if k not in before]
    retyped = [f"{k} {before[k]} -> {after[k]}" for k in before
               if k in after and before[k] != after[k]]
    parts = [f"missing {gone}" if gone else "", f"new {new}" if new else "",
             f"dtype {retyped}" if retyped else ""]
    return ", ".join(p for p in parts if p) or "column order"
