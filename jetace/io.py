"""Reading jets from ROOT files (TTree or RNTuple) into awkward arrays and padded tensors.

Record layout of every array returned by :func:`read_jets` and :func:`iterate_jets`
(one record per jet)::

    constituents  var * Momentum4D{px, py, pz, energy [, extras such as pid, charge]}
    jet           {pt, eta, phi, energy | mass, nparticles, ...}   (jet-level branches)
    label_*       bool, one field per label branch, full branch name kept

Constituent and jet records carry the ``vector`` package's awkward behaviour (registered
on import of this module), so ``jets.constituents.pt``, ``.eta``, ``.phi``, ``.mass``,
``.boost_p4(...)`` and ``jets.jet.mass`` work without importing ``vector``. Momenta are
in GeV with the dtype stored in the file (float32 for JetClass).

The ``jet`` record is a Momentum4D when its fields form one (pt, eta, phi and a temporal
coordinate). ``vector`` accepts a single temporal coordinate, so when a file stores both
the jet mass and the jet energy (JetClass does), ``mass`` is the coordinate (stored
exactly; ``jets.jet.energy`` is then computed from it, which is well conditioned) and the
stored energy is kept bit for bit in the field ``raw_energy`` (``_raw_energy``, with
more underscores as needed, when the file also has a branch that gives ``raw_energy``).
The record's parameter :data:`FIELD_ORIGINS` maps every renamed field to the field it
was read as, and :func:`jetace.outputs.jet_columns` writes it back under that name
(``jet_energy``), so a user's own ``jet_raw_energy`` or ``jet_raw_mass`` branch keeps its
name and never replaces the mass or the energy.

Documented behaviours for unusual input:

- an empty file (0 entries) is valid: it adds no jets; :func:`read_jets` on empty input
  returns an empty array with the layout above,
- jets with zero constituents are kept; :func:`to_padded` gives them an all-False mask row
  (:func:`to_packed` a count of 0),
- jets with more constituents than ``max_particles``: :func:`to_padded` keeps the
  ``max_particles`` hardest (by pT) and drops the softest ones (the jet itself is kept),
- errors (:class:`jetace.errors.InputError`, message naming the file and the tree, branch
  or jet entry): missing file, a pattern matching no file, unreadable or corrupted ROOT
  file, missing tree, missing branch (the available ones are listed), non-numeric branch,
  jagged branches whose lengths disagree, a header promising more entries than the
  baskets hold, and bad jets: NaN or infinite momenta, a momentum component or energy
  beyond :data:`MAX_MOMENTUM` in magnitude, negative energies. With
  ``bad_jets=[]`` (a list; the command line's ``--skip-bad-jets``) bad jets are left out
  instead, and ``(file, jet entry, reason)`` of each is appended to that list.
  All files are checked for the tree and branches before the first jet is returned, so a
  bad file among many stops a run before anything is computed (or, with
  ``skip_bad=True``, is skipped with a warning and listed in :attr:`JetFiles.skipped`).
  Problems that only the data show (NaN, negative energies, corrupted baskets) raise
  when the chunk holding them is read, with or without ``skip_bad``; the feature writers
  then delete their temporary output, so no jet is ever dropped silently.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import glob
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np
import torch
import uproot
import vector

from jetace.errors import InputError
from jetace.schema import JETCLASS, Schema, resolve_schema

__all__ = [
    "read_jets",
    "iterate_jets",
    "to_padded",
    "to_packed",
    "count_jets",
    "expand_paths",
    "JetFiles",
    "Schema",
    "JETCLASS",
    "resolve_schema",
    "TEMPORAL_PRIORITY",
    "FIELD_ORIGINS",
    "MAX_MOMENTUM",
    "field_origins",
    "set_read_threads",
]

vector.register_awkward()

#: Temporal field names in the order they are chosen as the jet record's coordinate;
#: any other one present is stored as ``raw_<name>``.
TEMPORAL_PRIORITY = ("mass", "energy", "m", "M", "E", "e", "t", "tau")
#: Largest magnitude (GeV) of a constituent's px, py, pz or energy that is read: 10^11
#: times the LHC's beam energy, far above any collision, and small enough that squares
#: and sums of squares of up to 10^6 constituents (4 x 10^36) stay below float32's
#: largest value (3.4 x 10^38). A value of 1e20 GeV is finite in float32, but its square
#: is not.
MAX_MOMENTUM = 1e15
#: Parameter of the jet record: {field name in the record: field name it was read as}
#: for the fields renamed so that the record has one temporal coordinate.
FIELD_ORIGINS = "jetace_field_origins"

PathLike = str | os.PathLike
Paths = PathLike | Sequence[PathLike]
SchemaLike = str | os.PathLike | Schema | Mapping[str, Any]
StepSize = int | str

_GLOB_CHARS = re.compile(r"[*?\[]")
_MEMORY_SIZE = re.compile(r"^\s*\d+(\.\d*)?\s*[kMGT]?i?B\s*$", re.IGNORECASE)


# ----------------------------------------------------------------------------- paths


def expand_paths(paths: Paths) -> list[str]:
    """Files named by ``paths`` (a path, a glob pattern, or a list of them), in order.

    Glob matches are sorted; repeated files are kept (each is read again). A pattern
    that matches nothing, or an empty list, raises :class:`InputError`. A checked
    :class:`JetFiles` names its files.
    """
    if isinstance(paths, JetFiles):
        return list(paths.files)
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise InputError("no input files given")
    out: list[str] = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise InputError(f"input paths must be strings or paths, got {type(item).__name__}")
        text = os.path.expanduser(os.fspath(item))
        if _GLOB_CHARS.search(text) and not os.path.exists(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise InputError(f"no file matches the pattern {text!r}")
            out.extend(matches)
        else:
            out.append(text)
    return out


def _parse_step_size(step_size: StepSize | None) -> int | str | None:
    """A positive number of jets, a memory size string such as '100 MB', or None."""
    if step_size is None:
        return None
    if isinstance(step_size, str) and step_size.strip().isdigit():
        step_size = int(step_size)
    if isinstance(step_size, (int, np.integer)) and not isinstance(step_size, bool):
        if step_size <= 0:
            raise InputError(f"step size must be positive, got {step_size}")
        return int(step_size)
    if isinstance(step_size, str) and _MEMORY_SIZE.match(step_size):
        return step_size
    raise InputError(f"invalid step size {step_size!r}: give a number of jets or a size "
                     "such as '100 MB'")


# ----------------------------------------------------------------------------- files


@dataclass(frozen=True)
class _Plan:
    """Branches to read from one tree, resolved against what the tree holds."""

    momenta: dict[str, str]
    extras: dict[str, str]
    jet: dict[str, str]
    labels: tuple[str, ...]
    weight: str | None = None

    @property
    def branches(self) -> list[str]:
        return [*self.momenta.values(), *self.extras.values(), *self.jet.values(), *self.labels,
                *([self.weight] if self.weight else [])]


@dataclass(frozen=True)
class _Source:
    path: str
    tree: str
    num_entries: int
    plan: _Plan
    format: str = "root"  # or one of jetace.formats.FORMATS


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _open(path: str):
    if not os.path.exists(path):
        raise InputError(f"{path}: file does not exist")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a ROOT file")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: file is empty (0 bytes), not a ROOT file")
    try:
        return uproot.open(path)
    except MemoryError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: not a readable ROOT file ({_describe(exc)})") from exc


def _get_tree(file, path: str, tree: str):
    try:
        names = sorted({k.split(";")[0] for k, c in file.classnames().items()
                        if c in ("TTree", "ROOT::RNTuple", "ROOT::Experimental::RNTuple")})
    except Exception as exc:
        raise InputError(f"{path}: cannot list the file's contents ({_describe(exc)})") from exc
    if tree not in names:
        held = ", ".join(names) if names else "no TTree or RNTuple"
        raise InputError(f"{path}: no TTree or RNTuple named {tree!r} (the file holds: {held})")
    try:
        return file[tree]
    except Exception as exc:
        raise InputError(f"{path}: cannot read tree {tree!r} ({_describe(exc)})") from exc


def _list_available(available: Sequence[str], limit: int = 40) -> str:
    names = list(available)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _resolve_plan(schema: Schema, available: Sequence[str], path: str, tree: str,
                  extras: bool) -> _Plan:
    have = set(available)
    where = f"{path}: tree {tree!r}"
    for branch in schema.momenta.values():
        if branch not in have:
            raise InputError(f"{where} has no branch {branch!r} (schema {schema.name!r}); "
                             f"available branches: {_list_available(available)}")
    extra = {f: b for f, b in schema.extras.items() if b in have} if extras else {}
    if isinstance(schema.jet, str):
        jet = {b[len(schema.jet):]: b for b in available
               if b.startswith(schema.jet) and len(b) > len(schema.jet)}
    else:
        jet = {f: b for f, b in schema.jet.items() if b in have}
    if isinstance(schema.labels, str):
        labels = tuple(b for b in available if b.startswith(schema.labels))
    else:
        reserved = [b for b in schema.labels if b in ("constituents", "jet")]
        if reserved:
            raise InputError(f"{where}: label branch {reserved[0]!r} has the name of a field "
                             "of the jet records (constituents, jet); rename it")
        missing = [b for b in schema.labels if b not in have]
        if missing:
            raise InputError(f"{where} has no label branch {missing[0]!r} (schema "
                             f"{schema.name!r}); available branches: {_list_available(available)}")
        labels = tuple(schema.labels)
    if schema.weight is not None and schema.weight not in have:
        raise InputError(f"{where} has no weight branch {schema.weight!r} (schema "
                         f"{schema.name!r}); available branches: {_list_available(available)}")
    return _Plan(dict(schema.momenta), extra, jet, labels, schema.weight)


def _unwrap(t):
    while isinstance(t, (ak.types.OptionType, ak.types.UnknownType)) and hasattr(t, "content"):
        t = t.content
    return t


def _kind(t) -> tuple[str, str]:
    """('flat'|'jagged'|'other', primitive dtype name or type string) of an entry type."""
    t = _unwrap(t)
    if isinstance(t, ak.types.NumpyType) and t.parameter("__array__") is None:
        return "flat", t.primitive
    if (isinstance(t, (ak.types.ListType, ak.types.RegularType))
            and t.parameter("__array__") not in ("string", "bytestring")):
        inner = _unwrap(t.content)
        if isinstance(inner, ak.types.NumpyType) and inner.parameter("__array__") is None:
            return "jagged", inner.primitive
    return "other", str(t)


def _is_number(primitive: str, allow_bool: bool) -> bool:
    if primitive == "bool":
        return allow_bool
    return primitive.startswith(("int", "uint", "float"))


def _branch_type(obj, branch: str):
    """The awkward type of one entry of ``branch``, from metadata only (no basket read)."""
    item = obj[branch]
    if hasattr(item, "interpretation"):  # TTree branch
        return item.interpretation.awkward_form(obj.file).type
    form = item.to_akform()[0]  # RNTuple field: a one-field record form
    return form.content(form.fields[0]).type


def _check_types(obj, plan: _Plan, path: str, tree: str,
                 types: Mapping[str, Any] | None = None) -> None:
    """Check from the metadata that every planned branch is numeric and of the right shape
    (``types``: branch -> awkward entry type, for files other than ROOT)."""
    expected = ([(b, "jagged", False) for b in plan.momenta.values()]
                + [(b, "jagged", True) for b in plan.extras.values()]
                + [(b, "flat", True) for b in [*plan.jet.values(), *plan.labels]]
                + [(b, "flat", False) for b in [plan.weight] if b])
    for branch, shape, allow_bool in expected:
        try:
            kind, prim = _kind(_branch_type(obj, branch) if types is None else types[branch])
        except Exception as exc:
            raise InputError(f"{path}: tree {tree!r}: branch {branch!r} cannot be read as "
                             f"numbers ({_describe(exc)})") from exc
        if kind == "other" or not _is_number(prim, allow_bool):
            raise InputError(f"{path}: tree {tree!r}: branch {branch!r} is not numeric "
                             f"(type {prim})")
        if kind != shape:
            want = "jagged (one value per constituent)" if shape == "jagged" else \
                "flat (one value per jet)"
            raise InputError(f"{path}: tree {tree!r}: branch {branch!r} should be {want}, "
                             f"but is {kind} {prim}")


def _inspect(path: str, tree: str, schema: Schema, extras: bool,
             fmt: str | None = None) -> _Source:
    from jetace import formats

    fmt = formats.format_of(path, fmt)
    if fmt != "root":  # a public format presented as JetClass-named branches
        available, num_entries = formats.table_info(path, fmt, tree)
        plan = _resolve_plan(schema, available, path, tree, extras)
        _check_types(None, plan, path, tree, formats.branch_types(path, fmt, plan.branches,
                                                                  tree))
        return _Source(path, tree, num_entries, plan, fmt)
    with _open(path) as file:
        obj = _get_tree(file, path, tree)
        try:
            available = list(obj.keys())
            num_entries = int(obj.num_entries)
        except Exception as exc:
            raise InputError(f"{path}: cannot read tree {tree!r} ({_describe(exc)})") from exc
        plan = _resolve_plan(schema, available, path, tree, extras)
        _check_types(obj, plan, path, tree)
        _check_entry_count(obj, plan, path, tree, num_entries)
    return _Source(path, tree, num_entries, plan)


def _check_entry_count(obj, plan: _Plan, path: str, tree: str, num_entries: int) -> None:
    """Check from the metadata that every planned branch of a TTree holds as many entries
    in its baskets as the tree's header promises (an RNTuple has one entry count)."""
    if not hasattr(obj, "branches"):
        return
    for branch in plan.branches:
        try:
            held = int(obj[branch].entry_offsets[-1])
        except Exception as exc:
            raise InputError(f"{path}: tree {tree!r}: branch {branch!r}: cannot read its "
                             f"basket index ({_describe(exc)})") from exc
        if held < num_entries:
            raise InputError(f"{path}: tree {tree!r} promises {num_entries} entries but "
                             f"branch {branch!r} holds {held}: entries [{held}, "
                             f"{num_entries}) are missing (truncated or damaged file)")


def _check_same_branches(first: _Source, other: _Source) -> None:
    """Every file of a set gives the same jet and label columns as the first one."""
    want = [*first.plan.jet.values(), *first.plan.labels]
    have = [*other.plan.jet.values(), *other.plan.labels]
    if set(want) != set(have):
        missing = [b for b in want if b not in have]
        extra = [b for b in have if b not in want]
        raise InputError(f"{other.path}: tree {other.tree!r}: its jet and label branches differ "
                         f"from those of {first.path} (missing: {missing or 'none'}; extra: "
                         f"{extra or 'none'}); all input files must hold the same branches")


# ----------------------------------------------------------------------------- records


def field_origins(record: ak.Array) -> dict[str, str]:
    """{field: field it was read as} of a jet record from the reader (see the module
    doc), also after slicing, fancy indexing or masking; {} when nothing was renamed."""
    layout = record.layout
    while not isinstance(layout, ak.contents.RecordArray) and hasattr(layout, "content"):
        layout = layout.content  # indexed, option or list-offset wrappers of the record
    return dict(layout.parameter(FIELD_ORIGINS) or {})


def _jet_record(columns: dict[str, Any], n: int) -> ak.Array:
    """Jet-level fields as a Momentum4D record when they form one, else a plain record."""
    if not columns:
        return ak.Array(ak.contents.RecordArray([], [], length=n))
    present = [f for f in TEMPORAL_PRIORITY if f in columns]
    renamed: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for name, values in columns.items():
        if name in present[1:]:
            new = f"raw_{name}"
            while new in columns or new in renamed:  # never shadow a field of the file
                new = f"_{new}"
            origins[new] = name
            name = new
        renamed[name] = values
    record = ak.zip(renamed, depth_limit=1)
    if origins:
        record = ak.with_parameter(record, FIELD_ORIGINS, origins)
    try:
        return ak.with_name(record, "Momentum4D")
    except TypeError:
        return record


def _jet_problems(raw: ak.Array, plan: _Plan, counts: np.ndarray) -> dict[int, str]:
    """{jet index in the chunk: its first problem} for jets with bad momenta."""
    ends = np.cumsum(counts)
    problems: dict[int, str] = {}
    for field, branch in plan.momenta.items():
        flat = ak.to_numpy(ak.flatten(raw[branch], axis=None))
        finite = np.isfinite(flat)
        checks = [("a NaN or infinite value", ~finite),
                  (f"a value beyond {MAX_MOMENTUM:.0e} GeV in magnitude (its square "
                   "overflows float arithmetic)", finite & (np.abs(flat) > MAX_MOMENTUM))]
        if field == "energy":
            checks.append(("a negative energy", flat < 0))
        for what, bad in checks:
            if bad.any():
                for jet in np.unique(np.searchsorted(ends, np.flatnonzero(bad), side="right")):
                    problems.setdefault(int(jet), f"branch {branch!r} has {what}")
    return problems


def _build(raw: ak.Array, src: _Source, entry_start: int,
           bad_jets: list[tuple[str, int, str]] | None = None) -> tuple[np.ndarray, ak.Array]:
    """Validate one chunk of raw branches and assemble the jet records; returns the tree
    entries of the jets kept and the jets. Bad jets raise, or with a ``bad_jets`` list
    are left out and appended to it."""
    plan, path = src.plan, src.path
    where = f"{path}: tree {src.tree!r}"
    px_branch = plan.momenta["px"]
    counts = ak.to_numpy(ak.num(raw[px_branch], axis=1))
    for branch in [*plan.momenta.values(), *plan.extras.values()]:
        if branch == px_branch:
            continue
        other = ak.to_numpy(ak.num(raw[branch], axis=1))
        if not np.array_equal(other, counts):
            i = int(np.argmax(other != counts))
            raise InputError(f"{where}: jagged branch {branch!r} has {other[i]} values but "
                             f"{px_branch!r} has {counts[i]} at jet entry {entry_start + i}")
    entries = np.arange(entry_start, entry_start + len(raw), dtype=np.int64)
    problems = _jet_problems(raw, plan, counts)
    if problems:
        if bad_jets is None:
            first = min(problems)
            raise InputError(f"{where}: {problems[first]} at jet entry {entry_start + first} "
                             "(--skip-bad-jets leaves such jets out)")
        bad_jets.extend((path, entry_start + i, problems[i]) for i in sorted(problems))
        keep = np.ones(len(raw), dtype=bool)
        keep[list(problems)] = False
        raw, entries = raw[keep], entries[keep]
    fields = {**plan.momenta, **plan.extras}
    constituents = ak.zip({f: raw[b] for f, b in fields.items()}, with_name="Momentum4D")
    jet = _jet_record({f: raw[b] for f, b in plan.jet.items()}, len(raw))
    labels = {}
    for b in plan.labels:
        values = raw[b]
        labels[b] = values if values.type.content == ak.types.NumpyType("bool") else values != 0
    if plan.weight:
        weight = np.asarray(ak.to_numpy(raw[plan.weight]), dtype=np.float64)
        if not np.isfinite(weight).all():
            i = int(np.argmax(~np.isfinite(weight)))
            raise InputError(f"{where}: weight branch {plan.weight!r} has a NaN or infinite "
                             f"value at jet entry {entry_start + i}")
        labels["weight"] = weight
    return entries, ak.zip({"constituents": constituents, "jet": jet, **labels},
                           depth_limit=1)


#: threads that decompress baskets (zlib, lzma, zstd release the GIL); 1: the reading
#: thread itself (see :func:`set_read_threads`)
_READ_THREADS = [min(4, os.cpu_count() or 1)]


def set_read_threads(n: int) -> int:
    """Decompress baskets in ``n`` threads while reading (default: up to 4, one per core);
    1 decompresses in the reading thread. Worker processes (``--workers``), each one of N
    processes on N cores, use 1: more threads would only share the same cores. Returns
    the previous setting."""
    if int(n) < 1:
        raise ValueError(f"need at least one read thread, got {n}")
    before, _READ_THREADS[0] = _READ_THREADS[0], int(n)
    _decompression_pool.cache_clear()
    return before


@functools.lru_cache(maxsize=1)
def _decompression_pool() -> ThreadPoolExecutor | uproot.source.futures.TrivialExecutor:
    if _READ_THREADS[0] == 1:
        return uproot.source.futures.TrivialExecutor()
    return ThreadPoolExecutor(max_workers=_READ_THREADS[0], thread_name_prefix="jetace-read")


# a forked child has the pool object but none of its threads: it makes its own
os.register_at_fork(after_in_child=_decompression_pool.cache_clear)


# ----------------------------------------------------------------------------- public


class JetFiles:
    """A checked set of input files: every file opened once for its tree and branches.

    Parameters
    ----------
    paths: a path, a glob pattern or a list of them (see :func:`expand_paths`).
    tree: TTree or RNTuple name.
    schema: ``"jetclass"``, a :class:`Schema`, a JSON schema file or a mapping.
    extras: read the schema's optional per-constituent branches (pid, charge, ...).
    skip_bad: skip files that fail the checks (with a warning; listed in ``skipped``)
        instead of raising. Problems found only while reading data (corrupted baskets)
        always raise.
    format: input format of every file (:data:`jetace.formats.FORMATS`), None: by
        extension (see :mod:`jetace.formats`).
    bad_jets: None (jets with bad momenta raise :class:`InputError`), or a list: such
        jets are left out and ``(path, jet entry, reason)`` appended to it.

    Attributes: ``files`` (checked paths), ``num_entries`` (jets per file), ``num_jets``
    (their sum), ``skipped`` (list of (path, reason)), ``bad_jets``.
    """

    def __init__(self, paths: Paths, tree: str = "tree", schema: SchemaLike = "jetclass", *,
                 extras: bool = True, skip_bad: bool = False, format: str | None = None,
                 bad_jets: list[tuple[str, int, str]] | None = None) -> None:
        self.schema = resolve_schema(schema)
        format = self.schema.format if format is None else format
        self.tree = tree
        self.bad_jets = bad_jets
        self.skipped: list[tuple[str, str]] = []
        self._sources: list[_Source] = []
        for path in expand_paths(paths):
            try:
                source = _inspect(path, tree, self.schema, extras, format)
                if self._sources:
                    _check_same_branches(self._sources[0], source)
                self._sources.append(source)
            except InputError as exc:
                if not skip_bad:
                    raise
                self.skipped.append((path, str(exc)))
                warnings.warn(f"skipping bad input file: {exc}", stacklevel=2)
        if not self._sources:
            raise InputError("none of the input files is readable: "
                             + "; ".join(reason for _, reason in self.skipped))

    def without_extras(self) -> JetFiles:
        """These checked files, reading only momenta, jet fields and labels (not the
        optional per-constituent branches such as pid and charge)."""
        new = copy.copy(self)
        new._sources = [dataclasses.replace(s, plan=dataclasses.replace(s.plan, extras={}))
                        for s in self._sources]
        return new

    def with_bad_jets(self, bad_jets: list[tuple[str, int, str]] | None) -> JetFiles:
        """These checked files with ``bad_jets`` as the list of left-out jets."""
        new = copy.copy(self)
        new.bad_jets = bad_jets
        return new

    @property
    def files(self) -> list[str]:
        return [s.path for s in self._sources]

    @property
    def constituent_fields(self) -> list[list[str]]:
        """Per file, the per-constituent record fields it provides (momenta and extras)."""
        return [[*s.plan.momenta, *s.plan.extras] for s in self._sources]

    @property
    def num_entries(self) -> list[int]:
        return [s.num_entries for s in self._sources]

    @property
    def num_jets(self) -> int:
        return sum(self.num_entries)

    def iterate(self, step_size: StepSize | None = "100 MB",
                max_jets: int | None = None) -> Iterator[ak.Array]:
        """Chunks of jets in file order, every jet once; ``step_size=None``: whole files.

        Chunks never span two files; empty files yield nothing. The chunks are exactly
        the entry ranges of :meth:`ranges` (same arguments), so work split by ranges (for
        example over a dask cluster) sees the same chunks as this loop.
        """
        for _, _, chunk in self.iterate_entries(step_size, max_jets):
            yield chunk

    def iterate_entries(self, step_size: StepSize | None = "100 MB",
                        max_jets: int | None = None
                        ) -> Iterator[tuple[int, np.ndarray, ak.Array]]:
        """:meth:`iterate`, yielding ``(file index, entries, chunk)``: ``entries`` (int64)
        are the tree entries of the chunk's jets (consecutive but for bad jets left out)."""
        index = {id(s): i for i, s in enumerate(self._sources)}
        for src, per, stop in self._plan_ranges(step_size, max_jets):
            for entries, chunk in self._iterate_source(src, 0, stop, per):
                yield index[id(src)], entries, chunk

    def ranges(self, step_size: StepSize | None = "100 MB",
               max_jets: int | None = None) -> list[tuple[int, int, int]]:
        """The chunks :meth:`iterate` yields, as ``(file index, entry_start, entry_stop)``.

        ``file index`` refers to :attr:`files`; read one with :meth:`read_range`. A memory
        step size ("100 MB") is turned into a number of entries per file from the file's
        metadata (uproot's estimate for the branches read), so no data is read here.
        """
        index = {id(s): i for i, s in enumerate(self._sources)}
        return [(index[id(src)], a, min(a + per, stop))
                for src, per, stop in self._plan_ranges(step_size, max_jets)
                for a in range(0, stop, per)]

    def read_range(self, file_index: int, entry_start: int, entry_stop: int) -> ak.Array:
        """Jets ``entry_start <= entry < entry_stop`` of file ``files[file_index]``,
        validated and assembled like a chunk of :meth:`iterate`."""
        return self.read_range_entries(file_index, entry_start, entry_stop)[1]

    def read_range_entries(self, file_index: int, entry_start: int, entry_stop: int
                           ) -> tuple[np.ndarray, ak.Array]:
        """:meth:`read_range` and the tree entries of its jets (see :meth:`iterate_entries`)."""
        src = self._sources[file_index]
        if not 0 <= entry_start <= entry_stop <= src.num_entries:
            raise InputError(f"{src.path}: entry range [{entry_start}, {entry_stop}) outside "
                             f"the tree's {src.num_entries} entries")
        if entry_start == entry_stop:
            return np.zeros(0, np.int64), self._empty_of(src)
        return next(self._iterate_source(src, entry_start, entry_stop, entry_stop - entry_start))

    def _plan_ranges(self, step_size: StepSize | None, max_jets: int | None
                     ) -> Iterator[tuple[_Source, int, int]]:
        """(source, entries per chunk, entry stop) for every file with jets to read."""
        step = _parse_step_size(step_size)
        if max_jets is not None and max_jets < 0:
            raise InputError(f"max_jets must be >= 0, got {max_jets}")
        remaining = self.num_jets if max_jets is None else min(max_jets, self.num_jets)
        for src in self._sources:
            if remaining <= 0:
                return
            stop = min(src.num_entries, remaining)
            if stop == 0:
                continue
            remaining -= stop
            per = stop if step is None else step if isinstance(step, int) else \
                self._entries_for(src, step, stop)
            yield src, per, stop

    def _entries_for(self, src: _Source, size: str, stop: int) -> int:
        """Entries of ``src`` in ``size`` of its planned branches (as uproot estimates)."""
        if src.format != "root":
            from jetace import formats

            return formats.entries_per_chunk(src.path, src.format,
                                             uproot._util.memory_size(size), src.tree)
        with _open(src.path) as file:
            obj = _get_tree(file, src.path, src.tree)
            try:
                if hasattr(obj, "branches"):  # TTree
                    n = obj.num_entries_for(size, src.plan.branches, entry_stop=stop)
                else:  # RNTuple
                    n = obj.num_entries_for(size, filter_name=src.plan.branches,
                                            entry_stop=stop)
            except Exception as exc:
                raise InputError(f"{src.path}: tree {src.tree!r}: cannot size chunks of "
                                 f"{size} ({_describe(exc)})") from exc
        return max(1, int(n))

    def _iterate_source(self, src: _Source, start: int, stop: int, step: int
                        ) -> Iterator[tuple[np.ndarray, ak.Array]]:
        """Chunks [start, start + step), [start + step, ...) up to ``stop`` of one file."""
        if src.format != "root":
            from jetace import formats

            for first, raw in formats.read_table(src.path, src.format, src.plan.branches,
                                                 start, stop, step, src.tree):
                yield _build(raw, src, first)
            return
        with _open(src.path) as file:
            obj = _get_tree(file, src.path, src.tree)
            chunks = obj.iterate(src.plan.branches, step_size=step, entry_start=start,
                                 entry_stop=stop, library="ak", report=True,
                                 decompression_executor=_decompression_pool())
            while True:
                try:
                    raw, report = next(chunks)
                except StopIteration:
                    break
                except MemoryError:
                    raise
                except Exception as exc:
                    raise InputError(f"{src.path}: tree {src.tree!r}: cannot read entries from "
                                     f"{start} on; the file may be truncated or corrupted "
                                     f"({_describe(exc)})") from exc
                first, last = int(report.tree_entry_start), int(report.tree_entry_stop)
                if len(raw) != last - first or first != start:
                    raise InputError(f"{src.path}: tree {src.tree!r}: entries [{start}, "
                                     f"{last}) gave {len(raw)} jets; the file is truncated "
                                     "or damaged")
                yield _build(raw, src, first, self.bad_jets)
                start = last
            if start != stop:
                raise InputError(f"{src.path}: tree {src.tree!r}: entries [{start}, {stop}) "
                                 "could not be read (the data end before the entries the "
                                 "header promises; truncated or damaged file)")

    def empty(self) -> ak.Array:
        """A zero-length array with the record layout of the first file."""
        return self._empty_of(self._sources[0])

    def _empty_of(self, src: _Source) -> ak.Array:
        if src.format != "root":
            return next(self._iterate_source(src, 0, 0, 1))
        with _open(src.path) as file:
            obj = _get_tree(file, src.path, src.tree)
            raw = obj.arrays(src.plan.branches, entry_stop=0, library="ak")
        return _build(raw, src, 0)[1]

    def read(self, max_jets: int | None = None) -> ak.Array:
        """All jets (up to ``max_jets``) as one array."""
        chunks = list(self.iterate(step_size=None, max_jets=max_jets))
        if not chunks:
            return self.empty()
        return chunks[0] if len(chunks) == 1 else ak.concatenate(chunks)


def read_jets(paths: Paths, tree: str = "tree", schema: SchemaLike = "jetclass",
              max_jets: int | None = None, *, extras: bool = True,
              skip_bad: bool = False, format: str | None = None) -> ak.Array:
    """Read jets from one or many ROOT files into one awkward Array (layout: module doc).

    ``paths``: a path, glob pattern or list; ``tree``: TTree or RNTuple name; ``schema``:
    ``"jetclass"``, a :class:`Schema`, or a JSON schema file; ``max_jets``: stop after
    this many jets in all; ``extras``: also read pid/charge-like constituent branches;
    ``skip_bad``: skip (with a warning) files whose tree or branches are missing or bad.
    ``format``: the input format of every file (:data:`jetace.formats.FORMATS`); None:
    by extension (.root, .h5 Top Tagging, .npz energyflow, .parquet; see
    :mod:`jetace.formats`).
    """
    return JetFiles(paths, tree, schema, extras=extras, skip_bad=skip_bad,
                    format=format).read(max_jets)


def iterate_jets(paths: Paths, tree: str = "tree", schema: SchemaLike = "jetclass",
                 step_size: StepSize = "100 MB", max_jets: int | None = None, *,
                 extras: bool = True, skip_bad: bool = False,
                 format: str | None = None) -> Iterator[ak.Array]:
    """Yield chunks of jets (layout: module doc) with bounded memory.

    Every jet is yielded exactly once, in file order and entry order. ``step_size`` is a
    number of jets or a memory size of the read branches per chunk ("100 MB"); chunks do
    not span files. All files are checked (tree, branches, types) when this is called,
    before the first chunk. Other arguments as in :func:`read_jets`.
    """
    files = JetFiles(paths, tree, schema, extras=extras, skip_bad=skip_bad, format=format)
    return files.iterate(step_size, max_jets)


def count_jets(paths: Paths, tree: str = "tree", schema: SchemaLike = "jetclass") -> int:
    """Number of jets in the files (from the metadata; no data is read)."""
    return JetFiles(paths, tree, schema).num_jets


# ----------------------------------------------------------------------------- padding

_NUMPY_DTYPE = {torch.float64: np.float64, torch.float32: np.float32}


def _flat(array: ak.Array) -> np.ndarray:
    return np.asarray(ak.to_numpy(ak.flatten(array, axis=None)))


def to_packed(jets: ak.Array, max_particles: int | None = 128,
              dtype: torch.dtype = torch.float32,
              species: Sequence[str] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Constituents of ``jets`` as one flat tensor, ordered and truncated as by
    :func:`to_padded` but without padding.

    ``species``: names of species channels (:mod:`jetace.species`); each adds a column of
    channel weights after the momenta, ordered and truncated with them.

    Returns ``flat`` of shape (N, 4 + len(species)) with (E, px, py, pz) in GeV (then the
    channel weights), the kept constituents of jet 0, then of jet 1, ..., and ``counts``
    of shape (B,), int64, constituents kept per jet (at most ``max_particles``; None keeps
    all). ``flat`` is column-major: the transpose of contiguous component planes
    (4 + len(species), N), so ``flat.T`` is free (call
    ``flat.contiguous()`` for rows). On CPU; ``jets`` as in
    :func:`to_padded`. :func:`to_padded` scatters exactly these rows into its (B, P, 4)
    block, so features computed from either form agree.
    """
    if not isinstance(jets, ak.Array):
        raise InputError(f"expected an awkward Array of jets, got {type(jets).__name__}")
    cons = jets["constituents"] if "constituents" in ak.fields(jets) else jets
    missing = [f for f in ("px", "py", "pz", "energy") if f not in ak.fields(cons)]
    if missing or cons.ndim != 2:
        raise InputError("expected jets with jagged constituents having fields px, py, pz, "
                         f"energy; missing {missing or 'the jagged dimension'}")
    if max_particles is not None and max_particles < 1:
        raise InputError(f"max_particles must be at least 1, got {max_particles}")
    counts = ak.to_numpy(ak.num(cons, axis=1)).astype(np.int64)
    np_dtype = _NUMPY_DTYPE.get(dtype, np.float32)

    px, py = _flat(cons["px"]), _flat(cons["py"])
    pt2 = np.square(px, dtype=np.float64) + np.square(py, dtype=np.float64)
    starts = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    # out of order where pt grows from one constituent to the next inside one jet
    rising = pt2[1:] > pt2[:-1]
    boundary = starts[1:-1] - 1
    rising[boundary[(boundary >= 0) & (boundary < len(rising))]] = False
    order = None
    if rising.any():
        local = ak.argsort(ak.unflatten(pt2, counts), axis=1, ascending=False, stable=True)
        order = _flat(local) + np.repeat(starts[:-1], counts)

    columns = [_flat(cons["energy"]), px, py, _flat(cons["pz"])]
    if species:
        from jetace.species import species_columns

        columns += species_columns(cons, species)
    if order is not None:
        columns = [c[order] for c in columns]
    over = np.flatnonzero(counts > max_particles) if max_particles is not None \
        else np.zeros(0, dtype=np.int64)
    # entries [start + max_particles, end) of every longer jet are dropped: the pieces
    # between them are kept
    keep_to = np.r_[starts[over] + max_particles, len(px)].tolist()
    keep_from = np.r_[0, starts[over + 1]].tolist()
    # one contiguous plane per component, (4, N): the feature code works on planes, and
    # filling planes is a sequential copy (interleaving rows is not)
    planes = np.empty((len(columns), sum(b - a for a, b in zip(keep_from, keep_to, strict=True))),
                      dtype=np_dtype)
    for plane, column in zip(planes, columns, strict=True):
        np.concatenate([column[a:b] for a, b in zip(keep_from, keep_to, strict=True)],
                       out=plane, casting="same_kind")
    if len(over):
        counts = np.minimum(counts, max_particles)
    flat = torch.from_numpy(planes).to(dtype).T
    return flat, torch.from_numpy(counts)


def to_padded(jets: ak.Array, max_particles: int | None = 128,
              device: str | torch.device = "cpu",
              dtype: torch.dtype = torch.float32,
              species: Sequence[str] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad or truncate the constituents of ``jets`` into dense tensors.

    ``jets``: records with a ``constituents`` field (as from :func:`read_jets`), or the
    jagged constituents themselves (fields px, py, pz, energy).

    Returns ``p4`` of shape (B, P, 4) with (E, px, py, pz) in GeV and ``mask`` of shape
    (B, P), bool, True for real constituents; P = ``max_particles`` (None: the largest
    multiplicity in the batch, at least 1). Constituents are always ordered by falling
    pT (ties keep the input order), so truncation keeps the P hardest and the output does
    not depend on the stored order; padding is zeros with mask False. Jets without
    constituents give an all-False mask row. pT is computed in float64; values are copied
    exactly into ``dtype`` (float32 or float64 directly, other dtypes through float32).
    ``species`` adds channel weights after the momenta (:func:`to_packed`): p4 is then
    (B, P, 4 + len(species)), as species-aware feature modules take it.
    """
    flat, counts = to_packed(jets, max_particles, dtype=_float_dtype(dtype), species=species)
    size = max(int(counts.max()) if len(counts) else 0, 1) if max_particles is None \
        else int(max_particles)
    # row of each constituent in the padded (B * P, 4) block; torch's index_copy_ is a
    # few times faster than numpy's boolean-mask assignment here
    # constituent k of jet i (packed at starts[i] + k) goes to row i * size + k
    starts = torch.cumsum(counts, 0) - counts
    dest = torch.arange(len(flat)) + (torch.arange(len(counts)) * size - starts
                                      ).repeat_interleave(counts)
    width = flat.shape[1]
    p4_t = flat.new_zeros((len(counts) * size, width))
    p4_t.index_copy_(0, dest, flat)
    p4_t = p4_t.view(len(counts), size, width)
    mask_t = torch.arange(size)[None, :] < counts[:, None]

    device = torch.device(device)
    if device.type == "cuda":
        p4_t, mask_t = p4_t.pin_memory(), mask_t.pin_memory()
    return (p4_t.to(device=device, dtype=dtype, non_blocking=True),
            mask_t.to(device=device, non_blocking=True))


def _float_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in _NUMPY_DTYPE else torch.float32
