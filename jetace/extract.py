"""From ROOT files to feature tables: the pipeline behind ``jetace features`` (and the
reading side of ``train``, ``evaluate`` and ``predict``).

Files are read chunk by chunk (:class:`jetace.io.JetFiles`), each chunk is padded and
fed through the feature module in batches on the chosen device, and the features are
written, with the jet-level fields and labels, to Parquet or a ROOT TTree.

Memory is bounded and does not grow with the input: one chunk of the step size (the
awkward chunk, ~82k JetClass jets at the default "100 MB"), one padded batch and the
feature module's work space for it (~200 MB for BIP at 4096 jets), at most
:data:`MAX_FEATURE_BYTES` of features plus their column-major copy for the writer, and
the writer's buffers. Measured peak RSS of ``jetace features`` at the defaults, BIP
(3, 6), float32, CPU: 0.87 / 0.95 / 0.98 GB for 0.1 / 0.5 / 2 million jets in 25k-jet
files, 1.3 GB with full 100 MB chunks (benchmarks/streaming_memory.py; ~0.3 GB of it is
the imported libraries). A smaller ``step_size`` lowers the bound.

With ``workers`` > 1 (CPU), :mod:`jetace.parallel` worker processes each hold one block
and its features (about 0.9 GB per worker for BIP(4,7) at the defaults).

On CUDA the padding of the next batch (in a helper thread, into pinned host memory)
overlaps the GPU's work on the current batch, and copies are non-blocking; see
:func:`chunk_features`.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import awkward as ak
import numpy as np
import torch
from tqdm.auto import tqdm

from jetace.errors import InputError, JetaceError
from jetace.io import (
    MAX_MOMENTUM,
    JetFiles,
    Paths,
    SchemaLike,
    StepSize,
    to_packed,
    to_padded,
)
from jetace.outputs import TableWriter, check_output_of, feature_columns, jet_columns
from jetace.parallel import map_blocks

__all__ = [
    "resolve_device",
    "feature_module",
    "build_features",
    "iter_features",
    "feature_blocks",
    "chunk_features",
    "write_features",
    "feature_table_layout",
    "write_feature_table",
    "MAX_FEATURE_BYTES",
]

_DEFAULT_MAX_PARTICLES = 128

#: Largest feature tensor :func:`iter_features` yields at once (bytes).
MAX_FEATURE_BYTES = 128 * 2**20
#: Batches :func:`iter_features` reads and pads ahead of the one being computed on CPU
#: (on CUDA, where a block is a whole chunk, one chunk is read ahead).
READ_AHEAD = 4


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


def build_features(spec: Mapping[str, Any]) -> torch.nn.Module:
    """:func:`jetace.features.features_from_spec`, with an invalid spec (order 0, an
    unknown option...) reported as a :class:`JetaceError` naming the spec."""
    from jetace.features import features_from_spec

    try:
        return features_from_spec(dict(spec))
    except JetaceError:
        raise
    except (ValueError, TypeError) as exc:
        raise JetaceError(f"invalid feature options {dict(spec)}: {exc}") from exc


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
        module = build_features(spec)
        max_particles = spec.get("max_particles", _DEFAULT_MAX_PARTICLES)
    return module, int(max_particles)


def iter_features(paths: Paths, spec: Mapping[str, Any] | torch.nn.Module, *,
                  tree: str = "tree", schema: SchemaLike = "jetclass",
                  step_size: StepSize = "100 MB", max_jets: int | None = None,
                  device: str | torch.device = "auto", batch_size: int = 4096,
                  dtype: torch.dtype = torch.float32, progress: bool = True,
                  desc: str | None = None, max_particles: int | None = None,
                  skip_bad: bool = False, workers: int = 1,
                  transform: Callable[[torch.Tensor], Any] | None = None,
                  bad_jets: list[tuple[str, int, str]] | None = None,
                  ) -> Iterator[tuple[ak.Array, Any]]:
    """Yield ``(jets_chunk, features)`` for consecutive blocks of the input files, in order.

    ``jets_chunk`` is (a slice of) an awkward chunk from :meth:`jetace.io.JetFiles.iterate`;
    ``features`` is a (n, F) tensor on ``device`` computed in batches of ``batch_size``
    jets (padded to the spec's ``max_particles``, in ``dtype``) under ``torch.no_grad``.
    On CPU every yield is one batch, the module's output as it is; a module with a
    ``forward_packed`` method (BIP) gets packed constituents (:func:`jetace.io.to_packed`)
    instead of padded ones. On CUDA a yield is a chunk, split further (into slices of
    whole batches) so that one yielded feature tensor takes at most
    :data:`MAX_FEATURE_BYTES` (bounded memory for large feature sets); its batches are
    padded one ahead into pinned memory and copied without blocking
    (:func:`chunk_features`). ``device="auto"`` picks CUDA when present.

    ``workers`` > 1 (CPU only): that many worker processes read and compute blocks of
    whole batches (as on CUDA) in parallel (:func:`jetace.parallel.map_blocks`); the
    features are the same, jet for jet, and ``jets_chunk`` then holds the jet-level
    fields and labels but not the constituents. ``transform``, if given, is applied to
    each features tensor and its result yielded instead (in the workers when there are
    any, so that only its output crosses between processes).

    A tqdm bar over jets shows the rate in jets/s. All files are checked before the first
    chunk is read (see :class:`jetace.io.JetFiles`); with ``skip_bad`` a file failing
    those checks is skipped with a warning instead. ``max_particles`` overrides the spec's.

    Nothing non-finite is yielded: a jet with bad momenta (:class:`jetace.io.JetFiles`),
    or whose yielded features (or ``transform`` output) hold a NaN or an infinity, raises
    :class:`InputError` naming the file and the jet entry; with a ``bad_jets`` list
    such jets are left out instead and ``(file, jet entry, reason)`` appended to it.
    The number of jets read is checked against the files' entry counts at the end.
    """
    if batch_size < 1:
        raise JetaceError(f"batch size must be positive, got {batch_size}")
    if workers < 1:
        raise JetaceError(f"need at least one worker, got {workers}")
    dev = resolve_device(device)
    if workers > 1 and dev.type != "cpu":
        raise JetaceError(f"worker processes compute on the CPU; got device {dev} with "
                          f"{workers} workers (use one process for a GPU)")
    module, spec_particles = feature_module(spec)
    max_particles = spec_particles if max_particles is None else max_particles
    module = module.to(dev).eval()
    species = getattr(module, "species", ())  # channel weights the module takes
    # the constituents' identity branches are read for species channels only
    files = JetFiles(paths, tree, schema, extras=bool(species), skip_bad=skip_bad,
                     bad_jets=bad_jets)
    if species:  # every file must carry particle identity, checked before any reading
        from jetace.species import identity_source

        for path, fields in zip(files.files, files.constituent_fields, strict=True):
            identity_source(fields, species, path)
    total = files.num_jets if max_jets is None else min(max_jets, files.num_jets)
    finish = transform or (lambda feats: feats)
    what = "features" if transform is None else "scores"
    skipped_before = 0 if bad_jets is None else len(bad_jets)
    screened = [0]

    def screen(index: int, entries: np.ndarray, part: ak.Array, out: Any
               ) -> tuple[ak.Array, Any]:
        part, out, n = _screen(files.files[index], entries, part, out, what, bad_jets)
        screened[0] += n
        return part, out

    def read_skipped() -> int:
        return 0 if bad_jets is None else len(bad_jets) - skipped_before - screened[0]
    with tqdm(total=total, unit="jets", unit_scale=True, disable=not progress,
              desc=desc or "features", dynamic_ncols=True) as bar:
        if workers > 1:
            rows = _rows_per_yield(module, batch_size, dtype)
            work = functools.partial(_block_features, module, max_particles=max_particles,
                                     dtype=dtype, batch_size=batch_size, transform=transform)
            done = 0
            blocks = feature_blocks(files, rows, step_size, max_jets)
            for (index, _, _), (entries, jets, out) in zip(
                    blocks, map_blocks(files, blocks, work, workers), strict=True):
                bar.update(len(jets))
                done += len(jets)
                yield screen(index, entries, jets, out)
            _check_count(files, done + read_skipped(), total)
            return
        # CPU: one batch per yield, read and padded (or packed) READ_AHEAD ahead in a
        # helper thread, the module's output yielded as it is; CUDA: whole chunks
        # (padding overlaps the GPU)
        cpu = dev.type == "cpu"
        packed = cpu and hasattr(module, "forward_packed")
        rows = batch_size if cpu else _rows_per_yield(module, batch_size, dtype)

        def blocks() -> Iterator[tuple[int, np.ndarray, ak.Array,
                                       tuple[torch.Tensor, torch.Tensor] | None]]:
            for index, entries, chunk in files.iterate_entries(step_size, max_jets):
                if packed:
                    for k, (part, inputs) in enumerate(
                            _packed_batches(chunk, rows, max_particles, dtype, species)):
                        yield index, entries[k * rows:(k + 1) * rows], part, inputs
                    continue
                for first in range(0, len(chunk), rows):
                    part = chunk if rows >= len(chunk) else chunk[first:first + rows]
                    yield (index, entries[first:first + rows], part,
                           to_padded(part, max_particles, dtype=dtype, species=species)
                           if cpu else None)

        @torch.no_grad()
        def features(part: ak.Array, inputs: tuple[torch.Tensor, torch.Tensor] | None
                     ) -> torch.Tensor:
            if inputs is None:
                return chunk_features(module, part, max_particles=max_particles, device=dev,
                                      dtype=dtype, batch_size=batch_size, bar=bar)
            out = module.forward_packed(*inputs) if packed else module(*inputs)
            bar.update(len(part))
            return out

        done = 0
        for index, entries, part, inputs in read_ahead(blocks(), READ_AHEAD if cpu else 1):
            # no grad mode set across the yield, and no reference to the features
            # kept here while the consumer holds them
            done += len(part)
            yield screen(index, entries, part, finish(features(part, inputs)))
            del inputs
        _check_count(files, done + read_skipped(), total)


def _screen(path: str, entries: np.ndarray, part: ak.Array, out: Any, what: str,
            bad_jets: list[tuple[str, int, str]] | None) -> tuple[ak.Array, Any, int]:
    """``(part, out, 0)`` when every row of ``out`` is finite; else raise naming the first
    bad jet, or (``bad_jets`` a list) drop those rows, list them and count them."""
    values = torch.as_tensor(out)
    if not values.is_floating_point() or len(values) == 0:
        return part, out, 0
    ok = torch.isfinite(values).reshape(len(values), -1).all(dim=1).cpu().numpy()
    if ok.all():
        return part, out, 0
    bad = np.flatnonzero(~ok)
    reason = (f"its {what} are NaN or infinite although its momenta passed the input "
              f"checks (finite, at most {MAX_MOMENTUM:.0e} GeV)")
    if bad_jets is None:
        raise InputError(f"{path}: jet entry {int(entries[bad[0]])}: {reason}; nothing is "
                         "written (--skip-bad-jets leaves such jets out)")
    bad_jets.extend((path, int(entries[i]), reason) for i in bad)
    keep = out[torch.as_tensor(ok, device=values.device)] if isinstance(out, torch.Tensor) \
        else out[ok]
    return part[ok], keep, len(bad)


def _check_count(files: JetFiles, done: int, total: int) -> None:
    """No run ends with fewer (or more) jets than the files promise."""
    if done != total:
        raise InputError(f"{', '.join(files.files)}: read {done} jets where the files promise "
                         f"{total}; a file is truncated or damaged")


def feature_blocks(files: JetFiles, rows: int, step_size: StepSize = "100 MB",
                   max_jets: int | None = None) -> list[tuple[int, int, int]]:
    """``(file index, entry_start, entry_stop)`` of blocks of at most ``rows`` jets: the
    chunks of :meth:`jetace.io.JetFiles.ranges`, each cut from its start. With ``rows``
    a multiple of the batch size, the batches inside a block are those of one process."""
    return [(index, a, min(a + rows, stop))
            for index, start, stop in files.ranges(step_size, max_jets)
            for a in range(start, stop, rows)]


def _block_features(module: torch.nn.Module, jets: ak.Array, *, max_particles: int,
                    dtype: torch.dtype, batch_size: int,
                    transform: Callable[[torch.Tensor], Any] | None) -> Any:
    """Runs in a worker process: CPU features of one block (``transform`` applied)."""
    with torch.no_grad():
        feats = chunk_features(module, jets, max_particles=max_particles,
                               device=torch.device("cpu"), dtype=dtype, batch_size=batch_size)
    return feats if transform is None else transform(feats)


def _packed_batches(jets: ak.Array, batch_size: int, max_particles: int, dtype: torch.dtype,
                    species: tuple[str, ...] = ()
                    ) -> Iterator[tuple[ak.Array, tuple[torch.Tensor, torch.Tensor]]]:
    """``(jets slice, (flat, counts))`` per batch: the whole chunk packed once
    (:func:`jetace.io.to_packed`, with the weights of ``species`` channels), then views
    of it."""
    flat, counts = to_packed(jets, max_particles, dtype=dtype, species=species)
    ends = [0, *torch.cumsum(counts, 0).tolist()]
    for first in range(0, len(jets), batch_size):
        last = min(first + batch_size, len(jets))
        part = jets if last - first == len(jets) else jets[first:last]
        yield part, (flat[ends[first]:ends[last]], counts[first:last])


def read_ahead(items: Iterator[Any], depth: int = 1) -> Iterator[Any]:
    """Yield the items of ``items``, producing up to ``depth`` further ones in a helper
    thread meanwhile.

    Used for the input: reading, decompressing and padding the next blocks overlaps the
    features of this one (``depth`` extra blocks in memory). Exceptions of ``items`` are
    raised here, at the item where they happened. Closing this generator early waits for
    the item being produced, then closes ``items``.
    """
    done = object()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="jetace-read-ahead") as pool:
        try:
            # one worker: the next() calls run one after the other, in submission order
            pending = deque(pool.submit(next, items, done) for _ in range(max(1, depth)))
            while (item := pending.popleft().result()) is not done:
                pending.append(pool.submit(next, items, done))
                yield item
                del item  # hold no reference while the next ones are produced
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            close = getattr(items, "close", None)
            if close is not None:
                close()


def chunk_features(module: torch.nn.Module, jets: ak.Array, *, max_particles: int,
                   device: torch.device, dtype: torch.dtype = torch.float32,
                   batch_size: int = 4096, bar: tqdm | None = None,
                   prefetch: bool | None = None) -> torch.Tensor:
    """Features (n, F) of the ``n`` jets of one chunk, on ``device``.

    Batches of ``batch_size`` jets are taken from the start of ``jets``, padded to
    ``max_particles`` in ``dtype`` (:func:`jetace.io.to_padded`) and fed to ``module``;
    the results fill one preallocated tensor. On CUDA the padding runs one batch ahead in
    a helper thread into pinned host memory and is copied with ``non_blocking=True``, so
    host work on the next batch overlaps the GPU's work on the current one (``prefetch``:
    pad ahead in the helper thread; default: on CUDA only). Call under
    ``torch.no_grad()``. ``bar`` (tqdm) is advanced by the number of jets done.
    """
    out: torch.Tensor | None = None
    start = 0
    if prefetch is None:
        prefetch = device.type == "cuda"
    species = getattr(module, "species", ())
    if device.type == "cpu" and not prefetch and hasattr(module, "forward_packed"):
        batches = (module.forward_packed(*inputs) for _, inputs in
                   _packed_batches(jets, batch_size, max_particles, dtype, species))
    else:
        batches = (module(p4, mask) for p4, mask in
                   _padded_batches(jets, batch_size, max_particles, device, dtype, prefetch,
                                   species))
    for values in batches:
        if out is None:
            out = values.new_empty((len(jets), *values.shape[1:]))
        out[start:start + len(values)] = values
        start += len(values)
        if bar is not None:
            bar.update(len(values))
    if out is None:  # no jets: let the module give the shape of an empty result
        p4, mask = to_padded(jets, max_particles, device=device, dtype=dtype, species=species)
        out = module(p4, mask)
    return out


def _padded_batches(jets: ak.Array, batch_size: int, max_particles: int,
                    device: torch.device, dtype: torch.dtype, prefetch: bool,
                    species: tuple[str, ...] = ()
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(p4, mask) on ``device`` for consecutive batches of ``jets``; with ``prefetch`` the
    next batch is padded (into pinned memory for CUDA) in a helper thread meanwhile."""
    starts = range(0, len(jets), batch_size)
    if not prefetch:
        for s in starts:
            yield to_padded(jets[s:s + batch_size], max_particles, device=device, dtype=dtype,
                            species=species)
        return
    pin = device.type == "cuda"

    def pad(s: int) -> tuple[torch.Tensor, torch.Tensor]:
        p4, mask = to_padded(jets[s:s + batch_size], max_particles, device="cpu", dtype=dtype,
                             species=species)
        return (p4.pin_memory(), mask.pin_memory()) if pin else (p4, mask)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="jetace-pad") as pool:
        pending = pool.submit(pad, starts[0]) if len(starts) else None
        for i in range(len(starts)):
            p4, mask = pending.result()
            if i + 1 < len(starts):
                pending = pool.submit(pad, starts[i + 1])
            # the caching host allocator keeps the pinned blocks alive until the copy ends
            yield (p4.to(device, non_blocking=True), mask.to(device, non_blocking=True))


def _rows_per_yield(module: torch.nn.Module, batch_size: int, dtype: torch.dtype) -> int:
    """Jets per yielded feature tensor: whole batches within MAX_FEATURE_BYTES."""
    n_features = getattr(module, "num_features", None)
    if not n_features:
        return 2**62
    itemsize = torch.empty((), dtype=dtype).element_size()
    return batch_size * max(1, MAX_FEATURE_BYTES // (int(n_features) * itemsize * batch_size))


def write_features(paths: Paths, output: str | os.PathLike,
                   spec: Mapping[str, Any] | torch.nn.Module, *, tree: str = "tree",
                   schema: SchemaLike = "jetclass", step_size: StepSize = "100 MB",
                   max_jets: int | None = None, device: str | torch.device = "auto",
                   batch_size: int = 4096, dtype: torch.dtype = torch.float32,
                   progress: bool = True, skip_bad: bool = False, workers: int = 1,
                   bad_jets: list[tuple[str, int, str]] | None = None) -> int:
    """Compute features of every jet in ``paths`` and write them to ``output``.

    Columns: one per feature (named by :func:`feature_columns`, e.g. ``bip_...``) followed
    by :func:`jet_columns` (``jet_pt``, ..., ``label_*``); one row per input jet, in input
    order, none dropped. The format follows the extension (.parquet/.pq or .root, see
    :class:`TableWriter`); the feature spec is stored as metadata ``jetace_spec`` (JSON).
    Returns the number of jets written. With no jets the output holds the columns and no
    rows. Nothing is left at ``output`` if an error interrupts the run. ``skip_bad``: skip
    input files whose tree or branches are missing or bad, with a ``UserWarning`` each
    (see :class:`jetace.io.JetFiles`); otherwise such a file stops the run before any
    feature is computed. ``workers`` > 1: CPU worker processes (see :func:`iter_features`).
    No NaN or infinity is written: a bad jet stops the run, or with a ``bad_jets`` list
    is left out and listed there (:func:`iter_features`).
    """
    check_output_of(output, paths)
    module, max_particles, names, metadata = feature_table_layout(spec)
    pieces = _host_pieces(iter_features(
        paths, module, tree=tree, schema=schema, step_size=step_size, max_jets=max_jets,
        device=device, batch_size=batch_size, dtype=dtype, progress=progress,
        desc=f"features -> {output}", max_particles=max_particles, skip_bad=skip_bad,
        workers=workers, bad_jets=bad_jets))

    def empty() -> dict[str, np.ndarray]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # already reported by iter_features
            return jet_columns(JetFiles(paths, tree, schema, extras=False,
                                        skip_bad=skip_bad).empty())

    return write_feature_table(output, names, metadata, pieces, empty)


def _host_pieces(chunks: Iterator[tuple[ak.Array, torch.Tensor]]
                 ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(features as numpy, jet columns) per chunk, keeping no reference after the yield
    (so the consumer can free each feature block before the next is computed)."""
    for chunk, feats in chunks:
        item = [feats.detach().to("cpu").numpy(), jet_columns(chunk)]
        del chunk, feats
        yield item.pop(0), item.pop(0)


def feature_table_layout(spec: Mapping[str, Any] | torch.nn.Module
                         ) -> tuple[torch.nn.Module, int, list[str], dict[str, str]]:
    """``(module, max_particles, column names, metadata)`` of the feature table for ``spec``.

    The metadata holds the spec with its ``max_particles`` (``jetace_spec``, JSON) and the
    jetace version (``jetace_version``).
    """
    from jetace import __version__

    module, max_particles = feature_module(spec)
    spec_dict = dict(getattr(module, "spec", None) or
                     ({} if isinstance(spec, torch.nn.Module) else spec))
    spec_dict.setdefault("max_particles", max_particles)
    names = feature_columns(module, spec_dict.get("family"))
    metadata = {"jetace_spec": json.dumps(spec_dict, sort_keys=True),
                "jetace_version": __version__}
    return module, max_particles, names, metadata


def write_feature_table(output: str | os.PathLike, names: list[str],
                        metadata: Mapping[str, str],
                        pieces: Iterable[tuple[np.ndarray, dict[str, np.ndarray]]],
                        empty: Callable[[], dict[str, np.ndarray]]) -> int:
    """Write ``pieces`` of (features (n, F) numpy, jet columns) to ``output`` in order.

    The shared back end of :func:`write_features` and
    :func:`jetace.distributed.write_features_dask`: feature columns ``names`` then the jet
    columns, through :class:`TableWriter` (temporary name, renamed at the end). With no
    rows at all, ``empty()`` gives zero-length jet columns so the table still has every
    column. Returns the number of rows written.
    """
    n = 0
    with TableWriter(output, metadata=metadata) as writer:
        for values, jets in pieces:
            rows = len(next(iter(jets.values()))) if jets else len(values)
            if values.shape != (rows, len(names)):
                raise JetaceError(f"feature module returned shape {values.shape}, expected "
                                  f"({rows}, {len(names)})")
            values_t = np.ascontiguousarray(values.T)
            del values  # one copy of the features at a time, the column-major one
            writer.write(_table(names, values_t, jets))
            n += rows
        if n == 0:
            writer.write(_table(names, np.zeros((len(names), 0), np.float32), empty()))
    return n


def _table(names: list[str], values_t: np.ndarray,
           jets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    clash = set(names) & set(jets)
    if clash:
        raise InputError(f"feature column name(s) {sorted(clash)} clash with jet columns")
    return {**dict(zip(names, values_t, strict=True)), **jets}
