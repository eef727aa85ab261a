"""Local worker processes for CPU feature extraction (``--workers N``).

On CPU one Python process computes features at about one core's rate: torch's own
threads and Python threads share the interpreter lock, which the many small operations
of a feature batch hold often. ``N`` worker processes each read, pack and compute whole
blocks of jets single-threaded (decompression included), so reading, decompression and
features run on ``N`` cores at once. The blocks are those
:func:`jetace.extract.iter_features` yields in one process (whole batches of a chunk),
computed in the same batches, so the features are the same jet for jet, and results
come back in input order.

Workers are forked from the calling process where the platform allows it (Linux), so
the feature module and the function applied to each block need not be picklable; else
they are started with ``spawn`` and must be. At most ``2 N`` blocks are in flight, so
memory stays bounded: one block per worker plus the results waiting to be consumed.
A worker's exception (an :class:`~jetace.errors.InputError` naming the file and jet
entry) is raised in the caller at the block where it happened; the others stop.
"""

from __future__ import annotations

import multiprocessing
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import awkward as ak
import torch

from jetace.io import JetFiles, set_read_threads

__all__ = ["map_blocks", "start_method"]

#: per-process state of a worker: (files, function)
_STATE: tuple[JetFiles, Callable[[ak.Array], Any]] | None = None


def start_method() -> str:
    """``"fork"`` where available (no pickling of the module), else ``"spawn"``."""
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def _init(files: JetFiles, fn: Callable[[ak.Array], Any]) -> None:
    global _STATE
    torch.set_num_threads(1)  # one core per worker; N workers use N cores
    set_read_threads(1)
    _STATE = (files, fn)


def _run(file_index: int, start: int, stop: int) -> tuple[ak.Array, Any]:
    files, fn = _STATE
    jets = files.read_range(file_index, start, stop)
    # the caller needs jet-level fields and labels only: the constituents stay here
    fields = [f for f in ak.fields(jets) if f != "constituents"]
    return jets[fields], fn(jets)


def map_blocks(files: JetFiles, blocks: list[tuple[int, int, int]],
               fn: Callable[[ak.Array], Any], workers: int) -> Iterator[tuple[ak.Array, Any]]:
    """Yield ``(jets, fn(jets))`` for every ``(file index, entry_start, entry_stop)`` block
    of ``files``, in order, computed by ``workers`` processes.

    ``jets`` is the block as :meth:`JetFiles.read_range` gives it without the
    ``constituents`` field (jet-level fields and labels); ``fn`` runs in the workers
    with torch single-threaded. Closing the generator early stops the workers.
    """
    if workers < 1:
        raise ValueError(f"need at least one worker, got {workers}")
    context = multiprocessing.get_context(start_method())
    with warnings.catch_warnings():
        # Python >= 3.12 warns about fork in a process with threads; the workers use
        # no lock of the parent's threads (torch is set to one thread in them)
        warnings.simplefilter("ignore", DeprecationWarning)
        pool = context.Pool(workers, initializer=_init, initargs=(files, fn))
    pending: deque = deque()
    todo = iter(blocks)
    try:
        for block in todo:
            pending.append(pool.apply_async(_run, block))
            if len(pending) >= 2 * workers:
                break
        while pending:
            result = pending.popleft().get()
            block = next(todo, None)
            if block is not None:
                pending.append(pool.apply_async(_run, block))
            yield result
            del result
        pool.close()
    finally:
        pool.terminate()
        pool.join()
