"""The one bounded, in-order runner of jetace, and its thread back end.

Every place where work is done ahead or in parallel and consumed in input order goes
through :func:`ordered_map`: reading and padding ahead of the features (threads), the
features of several batches at once (threads), worker processes
(:mod:`jetace.run.workers`), dask tasks (:mod:`jetace.run.dask`) and Pythia generation
workers (:mod:`jetace.generate.parallel`). A back end is anything with
``submit(item) -> future`` (an object with ``result()`` and ``cancel()``):
:class:`concurrent.futures.ThreadPoolExecutor`, the worker pool, a dask client.
Processes are started with :func:`start_method`, one rule for all of them.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

__all__ = ["ordered_map", "prefetch", "start_method", "mp_context", "single_threaded_torch"]

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(submit: Callable[[T], Any], items: Iterable[T], window: int
                ) -> Iterator[tuple[T, R]]:
    """Yield ``(item, result)`` for every item, in input order, with ``submit(item)``
    (returning a future) called for at most ``window`` items not yet consumed.

    A result's exception is raised here, at its item. No reference to a result is kept
    once it has been yielded. Closing the generator early cancels what is pending (a
    future already running finishes first where the back end cannot stop it).
    """
    window = max(1, int(window))
    pending: deque[tuple[T, Any]] = deque()
    todo = iter(items)
    try:
        for item in todo:
            pending.append((item, submit(item)))
            if len(pending) >= window:
                break
        while pending:
            item, future = pending.popleft()
            result = future.result()
            release = getattr(future, "release", None)  # dask: free the worker's copy
            if release is not None:
                release()
            del future
            for nxt in todo:
                pending.append((nxt, submit(nxt)))
                break
            yield item, result
            del result
    finally:
        for _, future in pending:
            future.cancel()


_DONE = object()


def prefetch(items: Iterator[T], depth: int = 1, name: str = "jetace-read-ahead"
             ) -> Iterator[T]:
    """Yield the items of ``items``, producing up to ``depth`` further ones in a helper
    thread meanwhile (:func:`ordered_map` over one thread calling ``next``).

    Used for the input: reading, decompressing and padding the next blocks overlaps the
    features of this one (``depth`` extra blocks in memory). Exceptions of ``items`` are
    raised here, at the item where they happened. Closing this generator early waits for
    the item being produced, then closes ``items``.
    """
    def forever() -> Iterator[None]:
        while True:
            yield None

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=name) as pool:
        try:
            # one thread: the next() calls run one after the other, in submission order
            for _, item in ordered_map(lambda _: pool.submit(next, items, _DONE), forever(),
                                       depth + 1):
                if item is _DONE:
                    return
                yield item
                del item  # hold no reference while the next ones are produced
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            close = getattr(items, "close", None)
            if close is not None:
                close()


def start_method() -> str:
    """How jetace starts worker processes: ``"fork"`` where the platform has it (no
    pickling of the feature module, no re-import of the user's script), else
    ``"spawn"`` (then what the workers run must pickle)."""
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def mp_context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context of :func:`start_method`."""
    return multiprocessing.get_context(start_method())


_threads_lock = threading.Lock()
_threads_users = 0
_threads_saved = 1


@contextlib.contextmanager
def single_threaded_torch() -> Iterator[None]:
    """torch's intra-op threads set to one while the block runs, restored when the last
    of the blocks open at once (in any thread) ends.

    The CPU back end of the feature runner runs one batch per thread instead: on the
    many small operations of a feature batch, T Python threads each running torch
    single-threaded (torch releases the interpreter lock) are faster than torch's own
    T threads. The setting is process-wide; the count of open blocks keeps two runs in
    two user threads from restoring it under each other.
    """
    global _threads_users, _threads_saved
    with _threads_lock:
        if _threads_users == 0:
            _threads_saved = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_saved)
