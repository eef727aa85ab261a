"""Local worker processes for CPU feature extraction (``--workers N``).

On CPU one Python process computes features at about one core's rate: torch's own
threads and Python threads share the interpreter lock, which the many small operations
of a feature batch hold often. ``N`` worker processes each read, pack and compute whole
blocks of jets single-threaded (decompression included), so reading, decompression and
features run on ``N`` cores at once. The blocks are those
:func:`jetace.extract.iter_features` yields in one process (whole batches of a chunk),
computed in the same batches, so the features are the same jet for jet (to rounding,
see :mod:`jetace.reproducibility`), and results come back in input order.

Workers are forked from the calling process where the platform allows it (Linux), so
the feature module and the function applied to each block need not be picklable; else
they are started with ``spawn`` and must be. Every worker has its own pipe and at most
two blocks assigned, and at most ``2 N`` blocks are in flight, so memory stays bounded:
one block per worker plus the results waiting to be consumed.

A worker's exception (an :class:`~jetace.errors.InputError` naming the file and jet
entry) is raised in the caller at the block where it happened; the others stop. A
worker that dies (killed by a signal, as the out-of-memory killer does, or exiting) is
noticed at once through its process sentinel: it is replaced and the block it was
computing, with the ones queued behind it, is sent again, once. A block whose worker
dies twice raises :class:`WorkerDied`, naming the file, the entry range and the signal.
"""

from __future__ import annotations

import multiprocessing
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

__all__ = ["map_blocks", "start_method", "WorkerDied"]

#: per-process state of a worker: (files, function)
_STATE: tuple[JetFiles, Callable[[ak.Array], Any]] | None = None
#: blocks assigned to one worker at a time (one computed, one queued)
_PER_WORKER = 2


class WorkerDied(JetaceError):
    """A worker process died twice while computing the same block."""


def start_method() -> str:
    """``"fork"`` where available (no pickling of the module), else ``"spawn"``."""
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


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


def map_blocks(files: JetFiles, blocks: Sequence[tuple[int, int, int]],
               fn: Callable[[ak.Array], Any], workers: int
               ) -> Iterator[tuple[Any, ak.Array, Any]]:
    """Yield ``(entries, jets, fn(jets))`` for every ``(file index, entry_start,
    entry_stop)`` block of ``files``, in order, computed by ``workers`` processes.

    ``jets`` is the block as :meth:`JetFiles.read_range` gives it without the
    ``constituents`` field (jet-level fields and labels), ``entries`` their tree
    entries; ``fn`` runs in the workers with torch single-threaded. Bad jets left out
    in the workers (``files.bad_jets`` a list) are appended to ``files.bad_jets`` here.
    Closing the generator early stops the workers. A dead worker is replaced and its
    blocks are sent again once (module doc).
    """
    if workers < 1:
        raise ValueError(f"need at least one worker, got {workers}")
    blocks = list(blocks)
    context = multiprocessing.get_context(start_method())

    def start() -> _Worker:
        with warnings.catch_warnings():
            # Python >= 3.12 warns about fork in a process with threads; the workers use
            # no lock of the parent's threads (torch is set to one thread in them)
            warnings.simplefilter("ignore", DeprecationWarning)
            return _Worker(context, files, fn)

    pool = [start() for _ in range(min(workers, max(1, len(blocks))))]
    results: dict[int, tuple[bool, Any]] = {}
    retried: set[int] = set()
    sent = done = 0
    finished = False
    try:
        while done < len(blocks):
            while sent < len(blocks) and sent - done < _PER_WORKER * workers:
                worker = min(pool, key=lambda w: len(w.assigned))
                if len(worker.assigned) >= _PER_WORKER:
                    break
                worker.send(sent, blocks[sent])
                sent += 1
            if done in results:
                ok, value = results.pop(done)
                if not ok:
                    raise value
                done += 1
                if value[3]:
                    files.bad_jets.extend(value[3])
                yield value[:3]
                del value
                continue
            busy = [w for w in pool if w.assigned]
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
            for i, worker in enumerate(pool):
                if worker.conn in ready or worker.process.sentinel in ready:
                    worker.receive(results)
                if worker.process.sentinel in ready or not worker.process.is_alive():
                    pool[i] = _replace(worker, start, retried, files)
        finished = True
    finally:
        for worker in pool:
            worker.stop(5 if finished else 0)


def _replace(dead: _Worker, start: Callable[[], _Worker], retried: set[int],
             files: JetFiles) -> _Worker:
    """A new worker for ``dead``, with its unfinished blocks sent again; raises
    :class:`WorkerDied` when the block it was computing had been retried already."""
    dead.process.join()
    reason = _death(dead.process.exitcode)
    dead.conn.close()
    if dead.assigned:
        seq, (index, a, b) = dead.assigned[0]
        if seq in retried:
            raise WorkerDied(f"{files.files[index]}: a worker process died ({reason}) while "
                             f"computing jets [{a}, {b}), also when the block was computed "
                             "again; use fewer --workers or a smaller --batch-size if memory "
                             "is short")
        retried.add(seq)
        warnings.warn(f"{files.files[index]}: a worker process died ({reason}) while "
                      f"computing jets [{a}, {b}); computing them again", stacklevel=3)
    new = start()
    for seq, block in dead.assigned:
        new.send(seq, block)
    return new
