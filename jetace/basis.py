"""One-particle basis functions, evaluated elementwise on tensors of any shape."""

from __future__ import annotations

import torch

__all__ = ["chebyshev", "fourier_powers"]


def chebyshev(u: torch.Tensor, n: int, dim: int = -1,
              weight: torch.Tensor | None = None) -> torch.Tensor:
    """Chebyshev polynomials of the first kind T_0..T_{n-1} at ``u``, stacked along a new
    axis ``dim`` (default last: shape (*u.shape, n)); each times ``weight`` (broadcast
    with ``u``) when given.

    Uses the three-term recurrence T_{k+1} = 2 u T_k - T_{k-1}, valid for any real u;
    being linear, it carries the weight along (w T_0 = w, w T_1 = u w).
    """
    if weight is None:
        out = [torch.ones_like(u), u]
    else:
        w = torch.broadcast_to(weight, u.shape)
        out = [w, u * w]
    u2 = 2 * u
    for _ in range(2, n):
        out.append(u2 * out[-1] - out[-2])
    return torch.stack(out[:n], dim=dim)


def fourier_powers(cos_a: torch.Tensor, sin_a: torch.Tensor, m_max: int,
                   dim: int = -1) -> torch.Tensor:
    """cos(m a) for m = 0..m_max, then sin(m a) for m = 1..m_max (sin 0 = 0 is left out),
    from cos(a), sin(a), stacked along a new axis ``dim`` (default last: shape
    (*shape, 2 m_max + 1)).

    Powers of exp(i a) by repeated complex multiplication: no further trigonometric calls.
    """
    cos_m, sin_m = [torch.ones_like(cos_a), cos_a], [sin_a]
    for _ in range(1, m_max):
        c, s = cos_m[-1], sin_m[-1]
        cos_m.append(torch.addcmul(c * cos_a, s, sin_a, value=-1))
        sin_m.append(torch.addcmul(s * cos_a, c, sin_a))
    return torch.stack(cos_m[:m_max + 1] + sin_m[:m_max], dim=dim)
