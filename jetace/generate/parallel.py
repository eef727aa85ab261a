"""Worker processes for :func:`jetace.generate.generate`: one seeded Pythia each.

Worker ``k`` runs :func:`~jetace.generate.pythia.generate_jets` with ``worker=k`` and
reports progress and its result through a queue; results are returned in worker order.
"""

from __future__ import annotations

import queue
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from jetace.errors import JetaceError
from jetace.generate.output import write_jets
from jetace.generate.pythia import generate_jets

__all__ = ["run_workers", "worker_quotas", "worker_paths"]


def worker_quotas(n_jets: int, workers: int) -> list[int]:
    return [n_jets // workers + (k < n_jets % workers) for k in range(workers)]


def _worker_main(k: int, quota: int, kwargs: dict, out_path: str | None, label: str,
                 write_kw: dict, messages) -> None:
    """Entry point of worker process ``k``: messages go to the ``messages`` queue."""
    try:
        res = generate_jets(n_jets=quota, worker=k, progress=lambda n: messages.put(("jets", k, n)),
                            **kwargs)
        if out_path is not None:
            write_jets(out_path, res, label, **write_kw)
            res = {k: res[k] for k in ("n_events", "seconds", "cpu_seconds")}
        messages.put(("done", k, res))
    except JetaceError as exc:
        messages.put(("error", k, str(exc)))
    except BaseException:  # report anything else with its traceback, then stop
        messages.put(("error", k, traceback.format_exc()))


def _mp_context():
    """Fork on Linux (no re-import of the user's main script); spawn elsewhere."""
    import multiprocessing as mp

    return mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def run_workers(quotas: list[int], kwargs: dict, out_paths: list[str | None], label: str,
                 write_kw: dict, make_bar: Callable) -> list[dict]:
    """Run one process per quota; ``make_bar()`` opens the progress bar once all started."""
    ctx = _mp_context()
    messages = ctx.Queue()
    procs = [ctx.Process(target=_worker_main, name=f"jetace-generate-{k}", daemon=True,
                         args=(k, q, kwargs, out_paths[k], label, write_kw, messages))
             for k, q in enumerate(quotas)]
    results: dict[int, dict] = {}
    try:
        for p in procs:
            p.start()
        bar = make_bar()
        while len(results) < len(procs):
            try:
                kind, k, payload = messages.get(timeout=1.0)
            except queue.Empty:
                dead = [k for k, p in enumerate(procs) if k not in results
                        and p.exitcode is not None]
                if dead:
                    raise JetaceError(f"generation worker {dead[0]} died "
                                      f"(exit code {procs[dead[0]].exitcode})") from None
                continue
            if kind == "jets":
                bar.update(payload)
            elif kind == "done":
                results[k] = payload
            else:
                raise JetaceError(f"generation worker {k} failed: {payload}")
        for p in procs:
            p.join()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join()
    return [results[k] for k in range(len(procs))]


def worker_paths(output: Path, workers: int) -> list[Path]:
    width = len(str(workers - 1))
    return [output.with_name(f"{output.stem}_{k:0{width}d}{output.suffix}") for k in range(workers)]
