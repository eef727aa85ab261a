"""The dask back end of the feature runner (``jetace features --dask``, ``dask=`` of
:class:`jetace.run.options.RunOptions`).

The client checks every input file (tree, branches, types: :class:`jetace.io.JetFiles`,
so a bad file stops the run, or is skipped with ``skip_bad``, before any work is sent),
splits the files into the blocks of whole batches that the runner uses for worker
processes (:func:`jetace.run.features.feature_blocks`) and submits one task per block
through :func:`jetace.run.executor.ordered_map`. A worker reads its block, computes the
features in the same batches as a single process would
(:func:`jetace.run.features.chunk_features`) and returns them with the jet-level
columns, so the results, consumed in input order, are the single-process ones, jet for
jet.

At most twice the cluster's worker threads tasks are submitted or held at a time, so
memory stays bounded on the client and the workers. Workers must see the input files
under the same paths (a shared file system, or URLs such as ``root://`` that uproot
opens everywhere); only the client writes the output.

Needs the ``dask`` extra (``pip install 'jetace[dask]'``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import awkward as ak
import numpy as np
import torch

from jetace.errors import JetaceError
from jetace.features import features_from_spec
from jetace.io import JetFiles
from jetace.run.executor import ordered_map
from jetace.run.options import RunOptions, resolve_device

__all__ = ["connect", "dask_blocks"]

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


@functools.lru_cache(maxsize=8)
def _worker_files(path: str, tree: str, schema_json: str, extras: bool) -> JetFiles:
    return JetFiles(path, tree, json.loads(schema_json), extras=extras)


@functools.lru_cache(maxsize=4)
def _worker_module(spec_json: str, device: str) -> tuple[torch.nn.Module, torch.device]:
    dev = resolve_device(device)
    return features_from_spec(json.loads(spec_json)).to(dev).eval(), dev


def _features_task(path: str, entry_start: int, entry_stop: int, *, tree: str,
                   schema_json: str, spec_json: str | None, module: torch.nn.Module | None,
                   max_particles: int, device: str, dtype: torch.dtype, batch_size: int,
                   transform: Callable[[torch.Tensor], Any] | None, keep_bad: bool,
                   ) -> tuple[np.ndarray, ak.Array, Any, list]:
    """Runs on a worker: (entries, jet-level fields, features or ``transform`` of them,
    jets left out) of one entry range."""
    from jetace.run.features import chunk_features

    if spec_json is not None:
        module, dev = _worker_module(spec_json, device)
    else:
        dev = resolve_device(device)
        module = module.to(dev).eval()
    identity = bool(getattr(module, "species", ()))  # species channels read pid, charge
    files = _worker_files(path, tree, schema_json, identity).with_bad_jets(
        [] if keep_bad else None)
    entries, jets = files.read_range_entries(0, entry_start, entry_stop)
    with torch.no_grad():
        feats = chunk_features(module, jets, max_particles=max_particles, device=dev,
                               dtype=dtype, batch_size=batch_size)
    out = feats.to("cpu") if transform is None else transform(feats)
    fields = [f for f in ak.fields(jets) if f != "constituents"]
    return entries, jets[fields], out, files.bad_jets or []


def dask_blocks(files: JetFiles, spec: Any, module: torch.nn.Module,
                blocks: list[tuple[int, int, int]], run: RunOptions, max_particles: int,
                transform: Callable[[torch.Tensor], Any] | None, keep_bad: bool,
                ) -> Iterator[tuple[int, np.ndarray, ak.Array, Any]]:
    """``(file index, entries, jets, features)`` of every block, in order, computed on
    the cluster of ``run.dask`` (:func:`connect`); ``device`` is resolved on each worker
    ("auto": the worker's GPU when it has one). Jets left out on the workers are
    appended to ``files.bad_jets``."""
    # workers rebuild the module from its spec when they can; otherwise it is shipped
    module_spec = getattr(module, "spec", None)
    if isinstance(spec, Mapping):
        spec_json = json.dumps(dict(spec))
    elif module_spec is not None and _rebuilds(module, module_spec):
        spec_json = json.dumps(dict(module_spec))
    else:
        spec_json = None
    options = {"tree": files.tree, "schema_json": json.dumps(files.schema.to_dict()),
               "spec_json": spec_json, "module": None if spec_json is not None else module,
               "max_particles": max_particles, "device": str(run.device),
               "dtype": run.dtype, "batch_size": run.batch_size, "transform": transform,
               "keep_bad": keep_bad}
    with connect(run.dask) as client:
        window = max(2, 2 * sum(client.nthreads().values()))

        def submit(block: tuple[int, int, int]) -> Any:
            index, a, b = block
            return client.submit(_features_task, files.files[index], a, b, pure=False,
                                 **options)

        for (index, _, _), (entries, jets, out, bad) in ordered_map(submit, blocks, window):
            if bad:
                files.bad_jets.extend(bad)
            yield index, entries, jets, out
            del out


def _rebuilds(module: torch.nn.Module, spec: Mapping[str, Any]) -> bool:
    """Whether ``features_from_spec(spec)`` rebuilds ``module`` (then only the spec is sent)."""
    try:
        return type(features_from_spec(dict(spec))) is type(module)
    except Exception:
        return False
