"""The feature runner: consecutive blocks of the input files, their features computed
by the back end the run options choose, yielded in input order.

Back ends (all through :func:`jetace.run.executor.ordered_map`):

* one process, CPU: batches read, packed (or padded) and queued :data:`READ_AHEAD` ahead
  in a helper thread; with torch set to T > 1 threads, T batches are computed at once in
  T threads with torch single-threaded (:func:`jetace.run.executor.single_threaded_torch`),
  faster than torch's own threads on the many small operations of a feature batch;
* one process, CUDA: whole chunks read one ahead; each chunk's batches padded one ahead
  into pinned host memory in a helper thread and copied without blocking, so host work
  on the next batch overlaps the GPU's work on this one (:func:`chunk_features`);
* local worker processes (``workers`` > 1, :mod:`jetace.run.workers`);
* a dask cluster (``dask``, :mod:`jetace.run.dask`).

Memory is bounded and does not grow with the input: one chunk of the step size (the
awkward chunk, ~82k JetClass jets at the default "100 MB"), the batches read ahead and
being computed and the feature module's work space for them, at most
:data:`MAX_FEATURE_BYTES` of features per yield plus their column-major copy for the
writer, and the writer's buffers (measured in benchmarks/streaming_memory.py). A smaller
``step_size`` lowers the bound. With worker processes each holds one block and its
features (about 0.9 GB per worker for BIP(4,7) at the defaults).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import awkward as ak
import numpy as np
import torch
from tqdm.auto import tqdm

from jetace.errors import InputError, JetaceError
from jetace.features import feature_module
from jetace.io import MAX_MOMENTUM, JetFiles, Paths, StepSize, to_packed, to_padded
from jetace.run.executor import ordered_map, prefetch, single_threaded_torch
from jetace.run.options import ReadOptions, RunOptions, open_files, resolve_device, resolve_options
from jetace.run.workers import map_blocks

__all__ = ["iter_features", "chunk_features", "feature_blocks", "MAX_FEATURE_BYTES",
           "READ_AHEAD"]

#: Largest feature tensor :func:`iter_features` yields at once (bytes) on CUDA and from
#: worker processes or dask.
MAX_FEATURE_BYTES = 128 * 2**20
#: Batches :func:`iter_features` reads and pads ahead of the ones being computed on CPU
#: (on CUDA, where a block is a whole chunk, one chunk is read ahead).
READ_AHEAD = 4

Block = tuple[int, np.ndarray, ak.Array, Any]  # (file index, entries, jets, features)


def iter_features(paths: Paths | JetFiles, spec: Mapping[str, Any] | torch.nn.Module,
                  read: ReadOptions | None = None, run: RunOptions | None = None, *,
                  desc: str | None = None, max_particles: int | None = None,
                  transform: Callable[[torch.Tensor], Any] | None = None,
                  bad_jets: list[tuple[str, int, str]] | None = None, **options: Any,
                  ) -> Iterator[tuple[ak.Array, Any]]:
    """Yield ``(jets_chunk, features)`` for consecutive blocks of the input files, in order.

    ``paths``: files, patterns, or an already checked :class:`jetace.io.JetFiles`
    (passed down by the caller that inspected them). ``spec``: a feature spec or module
    (:func:`jetace.features.feature_module`). ``read``, ``run``: :class:`ReadOptions`
    and :class:`RunOptions`, with keyword ``options`` (their field names) on top.

    ``jets_chunk`` is (a slice of) an awkward chunk from :meth:`jetace.io.JetFiles.iterate`;
    ``features`` is a (n, F) tensor on the device computed in batches of ``batch_size``
    jets (padded to the spec's ``max_particles``, in ``dtype``) under ``torch.no_grad``.
    On CPU every yield is one batch, the module's output as it is; a module with a
    ``forward_packed`` method (BIP) gets packed constituents (:func:`jetace.io.to_packed`)
    instead of padded ones. On CUDA, with worker processes and with dask a yield is a
    block of whole batches whose features take at most :data:`MAX_FEATURE_BYTES`. With
    worker processes or dask the features are the same, jet for jet (to rounding), and
    ``jets_chunk`` holds the jet-level fields and labels but not the constituents.
    ``transform``, if given, is applied to each features tensor and its result yielded
    instead (in the workers when there are any, so that only its output travels).

    A tqdm bar over jets shows the rate in jets/s. All files are checked before the first
    chunk is read (see :class:`jetace.io.JetFiles`); with ``skip_bad`` a file failing
    those checks is skipped with a warning instead. ``max_particles`` overrides the spec's.

    Nothing non-finite is yielded: a jet with bad momenta (:class:`jetace.io.JetFiles`),
    or whose yielded features (or ``transform`` output) hold a NaN or an infinity, raises
    :class:`InputError` naming the file and the jet entry; with a ``bad_jets`` list
    such jets are left out instead and ``(file, jet entry, reason)`` appended to it.
    The number of jets read is checked against the files' entry counts at the end.
    """
    read, run = resolve_options(read, run, **options)
    if run.dtype is None:
        run = dataclasses.replace(run, dtype=torch.float32)
    # a dask run resolves the device on each worker ("auto": the worker's GPU if any)
    dev = resolve_device(run.device) if run.dask is None else None
    if run.workers > 1 and dev.type != "cpu":
        raise JetaceError(f"worker processes compute on the CPU; got device {dev} with "
                          f"{run.workers} workers (use one process for a GPU)")
    module, spec_particles = feature_module(spec)
    max_particles = spec_particles if max_particles is None else max_particles
    species = getattr(module, "species", ())  # channel weights the module takes
    # the constituents' identity branches are read for species channels only
    files = open_files(paths, read, extras=bool(species), bad_jets=bad_jets)
    if species:  # every file must carry particle identity, checked before any reading
        from jetace.species import identity_source

        for path, fields in zip(files.files, files.constituent_fields, strict=True):
            identity_source(fields, species, path)
    total = files.num_jets if read.max_jets is None else min(read.max_jets, files.num_jets)
    what = "features" if transform is None else "scores"
    skipped_before = 0 if bad_jets is None else len(bad_jets)
    screened = 0
    with tqdm(total=total, unit="jets", unit_scale=True, disable=not run.progress,
              desc=desc or "features", dynamic_ncols=True) as bar:
        if run.dask is not None or run.workers > 1:
            rows = _rows_per_yield(module, run.batch_size, run.dtype)
            blocks = feature_blocks(files, rows, read.step_size, read.max_jets)
            if run.dask is not None:
                from jetace.run.dask import dask_blocks

                source = dask_blocks(files, spec, module, blocks, run, max_particles,
                                     transform, bad_jets is not None)
            else:
                work = functools.partial(_block_features, module, max_particles=max_particles,
                                         dtype=run.dtype, batch_size=run.batch_size,
                                         transform=transform)
                source = ((index, *result) for (index, _, _), result in zip(
                    blocks, map_blocks(files, blocks, work, run.workers), strict=True))
            counted = False
        else:
            source = _local_blocks(files, module.to(dev).eval(), read, run, dev,
                                   max_particles, species, transform, bar)
            counted = True
        done = 0
        for index, entries, part, out in source:
            if not counted:
                bar.update(len(part))
            done += len(part)
            part, out, n = _screen(files.files[index], entries, part, out, what, bad_jets)
            screened += n
            yield part, out
            del out
    read_skipped = 0 if bad_jets is None else len(bad_jets) - skipped_before - screened
    _check_count(files, done + read_skipped, total)


def _local_blocks(files: JetFiles, module: torch.nn.Module, read: ReadOptions,
                  run: RunOptions, dev: torch.device, max_particles: int,
                  species: tuple[str, ...], transform: Callable[[torch.Tensor], Any] | None,
                  bar: tqdm) -> Iterator[Block]:
    """The one-process back end (module doc): blocks and their features, in order."""
    cpu = dev.type == "cpu"
    packed = cpu and hasattr(module, "forward_packed")
    rows = run.batch_size if cpu else _rows_per_yield(module, run.batch_size, run.dtype)

    def blocks() -> Iterator[tuple[int, np.ndarray, ak.Array, Any]]:
        for index, entries, chunk in files.iterate_entries(read.step_size, read.max_jets):
            if packed:
                for k, (part, inputs) in enumerate(
                        _packed_batches(chunk, rows, max_particles, run.dtype, species)):
                    yield index, entries[k * rows:(k + 1) * rows], part, inputs
                continue
            for first in range(0, len(chunk), rows):
                part = chunk if rows >= len(chunk) else chunk[first:first + rows]
                yield (index, entries[first:first + rows], part,
                       to_padded(part, max_particles, dtype=run.dtype, species=species)
                       if cpu else None)

    @torch.no_grad()  # grad mode is per thread: set where the features are computed
    def compute(block: tuple[int, np.ndarray, ak.Array, Any]) -> Any:
        _, _, part, inputs = block
        if inputs is None:
            out = chunk_features(module, part, max_particles=max_particles, device=dev,
                                 dtype=run.dtype, batch_size=run.batch_size, bar=bar)
        else:
            out = module.forward_packed(*inputs) if packed else module(*inputs)
            bar.update(len(part))
        return out if transform is None else transform(out)

    threads = torch.get_num_threads() if cpu else 1
    if threads <= 1:
        for block in prefetch(blocks(), READ_AHEAD if cpu else 1):
            out = compute(block)
            yield (*block[:3], out)
            del block, out
        return
    with single_threaded_torch(), \
            ThreadPoolExecutor(threads, thread_name_prefix="jetace-features") as pool:
        for block, out in ordered_map(lambda b: pool.submit(compute, b),
                                      prefetch(blocks(), READ_AHEAD), threads):
            yield (*block[:3], out)
            del block, out


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
                    device: torch.device, dtype: torch.dtype, ahead: bool,
                    species: tuple[str, ...] = ()
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(p4, mask) on ``device`` for consecutive batches of ``jets``; with ``ahead`` the
    next batch is padded (into pinned memory for CUDA) in a helper thread meanwhile."""
    pin = ahead and device.type == "cuda"

    def pad(s: int) -> tuple[torch.Tensor, torch.Tensor]:
        p4, mask = to_padded(jets[s:s + batch_size], max_particles,
                             device="cpu" if ahead else device, dtype=dtype, species=species)
        return (p4.pin_memory(), mask.pin_memory()) if pin else (p4, mask)

    padded = (pad(s) for s in range(0, len(jets), batch_size))
    for p4, mask in prefetch(padded, 1, name="jetace-pad") if ahead else padded:
        # the caching host allocator keeps the pinned blocks alive until the copy ends
        yield p4.to(device, non_blocking=True), mask.to(device, non_blocking=True)


def _rows_per_yield(module: torch.nn.Module, batch_size: int, dtype: torch.dtype) -> int:
    """Jets per yielded feature tensor: whole batches within MAX_FEATURE_BYTES."""
    n_features = getattr(module, "num_features", None)
    if not n_features:
        return 2**62
    itemsize = torch.empty((), dtype=dtype).element_size()
    return batch_size * max(1, MAX_FEATURE_BYTES // (int(n_features) * itemsize * batch_size))


