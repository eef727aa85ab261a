"""The execution layer: option objects, one bounded in-order runner and its back ends.

* :mod:`jetace.run.options`: :class:`ReadOptions` (how files are read) and
  :class:`RunOptions` (device, dtype, batch size, workers, dask, progress);
* :mod:`jetace.run.executor`: :func:`~jetace.run.executor.ordered_map`, the one runner,
  its thread back end and the one start-method rule for processes;
* :mod:`jetace.run.workers`: local worker processes (``--workers``);
* :mod:`jetace.run.dask`: a dask cluster (``--dask``);
* :mod:`jetace.run.features`: :func:`~jetace.run.features.iter_features`, the features
  of files block by block on the back end the run options choose.

The feature modules (:mod:`jetace.features`) are pure functions of their inputs: batches,
threads and processes are decided here.
"""

from jetace.run.options import ReadOptions, RunOptions, resolve_device, resolve_options

__all__ = ["ReadOptions", "RunOptions", "resolve_options", "resolve_device"]
