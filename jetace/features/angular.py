"""Angular one-particle functions and their rotation-invariant coupling.

Real spherical harmonics in Racah (Schmidt semi-) normalisation, so that the addition
theorem reads ``sum_m Y_lm(a) Y_lm(b) = P_l(a . b)`` exactly (no 4 pi / (2l + 1)), and
real-basis Clebsch-Gordan tensors that couple two harmonics of degrees l1, l2 to one of
degree L. Used by :mod:`jetace.features.lorentz`.

Conventions. For a unit vector n = (x, y, z) with azimuth phi,

    Y_l0 = P_l(z),   Y_l,+m = c_lm P_l^m(z) cos(m phi),   Y_l,-m = c_lm P_l^m(z) sin(m phi),

with c_lm = sqrt(2 (l - m)! / (l + m)!) and P_l^m without the Condon-Shortley phase.
The harmonics are evaluated as *solid* harmonics (homogeneous polynomials of degree l in
x, y, z), so the zero vector, used for a direction that does not exist (a constituent at
rest), gives Y_00 = 1 and Y_lm = 0 for l >= 1. Components are stored per degree l in
the order m = -l .. l; all degrees 0..lmax are concatenated, (lmax + 1)^2 in all.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch

__all__ = ["real_spherical_harmonics", "real_coupling", "lm_offset"]


def lm_offset(l: int) -> int:
    """Index of component (l, m = -l) in the concatenated harmonics: l^2."""
    return l * l


def real_spherical_harmonics(v: torch.Tensor, lmax: int) -> torch.Tensor:
    """Racah-normalised real solid harmonics of ``v`` (shape (..., 3)); (..., (lmax+1)^2).

    Exact for unit vectors and for the zero vector (see the module docstring); other
    lengths r give r^l Y_lm. Cost: O(lmax^2) elementwise operations, no trigonometry.
    """
    x, y, z = v.unbind(-1)
    r2 = x * x + y * y + z * z
    # Q[m][l]: P_l^m(z) / sin^m(theta) as a solid polynomial (times r^(l-m))
    # C_m + i S_m = (x + i y)^m
    cos_m, sin_m = [torch.ones_like(x)], [torch.zeros_like(x)]
    for _ in range(lmax):
        c, s = cos_m[-1], sin_m[-1]
        cos_m.append(c * x - s * y)
        sin_m.append(s * x + c * y)
    out: list[list[torch.Tensor | None]] = [[None] * (2 * l + 1) for l in range(lmax + 1)]
    for m in range(lmax + 1):
        qmm = float(math.prod(range(1, 2 * m, 2)))  # (2m - 1)!!
        q_prev, q = None, torch.full_like(x, qmm)
        for l in range(m, lmax + 1):
            if l > m:
                q_next = (2 * l - 1) * z * q
                if q_prev is not None:
                    q_next = q_next - (l + m - 1) * r2 * q_prev
                q_prev, q = q, q_next / (l - m)
            if m == 0:
                out[l][l] = q
            else:
                c_lm = math.sqrt(2.0 * math.factorial(l - m) / math.factorial(l + m))
                out[l][l + m] = c_lm * q * cos_m[m]
                out[l][l - m] = c_lm * q * sin_m[m]
    return torch.stack([t for row in out for t in row], dim=-1)


def _clebsch_gordan(j1: int, m1: int, j2: int, m2: int, j: int, m: int) -> float:
    """Complex-basis Clebsch-Gordan coefficient <j1 m1 j2 m2 | j m> (Racah's formula)."""
    if m1 + m2 != m or not abs(j1 - j2) <= j <= j1 + j2:
        return 0.0
    if abs(m1) > j1 or abs(m2) > j2 or abs(m) > j:
        return 0.0
    f = math.factorial
    pre = math.sqrt((2 * j + 1) * f(j + j1 - j2) * f(j - j1 + j2) * f(j1 + j2 - j)
                    / f(j1 + j2 + j + 1))
    pre *= math.sqrt(f(j + m) * f(j - m) * f(j1 - m1) * f(j1 + m1) * f(j2 - m2) * f(j2 + m2))
    s = 0.0
    for k in range(0, j1 + j2 - j + 1):
        args = (k, j1 + j2 - j - k, j1 - m1 - k, j2 + m2 - k, j - j2 + m1 + k, j - j1 - m2 + k)
        if min(args) < 0:
            continue
        s += (-1) ** k / math.prod(f(a) for a in args)
    return pre * s


def _real_from_complex(l: int) -> np.ndarray:
    """Unitary U with Y_real = U Y_complex (Racah-normalised, Condon-Shortley complex)."""
    u = np.zeros((2 * l + 1, 2 * l + 1), dtype=complex)
    u[l, l] = 1.0
    s = 1.0 / math.sqrt(2.0)
    for m in range(1, l + 1):
        sign = (-1) ** m
        u[l + m, l + m] = sign * s
        u[l + m, l - m] = s
        u[l - m, l + m] = -1j * sign * s
        u[l - m, l - m] = 1j * s
    return u


@cache
def _real_coupling_np(l1: int, l2: int, big_l: int) -> np.ndarray:
    cg = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * big_l + 1))
    for m1 in range(-l1, l1 + 1):
        for m2 in range(-l2, l2 + 1):
            if abs(m1 + m2) <= big_l:
                cg[m1 + l1, m2 + l2, m1 + m2 + big_l] = _clebsch_gordan(l1, m1, l2, m2, big_l,
                                                                        m1 + m2)
    u1, u2, u3 = _real_from_complex(l1), _real_from_complex(l2), _real_from_complex(big_l)
    c = np.einsum("ai,bj,ck,ijk->abc", u1.conj(), u2.conj(), u3, cg)
    # real for even l1 + l2 + L, purely imaginary for odd: keep the non-zero part
    c = c.real if (l1 + l2 + big_l) % 2 == 0 else c.imag
    c[np.abs(c) < 1e-13] = 0.0
    c.setflags(write=False)
    return c


def real_coupling(l1: int, l2: int, big_l: int) -> np.ndarray:
    """Real coupling tensor C, shape (2 l1 + 1, 2 l2 + 1, 2 L + 1), for the harmonics above.

    ``sum_{m1, m2} C[m1, m2, M] a_{m1} b_{m2}`` transforms under rotations like Y_LM when
    a and b transform like Y_l1 and Y_l2. It is the Clebsch-Gordan tensor in the real
    basis, times -i when l1 + l2 + L is odd (so that it is real). Zero unless
    |l1 - l2| <= L <= l1 + l2. Float64 numpy array, read-only, cached.
    """
    return _real_coupling_np(l1, l2, big_l)
