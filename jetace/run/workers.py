"""Local worker processes for CPU feature extraction (``--workers N``): a back end of
:func:`jetace.run.executor.ordered_map`.

On CPU one Python process computes features at about one core's rate: torch's own
threads and Python threads share the interpreter lock, which the many small operations
of a feature batch hold often. ``N`` worker processes each read, pack and compute whole
blocks of jets single-threaded (decompression included), so reading, decompression and
features run on ``N`` cores at once. The blocks are those
:func:`jetace.run.features.iter_features` yields in one process (whole batches of a chunk),
computed in the same batches, so the features are the same jet for jet (to rounding,
see :mod:`jetace.reproducibility`), and results come back in input order.

Workers are started by :func:`jetace.run.executor.start_method`: forked where the
platform allows it (Linux), so the feature module and the function applied to each block
need not be picklable; else with ``spawn``, and then they must be. Every worker has its
own pipe and at most two blocks assigned, and at most ``2 N`` blocks are in flight, so
memory stays bounded: one block per worker plus the results waiting to be consumed.

A worker's exception (an :class:`~jetace.errors.InputError` naming the file and jet
entry) is raised in the caller at the block where it happened; the others stop. A
worker that dies (killed by a signal, as the out-of-memory killer does, or exiting) is
noticed at once through its process sentinel: it is replaced and the block it was
computing, with the ones queued behind it, is sent again, once. A block whose worker
dies twice raises :class:`WorkerDied`, naming the file, the entry range and the signal.
"""

from __future__ import annotations

import pickle
import signal
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import wait
from typing import Any

import awkward as ak
import torch

from jetace.errors import JetaceError
from jetace.io import JetFiles, set_read_threads
from jetace.run.executor import mp_context, ordered_map

__all__ = ["map_blocks", "WorkerPool", "WorkerDied"]

#: per-process state of a worker: (files, function)
_STATE: tuple[JetFiles, Callable[[ak.Array], Any]] | None = None
#: blocks assigned to one worker at a time (one computed, one queued)
_PER_WORKER = 2


class WorkerDied(JetaceError):
    """A worker process died twice while computing the same block."""


def _init(files: JetFiles, fn: Callable[[ak.Array], Any]) -> None:
    global _STATE
    torch.set_num_threads(1)  # one core per worker; N workers use N cores
    set_read_threads(1)
    _STATE = (files, fn)


def _run(file_index: int, start: int, stop: int) -> tuple[Any, ...]:
    files, fn = _STATE
    before = len(files.bad_jets) if files.bad_jets is not None else 0
    entries, jets = files.read_range_entries(file_index, start, stop)
    bad = [] if files.bad_jets is None else files.bad_jets[before:]
    if files.bad_jets is not None:
        del files.bad_jets[before:]  # reported to the caller with this block
    # the caller needs jet-level fields and labels only: the constituents stay here
    fields = [f for f in ak.fields(jets) if f != "constituents"]
    return entries, jets[fields], fn(jets), bad


def _sendable(exc: BaseException) -> BaseException:
    """``exc`` if it pickles, else a JetaceError with its text."""
    try:
        pickle.dumps(exc)
        return exc
    except Exception:
        return JetaceError(f"{type(exc).__name__}: {exc}")


def _serve(conn, files: JetFiles, fn: Callable[[ak.Array], Any]) -> None:
    """A worker's loop: receive ``(seq, block)``, send ``(seq, (ok, result))``; None stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller handles Ctrl-C and stops us
    _init(files, fn)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        seq, block = message
        try:
            reply = (True, _run(*block))
        except BaseException as exc:  # raised in the caller, at this block
            reply = (False, _sendable(exc))
        try:
            conn.send((seq, reply))
        except (BrokenPipeError, EOFError):
            return
        except Exception as exc:  # a result that does not pickle
            conn.send((seq, (False, JetaceError(f"cannot return the result of block "
                                                f"{block}: {_sendable(exc)}"))))
        del reply


class _Worker:
    """One worker process, its pipe and the blocks sent to it, in order."""

    def __init__(self, context, files: JetFiles, fn: Callable[[ak.Array], Any]) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, files, fn), daemon=True,
                                       name="jetace-worker")
        self.process.start()
        child.close()
        self.assigned: deque[tuple[int, tuple[int, int, int]]] = deque()

    def send(self, seq: int, block: tuple[int, int, int]) -> None:
        self.assigned.append((seq, block))
        try:
            self.conn.send((seq, block))
        except OSError:  # it died: its sentinel says so
            pass

    def receive(self, results: dict[int, tuple[bool, Any]]) -> None:
        """Move every finished result into ``results``."""
        try:
            while self.conn.poll():
                seq, reply = self.conn.recv()
                results[seq] = reply
                self.assigned = deque(a for a in self.assigned if a[0] != seq)
        except (EOFError, OSError):
            pass  # the process is gone: handled by the caller

    def stop(self, wait_s: float) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(wait_s)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        self.conn.close()


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = ", as the out-of-memory killer does" if -exitcode == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit status {exitcode}"


class _Result:
    """The future of one block in a :class:`WorkerPool`: ``result()`` runs the pool until
    this block's reply is in."""

    def __init__(self, pool: WorkerPool, seq: int) -> None:
        self.pool, self.seq = pool, seq

    def result(self) -> tuple[Any, ak.Array, Any]:
        return self.pool.result(self.seq)

    def cancel(self) -> bool:
        return False  # the pool is stopped as a whole when the run ends


class WorkerPool:
    """``workers`` processes computing ``fn`` of blocks ``(file index, entry_start,
    entry_stop)`` of ``files``; use as a context manager (the workers stop on exit).

    ``submit(block)`` sends the block to the least busy worker and returns its future,
    whose ``result()`` is ``(entries, jets, fn(jets))``: ``jets`` the block without the
    ``constituents`` field (jet-level fields and labels), ``entries`` their tree
    entries; bad jets left out in the workers (``files.bad_jets`` a list) are appended
    to ``files.bad_jets`` when the result is taken. A worker's exception is raised by
    that ``result()``. A dead worker is replaced and its blocks are sent again once
    (module doc).
    """

    def __init__(self, files: JetFiles, fn: Callable[[ak.Array], Any], workers: int) -> None:
        if workers < 1:
            raise ValueError(f"need at least one worker, got {workers}")
        self.files, self.fn, self.workers = files, fn, workers
        self._context = mp_context()
        self._pool: list[_Worker] = []
        self._results: dict[int, tuple[bool, Any]] = {}
        self._retried: set[int] = set()
        self._sent = 0

    def __enter__(self) -> WorkerPool:
        return self

    def _start(self) -> _Worker:
        with warnings.catch_warnings():
            # Python >= 3.12 warns about fork in a process with threads; the workers use
            # no lock of the parent's threads (torch is set to one thread in them)
            warnings.simplefilter("ignore", DeprecationWarning)
            return _Worker(self._context, self.files, self.fn)

    def submit(self, block: tuple[int, int, int]) -> _Result:
        if len(self._pool) < self.workers:
            self._pool.append(self._start())
        worker = min(self._pool, key=lambda w: len(w.assigned))
        seq, self._sent = self._sent, self._sent + 1
        worker.send(seq, block)
        return _Result(self, seq)

    def result(self, seq: int) -> tuple[Any, ak.Array, Any]:
        while seq not in self._results:
            busy = [w for w in self._pool if w.assigned]
            if not busy:
                raise JetaceError(f"block {seq} was never sent to a worker")
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
            for i, worker in enumerate(self._pool):
                if worker.conn in ready or worker.process.sentinel in ready:
                    worker.receive(self._results)
                if worker.process.sentinel in ready or not worker.process.is_alive():
                    self._pool[i] = self._replace(worker)
        ok, value = self._results.pop(seq)
        if not ok:
            raise value
        if value[3]:
            self.files.bad_jets.extend(value[3])
        return value[:3]

    def _replace(self, dead: _Worker) -> _Worker:
        """A new worker for ``dead``, with its unfinished blocks sent again; raises
        :class:`WorkerDied` when the block it was computing had been retried already."""
        dead.process.join()
        reason = _death(dead.process.exitcode)
        dead.conn.close()
        if dead.assigned:
            seq, (index, a, b) = dead.assigned[0]
            path = self.files.files[index]
            if seq in self._retried:
                raise WorkerDied(f"{path}: a worker process died ({reason}) while computing "
                                 f"jets [{a}, {b}), also when the block was computed again; "
                                 "use fewer --workers or a smaller --batch-size if memory "
                                 "is short")
            self._retried.add(seq)
            warnings.warn(f"{path}: a worker process died ({reason}) while computing jets "
                          f"[{a}, {b}); computing them again", stacklevel=4)
        new = self._start()
        for seq, block in dead.assigned:
            new.send(seq, block)
        return new

    def __exit__(self, exc_type, exc, tb) -> None:
        for worker in self._pool:
            worker.stop(5 if exc_type is None else 0)


def map_blocks(files: JetFiles, blocks: Sequence[tuple[int, int, int]],
               fn: Callable[[ak.Array], Any], workers: int
               ) -> Iterator[tuple[Any, ak.Array, Any]]:
    """Yield ``(entries, jets, fn(jets))`` for every block of ``files``, in order,
    computed by ``workers`` processes (:class:`WorkerPool` through
    :func:`jetace.run.executor.ordered_map`, at most two blocks per worker in flight).
    Closing the generator early stops the workers."""
    blocks = list(blocks)
    with WorkerPool(files, fn, min(workers, max(1, len(blocks)))) as pool:
        for _, result in ordered_map(pool.submit, blocks, _PER_WORKER * pool.workers):
            yield result
            del result
