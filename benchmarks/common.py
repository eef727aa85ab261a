"""Shared plumbing of the jetace benchmark suite.

Everything a benchmark script needs besides the models themselves: the default data
files, a fixed seeded train/test split per class, padded tensors, timing on a stated
number of CPU threads, metrics rows, ROC points for the notebooks, and JSON/markdown
output under ``benchmarks/results``.

Conventions of every result row (a dict):

* ``model``, ``features``: names as shown in the table;
* ``parameters``: trainable numbers of the classifier (feature maps of jetace have none);
* ``train_time_s``: wall time of everything training needs on the training jets
  (feature computation included), ``feature_time_s`` and ``fit_time_s`` separately
  where they differ;
* ``inference_jets_per_s`` with ``inference``: {device, threads, batch, dtype,
  includes}: raw padded constituents in, scores out (features included, file reading
  not);
* the metrics of :func:`jetace.metrics.binary_metrics` on the test jets and ``roc``
  (eps_S, 1/eps_B points for plotting).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import torch

import jetace
from jetace.metrics import binary_metrics, roc_curve
from jetace.numerics import to_numpy

__all__ = [
    "REPO",
    "RESULTS",
    "default_files",
    "suite_parser",
    "Split",
    "load_split",
    "padded",
    "threads",
    "timed",
    "throughput",
    "batched",
    "metrics_row",
    "roc_points",
    "machine",
    "write_json",
    "read_json",
    "markdown_table",
]

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def default_files() -> tuple[list[str], list[str]]:
    """The development samples ``../shared/data/{top,qcd}_train.root`` next to the repo."""
    base = REPO.parent / "shared" / "data"
    return [str(base / "top_train.root")], [str(base / "qcd_train.root")]


def suite_parser(doc: str, quick_help: str | None = None) -> argparse.ArgumentParser:
    """The options every suite script shares: --quick and the signal/background files."""
    sig, bkg = default_files()
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--files-signal", nargs="+", default=sig)
    ap.add_argument("--files-background", nargs="+", default=bkg)
    return ap


@dataclass
class Split:
    """Jets of both classes, split per class with a fixed seed.

    ``train``/``test``: awkward arrays of jets (signal first, then background, then
    shuffled with the same seed); ``y_train``/``y_test``: int64 labels (1 = signal).
    """

    train: ak.Array
    test: ak.Array
    y_train: np.ndarray
    y_test: np.ndarray
    files: dict[str, list[str]]

    def describe(self) -> dict[str, Any]:
        return {"files": self.files, "n_train": len(self.y_train), "n_test": len(self.y_test),
                "n_train_signal": int(self.y_train.sum()),
                "n_test_signal": int(self.y_test.sum())}


def load_split(signal: Sequence[str], background: Sequence[str], max_jets: int | None = None,
               test_fraction: float = 0.2, seed: int = 0) -> Split:
    """Read up to ``max_jets`` jets per class and split each class ``1 - test_fraction``
    / ``test_fraction`` with a permutation seeded by ``seed`` (the same jets for every
    model in a run, and in every run with the same arguments)."""
    rng = np.random.default_rng(seed)
    parts = {"train": [], "test": []}
    labels = {"train": [], "test": []}
    for label, files in ((1, signal), (0, background)):
        jets = jetace.read_jets(list(files), max_jets=max_jets)
        perm = rng.permutation(len(jets))
        n_test = int(round(test_fraction * len(jets)))
        for name, idx in (("test", perm[:n_test]), ("train", perm[n_test:])):
            parts[name].append(jets[np.sort(idx)])
            labels[name].append(np.full(len(idx), label, dtype=np.int64))
    out = {}
    for name in ("train", "test"):
        jets = ak.concatenate(parts[name])
        y = np.concatenate(labels[name])
        order = rng.permutation(len(y))
        out[name] = (jets[order], y[order])
    return Split(out["train"][0], out["test"][0], out["train"][1], out["test"][1],
                 {"signal": list(map(str, signal)), "background": list(map(str, background))})


def load_train_test(signal: Sequence[str], background: Sequence[str],
                    test_signal: Sequence[str], test_background: Sequence[str],
                    max_jets: int | None = None, seed: int = 0) -> Split:
    """All jets (up to ``max_jets`` per class) of the training files and of separate test
    files (independently generated jets), each set shuffled with a permutation seeded by
    ``seed``."""
    rng = np.random.default_rng(seed)
    sets = []
    for sig, bkg in ((signal, background), (test_signal, test_background)):
        parts = [jetace.read_jets(list(f), max_jets=max_jets) for f in (sig, bkg)]
        y = np.concatenate([np.full(len(p), label, dtype=np.int64)
                            for p, label in zip(parts, (1, 0), strict=True)])
        order = rng.permutation(len(y))
        sets.append((ak.concatenate(parts)[order], y[order]))
    (train, y_train), (test, y_test) = sets
    files = {"signal": list(map(str, signal)), "background": list(map(str, background)),
             "test_signal": list(map(str, test_signal)),
             "test_background": list(map(str, test_background))}
    return Split(train, test, y_train, y_test, files)


def padded(jets: ak.Array, max_particles: int = 128,
           dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``jetace.to_padded`` on CPU: p4 (B, P, 4) as (E, px, py, pz) in GeV, mask (B, P)."""
    return jetace.to_padded(jets, max_particles=max_particles, dtype=dtype)


@contextmanager
def threads(n: int):
    """Run torch on ``n`` intra-op threads inside the block (restored afterwards)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextmanager
def timed(store: dict[str, float], key: str):
    """Add the wall time of the block, in seconds, to ``store[key]``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        store[key] = store.get(key, 0.0) + time.perf_counter() - t0


def batched(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], p4: torch.Tensor,
            mask: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """``fn(p4, mask)`` over batches of jets under ``torch.no_grad``, concatenated."""
    with torch.no_grad():
        return torch.cat([fn(p4[i:i + batch], mask[i:i + batch])
                          for i in range(0, p4.shape[0], batch)])


def throughput(fn: Callable[[torch.Tensor, torch.Tensor], Any], p4: torch.Tensor,
               mask: torch.Tensor, batch: int, n_threads: int = 1, min_time: float = 2.0,
               max_jets: int = 20000) -> float:
    """Jets per second of ``fn`` on batches of ``batch`` jets, on ``n_threads`` CPU threads.

    One warm-up batch, then whole batches until ``min_time`` seconds or ``max_jets`` jets
    have passed (cycling over the given jets); the best of the two halves of the timed
    batches is taken, which damps the noise of a shared machine.
    """
    n = p4.shape[0]
    starts = list(range(0, max(n - batch + 1, 1), batch)) or [0]
    with threads(n_threads), torch.no_grad():
        fn(p4[:batch], mask[:batch])
        times, done, i = [], 0, 0
        t_start = time.perf_counter()
        while (time.perf_counter() - t_start < min_time and done < max_jets) or len(times) < 2:
            s = starts[i % len(starts)]
            x, m = p4[s:s + batch], mask[s:s + batch]
            t0 = time.perf_counter()
            fn(x, m)
            times.append((time.perf_counter() - t0, x.shape[0]))
            done += x.shape[0]
            i += 1
    half = len(times) // 2
    rates = []
    for chunk in (times[:half], times[half:]):
        t = sum(a for a, _ in chunk)
        rates.append(sum(b for _, b in chunk) / t if t > 0 else math.inf)
    return max(rates)


def roc_points(scores: np.ndarray, labels: np.ndarray, n: int = 200) -> dict[str, list[float]]:
    """ROC curve thinned to about ``n`` points: eps_S and 1/eps_B (eps_B > 0 only)."""
    es, eb, _ = roc_curve(scores, labels)
    keep = (eb > 0) & (es > 0)
    es, eb = es[keep], eb[keep]
    grid = np.linspace(0.0, 1.0, n)
    idx = np.unique(np.clip(np.searchsorted(es, grid), 0, len(es) - 1))
    return {"eff_s": [round(float(v), 5) for v in es[idx]],
            "rejection": [round(float(1.0 / v), 4) for v in eb[idx]]}


def metrics_row(scores: Any, labels: np.ndarray, threshold: float = 0.0) -> dict[str, Any]:
    """binary_metrics on the test jets plus thinned ROC points."""
    s = to_numpy(scores).astype(np.float64)
    row = dict(binary_metrics(s, labels, threshold))
    row["roc"] = roc_points(s, labels)
    return row


def machine() -> dict[str, Any]:
    """The machine a result was measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    return {"cpu": cpu, "cores": os.cpu_count(), "load_1min_at_start": round(load, 2),
            "torch": torch.__version__, "jetace": jetace.__version__,
            "python": platform.python_version()}


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else (None if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_json(name: str, obj: Any, directory: Path = RESULTS) -> Path:
    """Write ``obj`` to ``directory/name.json`` (non-finite floats as strings)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(_clean(obj), indent=1) + "\n")
    return path


def read_json(name: str, directory: Path = RESULTS) -> Any | None:
    """The content of ``directory/name.json``, or None when it does not exist."""
    path = directory / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _fmt(v: Any, digits: int) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return f"{v:,}"
    if v >= 1e4:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The comparison table, one line per result row."""
    head = ("| model | features | parameters | MFLOPs / jet | training time [s] "
            "| inference [jets/s] | accuracy | AUC | 1/eps_B @ 0.3 | 1/eps_B @ 0.5 |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        inf = r.get("inference_jets_per_s")
        flops = r.get("flops_per_jet")
        lines.append("| " + " | ".join([
            r["model"], r["features"], _fmt(r.get("parameters"), 3),
            _fmt(None if flops is None else flops / 1e6, 3),
            _fmt(r.get("train_time_s"), 3), _fmt(inf, 3),
            _fmt(r.get("accuracy"), 4), _fmt(r.get("auc"), 5),
            _fmt(r.get("rejection_at_0.3"), 4), _fmt(r.get("rejection_at_0.5"), 4),
        ]) + " |")
    return "\n".join(lines) + "\n"
