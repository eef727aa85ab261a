"""Option objects of the application layer: how inputs are read, how work is run.

The public functions that read jet files and compute on them (``iter_features``,
``write_features``, ``collect_features``, ``train_model``, the scoring functions) take a
:class:`ReadOptions` and a :class:`RunOptions` instead of the same eight or nine keyword
arguments each; for convenience they also accept those options' field names as keyword
arguments, applied on top (:func:`resolve_options`), so ``write_features(paths, out,
spec, batch_size=1024)`` and ``write_features(paths, out, spec,
run=RunOptions(batch_size=1024))`` are the same call. Both objects are frozen and check
their values when made.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from jetace.errors import JetaceError
from jetace.io import JetFiles, Paths, SchemaLike, StepSize

__all__ = ["ReadOptions", "RunOptions", "resolve_options", "resolve_device", "open_files"]


@dataclass(frozen=True)
class ReadOptions:
    """How input files are read.

    tree: TTree or RNTuple name. schema: ``"jetclass"``, a :class:`jetace.schema.Schema`,
    a JSON schema file or a mapping. step_size: entries (int) or bytes ("100 MB") per
    chunk read. max_jets: stop after this many jets in all (None: every jet). skip_bad:
    skip (with a warning) files whose tree or branches are missing or bad. format: the
    input format of every file (None: by extension, :mod:`jetace.formats`).
    """

    tree: str = "tree"
    schema: SchemaLike = "jetclass"
    step_size: StepSize = "100 MB"
    max_jets: int | None = None
    skip_bad: bool = False
    format: str | None = None

    def __post_init__(self) -> None:
        if self.max_jets is not None and self.max_jets < 0:
            raise JetaceError(f"max_jets must be at least 0, got {self.max_jets}")


@dataclass(frozen=True)
class RunOptions:
    """How the work is run.

    device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:1"`` ... dtype: of the
    features (None: the caller's default, float32 for features, a model's own dtype for
    its scores). batch_size: jets per feature batch. workers: CPU worker processes
    (:mod:`jetace.run.workers`). dask: an address or client of a dask cluster
    (:mod:`jetace.run.dask`) instead of local workers. progress: show tqdm bars.
    """

    device: str | torch.device = "auto"
    dtype: torch.dtype | None = None
    batch_size: int = 4096
    workers: int = 1
    progress: bool = True
    dask: Any = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise JetaceError(f"batch size must be positive, got {self.batch_size}")
        if self.workers < 1:
            raise JetaceError(f"need at least one worker, got {self.workers}")
        if self.workers > 1 and self.dask is not None:
            raise JetaceError("worker processes and a dask cluster cannot be combined: the "
                              "dask cluster's workers do the work")
        if self.dtype not in (None, torch.float32, torch.float64):
            raise JetaceError(f"features are computed in float32 or float64, not {self.dtype}")


_READ = {f.name for f in dataclasses.fields(ReadOptions)}
_RUN = {f.name for f in dataclasses.fields(RunOptions)}


def resolve_options(read: ReadOptions | None = None, run: RunOptions | None = None,
                    **options: Any) -> tuple[ReadOptions, RunOptions]:
    """``(read, run)`` with keyword ``options`` (field names of either) applied on top;
    an unknown name is a ``TypeError`` listing the valid ones."""
    unknown = sorted(set(options) - _READ - _RUN)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}; reading options: {sorted(_READ)}, "
                        f"run options: {sorted(_RUN)}")
    read = dataclasses.replace(read or ReadOptions(),
                               **{k: v for k, v in options.items() if k in _READ})
    run = dataclasses.replace(run or RunOptions(),
                              **{k: v for k, v in options.items() if k in _RUN})
    return read, run


def open_files(paths: Paths | JetFiles, read: ReadOptions, *, extras: bool = False,
               bad_jets: list[tuple[str, int, str]] | None = None) -> JetFiles:
    """The checked input files: ``paths`` inspected once (:class:`jetace.io.JetFiles`),
    or an already checked set passed down as it is (without its optional constituent
    branches unless ``extras``), with ``bad_jets`` as its list of left-out jets."""
    if isinstance(paths, JetFiles):
        files = paths if extras else paths.without_extras()
        if bad_jets is not None:
            files = files.with_bad_jets(bad_jets)
        return files
    return JetFiles(paths, read.tree, read.schema, extras=extras, skip_bad=read.skip_bad,
                    format=read.format, bad_jets=bad_jets)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU; anything else as given to torch."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise JetaceError(f"invalid device {device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise JetaceError(f"device {device!r} requested but CUDA is not available")
    return dev
