"""Feature extraction on a dask.distributed cluster (``jetace features --dask``).

The client checks every input file (tree, branches, types: :class:`jetace.io.JetFiles`,
so a bad file stops the run, or is skipped with ``skip_bad``, before any work is sent),
splits the files into the same entry ranges the single-process pipeline uses
(:meth:`jetace.io.JetFiles.ranges`, further cut into the blocks of whole batches that
:func:`jetace.extract.iter_features` yields), and submits one task per range. A worker
reads its range, computes the features in the same batches as a single process would
(:func:`jetace.extract.chunk_features`) and returns them with the jet-level columns.
The client writes the results in input order through :class:`jetace.outputs.TableWriter`,
so the output is the single-process output, jet for jet.

At most ``max_in_flight`` tasks (default: twice the cluster's worker threads) are
submitted or held at a time, so memory stays bounded on the client and the workers.
Workers must see the input files under the same paths (a shared file system, or URLs
such as ``root://`` that uproot opens everywhere); only the client writes the output.

Needs the ``dask`` extra (``pip install 'jetace[dask]'``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from jetace.errors import JetaceError
from jetace.extract import (
    _rows_per_yield,
    _screen,
    chunk_features,
    feature_blocks,
    feature_table_layout,
    resolve_device,
    write_feature_table,
)
from jetace.io import JetFiles, Paths, SchemaLike, StepSize
from jetace.outputs import check_output_of, jet_columns

__all__ = ["connect", "feature_ranges", "write_features_dask"]

_LOCAL = re.compile(r"^local(?::(\d+))?$")


def _distributed():
    try:
        import distributed
    except ImportError as exc:
        raise JetaceError("--dask needs dask.distributed: pip install 'jetace[dask]'") from exc
    return distributed


@contextlib.contextmanager
def connect(address: Any) -> Iterator[Any]:
    """A ``distributed.Client`` for ``address``; closes what it started on exit.

    ``address``: ``"local:N"`` (a LocalCluster of N single-threaded worker processes on
    this machine; ``"local"``: one per CPU core), a scheduler address such as
    ``"tcp://host:8786"`` (or ``"host:8786"``), or an existing ``distributed.Client``
    (used as is and left open).
    """
    distributed = _distributed()
    if isinstance(address, distributed.Client):
        yield address
        return
    if not isinstance(address, str) or not address.strip():
        raise JetaceError(f"invalid dask address {address!r}: use local:N or tcp://HOST:PORT")
    match = _LOCAL.match(address.strip())
    if match:
        n = int(match.group(1) or os.cpu_count() or 1)
        if n < 1:
            raise JetaceError(f"invalid dask address {address!r}: local:N needs N >= 1")
        with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            yield client
        return
    try:
        client = distributed.Client(address.strip(), timeout="30s")
    except OSError as exc:
        raise JetaceError(f"cannot reach the dask scheduler at {address!r} ({exc})") from exc
    with client:
        yield client


def feature_ranges(files: JetFiles, rows: int, step_size: StepSize = "100 MB",
                   max_jets: int | None = None) -> list[tuple[str, int, int]]:
    """``(path, entry_start, entry_stop)`` of every block :func:`iter_features` yields
    on CUDA or with worker processes (:func:`jetace.extract.feature_blocks`)."""
    return [(files.files[index], a, b)
            for index, a, b in feature_blocks(files, rows, step_size, max_jets)]


@functools.lru_cache(maxsize=8)
def _worker_files(path: str, tree: str, schema_json: str, extras: bool = False) -> JetFiles:
    return JetFiles(path, tree, json.loads(schema_json), extras=extras)


@functools.lru_cache(maxsize=4)
def _worker_module(spec_json: str, device: str) -> tuple[torch.nn.Module, torch.device]:
    from jetace.features import features_from_spec

    dev = resolve_device(device)
    return features_from_spec(json.loads(spec_json)).to(dev).eval(), dev


def _features_task(path: str, entry_start: int, entry_stop: int, *, tree: str,
                   schema_json: str, spec_json: str | None, module: torch.nn.Module | None,
                   max_particles: int, device: str, dtype: torch.dtype,
                   batch_size: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Runs on a worker: features (n, F) and jet columns of one entry range."""
    if spec_json is not None:
        module, dev = _worker_module(spec_json, device)
    else:
        dev = resolve_device(device)
        module = module.to(dev).eval()
    identity = bool(getattr(module, "species", ()))  # species channels read pid, charge
    jets = _worker_files(path, tree, schema_json, identity).read_range(0, entry_start,
                                                                       entry_stop)
    with torch.no_grad():
        feats = chunk_features(module, jets, max_particles=max_particles, device=dev,
                               dtype=dtype, batch_size=batch_size)
    return feats.to("cpu").numpy(), jet_columns(jets)


def write_features_dask(paths: Paths, output: str | os.PathLike,
                        spec: Mapping[str, Any] | torch.nn.Module, *, dask: Any,
                        tree: str = "tree", schema: SchemaLike = "jetclass",
                        step_size: StepSize = "100 MB", max_jets: int | None = None,
                        device: str = "auto", batch_size: int = 4096,
                        dtype: torch.dtype = torch.float32, progress: bool = True,
                        skip_bad: bool = False, max_in_flight: int | None = None) -> int:
    """:func:`jetace.extract.write_features` with the features computed on a dask cluster.

    Same arguments and output (jet for jet) as :func:`~jetace.extract.write_features`;
    ``dask`` is an address or client for :func:`connect`; ``device`` is resolved on each
    worker ("auto": the worker's GPU when it has one). Returns the number of jets written.
    """
    if batch_size < 1:
        raise JetaceError(f"batch size must be positive, got {batch_size}")
    check_output_of(output, paths)
    module, max_particles, names, metadata = feature_table_layout(spec)
    files = JetFiles(paths, tree, schema, extras=bool(getattr(module, "species", ())),
                     skip_bad=skip_bad)
    ranges = feature_ranges(files, _rows_per_yield(module, batch_size, dtype), step_size,
                            max_jets)
    # workers rebuild the module from its spec when they can; otherwise it is shipped
    module_spec = getattr(module, "spec", None)
    if isinstance(spec, Mapping):
        spec_json = json.dumps(dict(spec))
    elif module_spec is not None and _rebuilds(module, module_spec):
        spec_json = json.dumps(dict(module_spec))
    else:
        spec_json = None
    options = {
        "tree": tree,
        "schema_json": json.dumps(files.schema.to_dict()),
        "spec_json": spec_json,
        "module": None if spec_json is not None else module,
        "max_particles": max_particles, "device": str(device), "dtype": dtype,
        "batch_size": batch_size,
    }

    def empty() -> dict[str, np.ndarray]:
        return jet_columns(files.empty())

    with connect(dask) as client:
        window = max_in_flight or max(2, 2 * sum(client.nthreads().values()))
        total = sum(b - a for _, a, b in ranges)
        with tqdm(total=total, unit="jets", unit_scale=True, disable=not progress,
                  desc=f"features (dask) -> {output}", dynamic_ncols=True) as bar:
            pieces = _ordered_results(client, ranges, options, window, bar)
            return write_feature_table(output, names, metadata, pieces, empty)


def _rebuilds(module: torch.nn.Module, spec: Mapping[str, Any]) -> bool:
    """Whether ``features_from_spec(spec)`` rebuilds ``module`` (then only the spec is sent)."""
    from jetace.features import features_from_spec

    try:
        return type(features_from_spec(dict(spec))) is type(module)
    except Exception:
        return False


def _ordered_results(client: Any, ranges: list[tuple[str, int, int]], options: dict,
                     window: int, bar: tqdm) -> Iterator[tuple[np.ndarray, dict]]:
    """Submit the ranges at most ``window`` ahead; yield the results in input order."""
    pending: deque = deque()
    todo = iter(ranges)
    try:
        for item in todo:
            pending.append((client.submit(_features_task, *item, pure=False, **options), item))
            if len(pending) >= window:
                break
        while pending:
            future, block = pending.popleft()
            result = future.result()
            future.release()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((client.submit(_features_task, *nxt, pure=False, **options),
                                nxt))
            bar.update(len(result[0]))
            path, a, b = block
            _screen(path, np.arange(a, b), result[0], result[0], "features", None)
            yield result
            del result
    finally:
        for future, _ in pending:
            future.cancel()
