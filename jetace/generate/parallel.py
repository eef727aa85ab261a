"""Worker processes for :func:`jetace.generate.generate`: one seeded Pythia each.

Worker ``k`` runs :func:`~jetace.generate.pythia.generate_jets` with ``worker=k`` in a
process of :func:`jetace.run.executor.mp_context`, reports progress through a queue and
returns its result; results come back in worker order through
:func:`jetace.run.executor.ordered_map`. A worker that dies (killed by a signal, as the
out-of-memory killer does) stops the run with a :class:`~jetace.errors.JetaceError`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from jetace.errors import JetaceError
from jetace.generate.output import write_jets
from jetace.generate.pythia import generate_jets
from jetace.run.executor import mp_context, ordered_map

__all__ = ["run_workers", "worker_quotas", "worker_paths"]

_MESSAGES: Any = None  # a worker's progress queue, set when it starts


def worker_quotas(n_jets: int, workers: int) -> list[int]:
    return [n_jets // workers + (k < n_jets % workers) for k in range(workers)]


def _start(messages: Any) -> None:
    global _MESSAGES
    _MESSAGES = messages


def _worker_main(k: int, quota: int, kwargs: dict, out_path: str | None, label: str,
                 write_kw: dict) -> dict:
    """Entry point of worker ``k``: its jets (or, written to ``out_path``, its counts)."""
    try:
        res = generate_jets(n_jets=quota, worker=k, progress=lambda n: _MESSAGES.put(n),
                            **kwargs)
        if out_path is not None:
            write_jets(out_path, res, label, **write_kw)
            res = {key: res[key] for key in ("n_events", "seconds", "cpu_seconds")}
        return res
    except JetaceError as exc:
        raise JetaceError(f"generation worker {k} failed: {exc}") from None


def run_workers(quotas: list[int], kwargs: dict, out_paths: list[str | None], label: str,
                write_kw: dict, make_bar: Callable) -> list[dict]:
    """Run one process per quota; ``make_bar()`` opens the progress bar once all started."""
    context = mp_context()
    messages = context.Queue()
    stop = threading.Event()
    with ProcessPoolExecutor(len(quotas), mp_context=context, initializer=_start,
                             initargs=(messages,)) as pool:
        bar = make_bar()

        def show_progress() -> None:
            while not stop.is_set():
                try:
                    bar.update(messages.get(timeout=0.2))
                except queue.Empty:
                    continue

        shower = threading.Thread(target=show_progress, name="jetace-generate-progress",
                                  daemon=True)
        shower.start()
        try:
            return [result for _, result in ordered_map(
                lambda k: pool.submit(_worker_main, k, quotas[k], kwargs, out_paths[k], label,
                                      write_kw), range(len(quotas)), len(quotas))]
        except BrokenProcessPool:
            raise JetaceError("a generation worker died (killed by a signal, as the "
                              "out-of-memory killer does); no output was written") from None
        finally:
            stop.set()
            shower.join()
            while True:  # what the workers reported after the last look
                try:
                    bar.update(messages.get_nowait())
                except queue.Empty:
                    break


def worker_paths(output: Path, workers: int) -> list[Path]:
    width = len(str(workers - 1))
    return [output.with_name(f"{output.stem}_{k:0{width}d}{output.suffix}") for k in range(workers)]
