"""The reproducibility contract of jetace: what is equal, and to what precision.

This module is the one statement of the contract in the code; the README's section
"Reproducibility" says the same in prose, and the tests check exactly these numbers
(``tests/tolerances.py`` imports them).

jetace computes features with eager torch. Its reductions, vectorised loops and math
library round differently depending on the CPU instruction set (AVX-512, AVX2, the
scalar fallback), the number of threads, and how a batch is cut into pieces, so bit
identity is promised only where it holds by construction:

* the same call on the same machine, with the same inputs, batch, dtype, thread count
  and ``ATEN_CPU_CAPABILITY`` gives the same bits (torch's CPU kernels are
  deterministic);
* saving and loading a model or a feature file, and copying tensors between processes,
  keep values bit for bit.

Everything else is **equal to rounding**: the features of a jet computed in one process
or with ``--workers N`` or ``--dask``, at any batch size, padding width, sub-batching,
thread count or CPU instruction set, agree with each other within
``FEATURE_RTOL[dtype]`` on the scale of :func:`deviation` (float64: each entry relative
to itself, or to ``SCALE_FLOOR[float64]`` of its column's largest magnitude where it is
smaller; float32: relative to the column's largest magnitude, since float32 features
are sums and products with cancellations that leave small entries with few correct
digits); so do packed and padded inputs. Scores of a model follow from its features;
they agree within ``SCORE_ATOL[dtype]`` (absolute, on the logit scale).

A jet's features never depend on the other jets of its batch beyond that rounding,
whatever those jets hold.
"""

from __future__ import annotations

import torch

__all__ = ["FEATURE_RTOL", "SCORE_ATOL", "SCALE_FLOOR", "deviation"]

#: largest :func:`deviation` between two computations of the same features that differ
#: only in batching, padding, process layout, threads or CPU instruction set
FEATURE_RTOL: dict[torch.dtype, float] = {torch.float64: 1e-10, torch.float32: 1e-3}

#: largest absolute difference of the logit-scale scores of the same model in the same
#: two situations
SCORE_ATOL: dict[torch.dtype, float] = {torch.float64: 1e-8, torch.float32: 1e-3}

#: entries are compared relative to max(|x|, floor x the column's largest |x|), with
#: the floor of x's dtype: a feature that vanishes for one jet (by symmetry) is judged on
#: its column's scale
SCALE_FLOOR: dict[torch.dtype, float] = {torch.float64: 1e-3, torch.float32: 1.0}


def deviation(a: torch.Tensor, b: torch.Tensor, floor: float | None = None) -> float:
    """Largest scaled difference between feature matrices ``a`` and ``b`` (N, F).

    Each entry's difference is divided by max(|a|, floor x the largest |a| of its column)
    (and never by less than the smallest positive normal number); ``floor`` defaults to
    ``SCALE_FLOOR`` of a's dtype (float64's for other dtypes). Equal matrices give 0; a
    non-finite entry in either (where the other differs) gives inf.
    """
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if floor is None:
        floor = SCALE_FLOOR.get(a.dtype, SCALE_FLOOR[torch.float64])
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} and {tuple(b.shape)}")
    if a.numel() == 0:
        return 0.0
    a64, b64 = a.detach().double().cpu(), b.detach().double().cpu()
    same = (a64 == b64) | (torch.isnan(a64) & torch.isnan(b64))
    diff = torch.where(same, 0.0, (a64 - b64).abs())
    if not bool(torch.isfinite(diff).all()):
        return float("inf")
    mag = a64.abs()
    col = mag.reshape(-1, mag.shape[-1]).amax(dim=0) if mag.ndim > 1 else mag.amax()
    scale = torch.maximum(mag, floor * col).clamp_min(torch.finfo(torch.float64).tiny)
    return float((diff / scale).max())
