"""Feature tables: the library function behind ``jetace features``.

:func:`write_features` computes the features of every jet of the input files with the
feature runner (:func:`jetace.run.features.iter_features`: one process on CPU or CUDA,
local worker processes or a dask cluster, as the run options say) and writes them, with
the jet-level fields and labels, to Parquet or a ROOT TTree through the one atomic
writer (:class:`jetace.outputs.TableWriter`). Measured peak memory in
benchmarks/streaming_memory.py.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import awkward as ak
import numpy as np
import torch

from jetace.errors import InputError, JetaceError
from jetace.features import feature_module
from jetace.io import JetFiles, Paths
from jetace.outputs import TableWriter, check_output_of, feature_columns, jet_columns
from jetace.run.features import iter_features
from jetace.run.options import ReadOptions, RunOptions, open_files, resolve_options

__all__ = ["write_features", "feature_table_layout", "write_feature_table"]


def write_features(paths: Paths | JetFiles, output: str | os.PathLike,
                   spec: Mapping[str, Any] | torch.nn.Module, read: ReadOptions | None = None,
                   run: RunOptions | None = None, *,
                   bad_jets: list[tuple[str, int, str]] | None = None, **options: Any) -> int:
    """Compute features of every jet in ``paths`` and write them to ``output``.

    Columns: one per feature (named by :func:`feature_columns`, e.g. ``bip_...``) followed
    by :func:`jet_columns` (``jet_pt``, ..., ``label_*``); one row per input jet, in input
    order, none dropped. The format follows the extension (.parquet/.pq or .root, see
    :class:`TableWriter`); the feature spec is stored as metadata ``jetace_spec`` (JSON).
    Returns the number of jets written. With no jets the output holds the columns and no
    rows. Nothing is left at ``output`` if an error interrupts the run. ``read``, ``run``:
    :class:`jetace.run.options.ReadOptions` and ``RunOptions`` (their field names also
    as keywords): ``skip_bad`` skips input files whose tree or branches are missing or
    bad, with a ``UserWarning`` each (see :class:`jetace.io.JetFiles`), otherwise such a
    file stops the run before any feature is computed; ``workers`` > 1 computes in CPU
    worker processes, ``dask`` on a dask cluster (see
    :func:`jetace.run.features.iter_features`).
    No NaN or infinity is written: a bad jet stops the run, or with a ``bad_jets`` list
    is left out and listed there (:func:`iter_features`).
    """
    read, run = resolve_options(read, run, **options)
    check_output_of(output, paths)
    module, max_particles, names, metadata = feature_table_layout(spec)
    files = open_files(paths, read, extras=bool(getattr(module, "species", ())),
                       bad_jets=bad_jets)
    pieces = _host_pieces(iter_features(
        files, module, read, run, desc=f"features -> {output}", max_particles=max_particles,
        bad_jets=bad_jets))

    def empty() -> dict[str, np.ndarray]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # already reported when the files were checked
            return jet_columns(files.empty())

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


#: Rows gathered before a write to the table: small compute batches (``--batch-size 17``)
#: are joined first, so the writer sees a few large blocks, not thousands of small ones.
WRITE_ROWS = 4096


def write_feature_table(output: str | os.PathLike, names: list[str],
                        metadata: Mapping[str, str],
                        pieces: Iterable[tuple[np.ndarray, dict[str, np.ndarray]]],
                        empty: Callable[[], dict[str, np.ndarray]]) -> int:
    """Write ``pieces`` of (features (n, F) numpy, jet columns) to ``output`` in order.

    The writing half of :func:`write_features`: feature columns ``names`` then the jet
    columns, through :class:`TableWriter` (temporary name, renamed at the end), in
    blocks of at least :data:`WRITE_ROWS` rows. With no rows at all, ``empty()`` gives
    zero-length jet columns so the table still has every column. Returns the number of
    rows written.
    """
    n = 0
    held: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
    held_rows = 0

    def write() -> None:
        values = np.concatenate([v for v, _ in held]) if len(held) > 1 else held[0][0]
        jets = held[0][1] if len(held) == 1 else \
            {k: np.concatenate([j[k] for _, j in held]) for k in held[0][1]}
        held.clear()
        values_t = np.ascontiguousarray(values.T)
        del values  # one copy of the features at a time, the column-major one
        writer.write(_table(names, values_t, jets))

    with TableWriter(output, metadata=metadata) as writer:
        for values, jets in pieces:
            rows = len(next(iter(jets.values()))) if jets else len(values)
            if values.shape != (rows, len(names)):
                raise JetaceError(f"feature module returned shape {values.shape}, expected "
                                  f"({rows}, {len(names)})")
            held.append((values, jets))
            held_rows += rows
            n += rows
            del values, jets
            if held_rows >= WRITE_ROWS:
                write()
                held_rows = 0
        if held:
            write()
        if n == 0:
            writer.write(_table(names, np.zeros((len(names), 0), np.float32), empty()))
    return n


def _table(names: list[str], values_t: np.ndarray,
           jets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    clash = set(names) & set(jets)
    if clash:
        raise InputError(f"feature column name(s) {sorted(clash)} clash with jet columns")
    return {**dict(zip(names, values_t, strict=True)), **jets}
